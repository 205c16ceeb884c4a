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


def stop_while_blocked(broker, concurrency: int, started: int, publish: int = 0) -> None:  # noqa: F811
    """Run a listener (publishing messages 0 to `publish` - 1 once it consumes) whose handlers block
    until it is told to stop: the `started` messages it runs finish then and are acked; what it had
    prefetched besides goes back to the broker unacked."""
    release, seen = threading.Event(), []
    app = Listener(broker.name, broker=broker.url, concurrency=concurrency, prefetch=10, shutdown_grace=5)
    app.on(QueueEvents.taskCompleted, taskGroupId=broker.name)(lambda event: seen.append(1) or release.wait(10))
    with running(app):
        for n in range(publish):
            broker.publish({"n": n})
        wait_for(lambda: len(seen) == started, what=f"{started} message(s) started")
        wait_for(lambda: broker.queued(app.queue) == 0, what="the rest prefetched")
        threading.Timer(0.3, release.set).start()


def guarded(broker, gauge: Gauge) -> Listener:  # noqa: F811
    app = Listener(broker.name, broker=broker.url, concurrency=4, prefetch=16)
    app.on(QueueEvents.taskCompleted, taskGroupId=broker.name)(gauge.run)
    return app


def test_messages_returned_once_run_again_at_full_concurrency_and_are_acked_once_each(broker):  # noqa: F811
    stop_while_blocked(broker, concurrency=1, started=1, publish=5)  # 0 handled; 1-4 go back unstarted
    gauge = Gauge()
    app = guarded(broker, gauge)
    with running(app):
        wait_for(lambda: len(gauge.seen) == 4, what="the returned messages")
        wait_for(lambda: app.metrics.get("acked") == 4, what="their acks")
        assert broker.queued(app.queue + "/isolation") == 0
    assert sorted(gauge.seen) == [(n, True) for n in range(1, 5)], "each once, and it says it came back"
    assert gauge.most > 1, "after a restart, what came back unstarted keeps the listener's concurrency"
    assert app.metrics.get("acked") == 4, "acked once each in the metric: moving a message is no ack of its own"


def test_messages_returned_twice_run_alone_then_new_ones_at_full_concurrency(broker):  # noqa: F811
    stop_while_blocked(broker, concurrency=1, started=1, publish=5)  # 0 handled; 1-4 go back unstarted
    stop_while_blocked(broker, concurrency=2, started=2)  # two of 1-4 handled; two go back a second time
    gauge = Gauge()
    app = guarded(broker, gauge)
    with running(app):
        wait_for(lambda: len(gauge.seen) == 2, what="the messages returned twice")
        assert gauge.most == 1, "a message that came back twice runs alone"
        for n in range(5, 13):
            broker.publish({"n": n})
        wait_for(lambda: len(gauge.seen) == 10, what="the new messages")
        wait_for(lambda: app.metrics.get("acked") == 10, what="every ack")
        assert broker.queued(app.queue + "/isolation") == 0
    assert [redelivered for _, redelivered in gauge.seen] == [True] * 2 + [False] * 8
    assert sorted(n for n, _ in gauge.seen[2:]) == list(range(5, 13))


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
