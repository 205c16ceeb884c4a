"""The crash-loop guard's isolation queue on a running listener (issue 18 item 6), on memory:// and
on RabbitMQ as a Pulse user: messages that come back unacked run one at a time, alone, and are
acked once each; a publisher cannot send a message into isolation (or out of it) with headers.
(The crash loop itself, with real process deaths, is tests/test_crash_loop.py.)"""
import threading

from asynckit import broker  # noqa: F401 - the fixture
from listenerkit import running, wait_for
from tcpulse import Listener, QueueEvents


class Gauge:
    """Records which messages a handler ran, whether they came back, and the most at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.seen = []

    def run(self, event, hold: float = 0.05) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.seen.append((event.body["n"], event.redelivered))
        threading.Event().wait(hold)
        with self.lock:
            self.now -= 1


def test_messages_that_came_back_unacked_run_alone_once_each_then_the_rest_at_full_concurrency(broker):  # noqa: F811
    release = threading.Event()
    first = Listener(broker.name, broker=broker.url, prefetch=10, shutdown_grace=5)
    first.on(QueueEvents.taskCompleted, taskGroupId=broker.name)(lambda event: release.wait(10))
    with running(first):
        for n in range(5):
            broker.publish({"n": n})
        wait_for(lambda: first.metrics.get("received") == 1, what="the first message started")
        wait_for(lambda: broker.queued(first.queue) == 0, what="the rest prefetched")
        threading.Timer(0.3, release.set).start()
    # The stop finished message 0 and left 1-4 unstarted: the broker hands them back, redelivered.
    gauge = Gauge()
    second = Listener(broker.name, broker=broker.url, concurrency=4, prefetch=16)
    second.on(QueueEvents.taskCompleted, taskGroupId=broker.name)(gauge.run)
    with running(second):
        wait_for(lambda: len(gauge.seen) == 4, what="the returned messages")
        assert gauge.most == 1, "a message that came back runs alone"
        assert sorted(gauge.seen) == [(n, True) for n in range(1, 5)]
        for n in range(5, 13):
            broker.publish({"n": n})
        wait_for(lambda: len(gauge.seen) == 12, what="the new messages")
        wait_for(lambda: second.metrics.get("acked") == 12, what="every ack")
        assert sorted(gauge.seen[4:]) == [(n, False) for n in range(5, 13)]
        assert broker.queued(second.queue + "/isolation") == 0
    assert second.metrics.get("acked") == 12, "each message acked once in the metric: a move is not a handled message"


def test_a_publisher_cannot_send_a_fresh_message_into_isolation_or_set_its_count(broker):  # noqa: F811
    gauge = Gauge()
    app = Listener(broker.name, broker=broker.url, concurrency=4, delivery_limit=2)
    app.on(QueueEvents.taskCompleted, taskGroupId=broker.name)(lambda event: gauge.run(event, hold=0.3))
    forged = {"x-delivery-count": 7, "tcpulse-returns": 9}
    with running(app):
        for n in range(4):
            broker.publish({"n": n}, headers=forged)
        wait_for(lambda: len(gauge.seen) == 4, what="the forged messages")
        wait_for(lambda: app.metrics.get("acked") == 4, what="their acks")
    assert gauge.most > 1, "they ran side by side, as fresh messages do, not one at a time in isolation"
    assert sorted(gauge.seen) == [(n, False) for n in range(4)]
    assert app.metrics.get("dead_lettered") == 0
