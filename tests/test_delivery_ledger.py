"""The ledger test of issue 6: 10,000 messages through a listener on the real RabbitMQ as a Pulse
user, 10 % failing transiently once or twice, 1 % always failing, and every connection of the
user closed in the middle. Afterwards handled ∪ dead-lettered == published, nothing lost, and
nothing dead-lettered that should have succeeded."""
import json
import threading

import kombu

import pytest

from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.deadletters import list_dead_letters
from listenerkit import GUEST, queued, running, task_key, wait_for

pytestmark = pytest.mark.rabbitmq

COUNT = 10_000
COMPLETED = QueueEvents.taskCompleted


def failures_planned(i: int) -> int:
    """How many attempts of message i fail: 0, 1 or 2 (10 % in all), or always (1 %)."""
    if i % 100 == 7:
        return 1_000_000
    return {3: 1, 5: 2}.get(i % 20, 0) if i % 10 in (3, 5) else 0


def test_ten_thousand_messages_with_failures_and_a_connection_close_lose_nothing(
        pulse_user, taskcluster_exchanges, unique_name, queue_type):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, concurrency=4, prefetch=200,
                   max_attempts=3, retry_delays=(0.2, 0.5))
    handled, lock = set(), threading.Lock()

    @app.on(COMPLETED, taskGroupId=unique_name)  # unique: other runs publish to the same exchange
    def work(event):
        i = event.body["i"]
        if event.attempt <= failures_planned(i):
            raise ConnectionError(f"message {i} attempt {event.attempt} fails as planned")
        with lock:
            handled.add(i)

    always = {i for i in range(COUNT) if failures_planned(i) > 2}
    transient = {i for i in range(COUNT) if 0 < failures_planned(i) <= 2}
    assert (len(always), len(transient)) == (100, 1000)
    key = task_key(taskGroupId=unique_name)

    closed = []
    with running(app, timeout=60), kombu.Connection(GUEST) as publisher:
        channel = publisher.channel()
        producer = kombu.Producer(channel, auto_declare=False)
        for i in range(COUNT):
            # Unconfirmed (3x faster than waiting for each confirm); the round trip below proves
            # the broker has them all, and only the listener's connections are closed.
            producer.publish(json.dumps({"i": i}), exchange=COMPLETED.exchange, routing_key=key,
                             content_type="application/json", delivery_mode=2)
            if i == COUNT // 2:
                closed.append(pulse_user.close_connections())
        channel.basic_qos(0, 1, False)
        wait_for(lambda: len(handled) == COUNT - len(always) and app.metrics.get("dead_lettered") >= len(always),
                 timeout=120, what="every message handled or dead-lettered")
        wait_for(lambda: queued(pulse_user.url, app.queue) == 0, what="the queue to drain")

    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        dead = [r["body"]["i"] for r in list_dead_letters(conn, app.queue, limit=COUNT)]
    assert closed[0] >= 1 and app.metrics.get("reconnects") >= 1, "the connection must have been closed"
    assert handled | set(dead) == set(range(COUNT)), "nothing lost"
    assert set(dead) == always, "nothing dead-lettered that should have succeeded"
    assert not handled & always
    assert app.metrics.get("retried") >= 1700  # 500 fail once, 500 twice, 100 twice before dying
