"""Stale bindings and holding queues (issue 12, item 20): a named listener keeps its own record of
what it bound, and on the next start removes what it no longer declares, as a user with Pulse's
permissions (no management API)."""
import kombu
import pytest
from amqp.exceptions import NotFound

from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from listenerkit import Publisher, delete_listener_topology, delivery_exchange, queued, running, task_key

COMPLETED, FAILED = QueueEvents.taskCompleted, QueueEvents.taskFailed


def make_listener(name, broker, *exchanges, retry_delays):
    app = Listener(name, broker=broker, retry_delays=retry_delays)
    for exchange in exchanges:
        app.on(exchange, taskGroupId=name)(lambda event: None)
    return app


def holding_queue_exists(url, queue):
    with resolve_broker(url, environ={}).connection() as conn:
        try:
            conn.channel().queue_declare(queue=queue, passive=True)
        except NotFound:
            return False
        return True


@pytest.mark.rabbitmq
def test_a_removed_handlers_binding_and_an_unused_holding_queue_are_removed_on_the_next_start(
        pulse_user, taskcluster_exchanges, unique_name, caplog):
    caplog.set_level("INFO", logger="tcpulse.listener")
    queue = f"queue/{pulse_user.name}/{unique_name}"
    try:
        with running(make_listener(unique_name, pulse_user.url, COMPLETED, FAILED, retry_delays=(1, 7))):
            pass
        assert holding_queue_exists(pulse_user.url, f"{queue}/retry-7s")
        # The new version no longer handles taskFailed and retries after 1 s only.
        with running(make_listener(unique_name, pulse_user.url, COMPLETED, retry_delays=(1,))):
            pass
        with Publisher() as publisher:
            publisher.publish(FAILED.exchange, task_key(FAILED, taskGroupId=unique_name), {"n": 1})
            publisher.publish(COMPLETED.exchange, task_key(COMPLETED, taskGroupId=unique_name), {"n": 2})
        assert queued(pulse_user.url, queue) == 1  # the taskCompleted message only
        assert not holding_queue_exists(pulse_user.url, f"{queue}/retry-7s")
        assert holding_queue_exists(pulse_user.url, f"{queue}/retry-1s")
        assert f"removed the binding of {queue} to {FAILED.exchange}" in caplog.text
        assert f"deleted the retry holding queue {queue}/retry-7s" in caplog.text
    finally:
        delete_listener_topology(pulse_user.url, pulse_user.name, unique_name)


@pytest.mark.rabbitmq
def test_a_holding_queue_that_still_holds_retries_is_kept_until_they_have_come_back(
        pulse_user, taskcluster_exchanges, unique_name):
    queue = f"queue/{pulse_user.name}/{unique_name}"
    holding = f"{queue}/retry-30s"
    try:
        with running(make_listener(unique_name, pulse_user.url, COMPLETED, retry_delays=(30,))):
            pass
        with resolve_broker(pulse_user.url, environ={}).connection() as conn:
            producer = kombu.Producer(conn.channel())
            producer.publish({"waiting": True}, exchange=delivery_exchange(pulse_user.url, queue),
                             routing_key="retry-30s")
        with running(make_listener(unique_name, pulse_user.url, COMPLETED, retry_delays=(1,))):
            pass
        assert queued(pulse_user.url, holding) == 1
        with resolve_broker(pulse_user.url, environ={}).connection() as conn:
            conn.channel().queue_purge(holding)
        with running(make_listener(unique_name, pulse_user.url, COMPLETED, retry_delays=(1,))):
            pass
        assert not holding_queue_exists(pulse_user.url, holding)
    finally:
        delete_listener_topology(pulse_user.url, pulse_user.name, unique_name)


def test_on_the_embedded_broker_a_restarted_listener_drops_the_bindings_it_no_longer_declares(unique_name):
    name = unique_name
    with running(make_listener(name, "memory://", COMPLETED, FAILED, retry_delays=(1,))):
        pass
    with running(make_listener(name, "memory://", FAILED, retry_delays=(1,))):
        pass
    with kombu.Connection("memory://localhost/", transport="tcpulse._broker.broker:Transport") as conn:
        bound = {(exchange, queue) for queue, exchange, _ in conn.default_channel.list_bindings()}
    assert (FAILED.exchange, f"queue/guest/{name}") in bound
    assert (COMPLETED.exchange, f"queue/guest/{name}") not in bound
