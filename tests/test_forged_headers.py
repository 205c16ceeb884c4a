"""tcpulse's own headers (tcpulse-exchange, -attempt, -handlers, ...) count only on messages the
broker delivered through the listener's own delivery exchange: anyone who may publish to a bound
exchange can set them, and must not choose how their message is dispatched (real RabbitMQ, as a
user with Pulse's permissions; the forger publishes as guest, like any other publisher)."""
import pytest

from tcpulse import Listener, QueueEvents
from listenerkit import Publisher, delete_delivery_exchange, running, task_key, wait_for

pytestmark = pytest.mark.rabbitmq

COMPLETED, FAILED = QueueEvents.taskCompleted, QueueEvents.taskFailed


def forged(unique_name):
    return {"tcpulse-exchange": FAILED.exchange, "tcpulse-routing-key": task_key(FAILED, taskGroupId=unique_name),
            "tcpulse-cc": ["route.forged"], "tcpulse-attempt": 5, "tcpulse-handlers": ["nobody.at_all"],
            "tcpulse-failures": "{{{not json", "tcpulse-reason": "forged reason"}


@pytest.fixture(autouse=True)
def cleanup_delivery_exchange(pulse_user, unique_name):
    yield
    delete_delivery_exchange(pulse_user.url, f"queue/{pulse_user.name}/{unique_name}")


def test_forged_retry_headers_on_a_published_message_are_ignored(pulse_user, taskcluster_exchanges, unique_name):
    app = Listener(unique_name, broker=pulse_user.url, max_attempts=3, retry_delays=(0.2,))
    seen, failed_seen = [], []

    @app.on(COMPLETED, taskGroupId=unique_name)
    def completed(event):
        seen.append((event.exchange, event.routing_key, event.routes, event.attempt))
        if len(seen) == 1:
            raise ValueError("fails once")

    app.add_handler(failed_seen.append, FAILED, taskGroupId=unique_name)
    key = task_key(taskGroupId=unique_name)
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"id": 1}, routes=["index.a"], headers=forged(unique_name))
        wait_for(lambda: app.metrics.get("acked") == 2, what="the retried message's ack")
    # Dispatched as what the broker says it is: the handler of its real exchange runs, from attempt 1,
    # and its retry (through the delivery exchange, where tcpulse's headers are believed) is attempt 2.
    assert seen == [(COMPLETED.exchange, key, ["index.a"], 1), (COMPLETED.exchange, key, ["index.a"], 2)]
    assert failed_seen == [] and app.metrics.get("dead_lettered") == 0


def test_a_forged_message_dropped_by_overflow_is_listed_as_what_it_was(pulse_user, taskcluster_exchanges, unique_name):
    app = Listener(unique_name, broker=pulse_user.url, max_length=1)
    app.add_handler(lambda event: None, COMPLETED, taskGroupId=unique_name)
    with running(app):
        pass  # declares the queue, its bindings and the dead-letter queue
    key = task_key(taskGroupId=unique_name)
    with Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"id": "dropped"}, routes=["index.a"], headers=forged(unique_name))
        pub.publish(COMPLETED.exchange, key, {"id": "kept"})
    wait_for(lambda: len(app.dead_letters()) == 1, what="the dropped message in the dead-letter queue")
    [record] = app.dead_letters()
    # Its forged tcpulse headers are not believed; what x-death says is shown as a claim only.
    assert record["claimed_origin"] == {"exchange": COMPLETED.exchange, "routing_key": key, "routes": ["index.a"]}
    assert (record["exchange"], record["origin_verified"]) == (None, False)
    assert record["attempts"] == 1 and record["failures"] == {} and record["body"] == {"id": "dropped"}
    assert record["reason"].startswith(f"dropped by the broker from {app.queue} (maxlen)")
