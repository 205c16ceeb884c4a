"""The listener end to end on the real RabbitMQ, as a user with Pulse's permissions: which
handlers get which messages, queues, exchanges, acks, registration rules."""
import logging
import threading
import time

import pytest

import tcpulse
from tcpulse import BrokerFailure, Listener, QueueEvents
from tcpulse._api.exchanges import Binding
from tcpulse._broker.connection import resolve_broker
from listenerkit import (Publisher, delete_listener_topology, queue_name, queued, running,  # noqa: F401
                         task_key, wait_for)

pytestmark = pytest.mark.rabbitmq

COMPLETED, FAILED, EXCEPTION = QueueEvents.taskCompleted, QueueEvents.taskFailed, QueueEvents.taskException

# (id, exchange, fields, CC'd routes) and, written by hand, who must receive each message.
# Other tests publish on the same exchanges at the same time, so every task id, group, route
# and scheduler here is made unique per test by formatting in `u`.
MESSAGES = [
    ("m1", COMPLETED, dict(taskId="{u}t1", taskGroupId="{u}g1"), []),
    ("m2", COMPLETED, dict(taskId="{u}t2", taskGroupId="{u}g1"), ["index.{u}.project.a"]),
    ("m3", COMPLETED, dict(taskId="{u}t3", taskGroupId="{u}g2"), ["index.{u}.project.b", "index.{u}.other.c"]),
    ("m4", COMPLETED, dict(taskId="{u}t4", taskGroupId="{u}g3"), ["index.{u}.other.c"]),
    ("m5", FAILED, dict(taskId="{u}t1", taskGroupId="{u}g1"), []),
    ("m6", FAILED, dict(taskId="{u}t5", taskGroupId="{u}g2"), ["index.{u}.project.z"]),
    ("m7", COMPLETED, dict(taskId="{u}t6", taskGroupId="{u}g2"), []),
    ("m8", EXCEPTION, dict(taskId="{u}t1", taskGroupId="{u}g1"), ["index.{u}.project.a"]),
    ("m9", COMPLETED, dict(taskId="{u}t1", taskGroupId="{u}g2"), ["index.{u}.project.q"]),
]
EXPECTED = {
    "group_g1": {"m1", "m2"},
    "task_t1": {"m1", "m5", "m9"},
    "project_route": {"m2", "m3", "m9"},
    "group_g2_or_project": {"m2", "m3", "m7", "m9"},
    "any_failure": {"m5", "m6", "last"},
    "never": set(),
}


def test_each_handler_receives_exactly_its_messages_once_on_primary_keys_and_cc_routes(pulse_user, taskcluster_exchanges, queue_name, caplog):
    caplog.set_level(logging.DEBUG)
    app = Listener(queue_name, broker=pulse_user.url)
    got = {name: [] for name in EXPECTED}
    events = {}

    def record(name):
        def handler(event):
            got[name].append(event.body["id"])
            events[event.body["id"]] = event
        handler.__qualname__ = name
        return handler

    u = queue_name
    app.on(COMPLETED, taskGroupId=f"{u}g1")(record("group_g1"))
    app.on(COMPLETED(taskId=f"{u}t1"), FAILED(taskId=f"{u}t1"))(record("task_t1"))
    app.on(COMPLETED, route=f"index.{u}.project.#")(record("project_route"))
    both = record("group_g2_or_project")
    app.on(COMPLETED, taskGroupId=f"{u}g2")(both)
    app.on(COMPLETED, route=f"index.{u}.project.#")(both)
    app.add_handler(record("any_failure"), FAILED, schedulerId=u)
    app.add_handler(record("never"), QueueEvents.taskDefined, route=f"index.{u}.project.#")

    with running(app), Publisher() as pub:
        for mid, exchange, fields, routes in MESSAGES + [("last", FAILED, dict(taskId="{u}t9"), [])]:
            fields = {k: v.format(u=u) for k, v in fields.items()}
            key = task_key(exchange, schedulerId=u, **fields)
            pub.publish(exchange.exchange, key, {"id": mid}, [r.format(u=u) for r in routes])
        wait_for(lambda: "last" in got["any_failure"], what="the last message")

    assert {name: sorted(ids) for name, ids in got.items()} == {n: sorted(ids) for n, ids in EXPECTED.items()}
    m3 = events["m3"]
    assert (m3.exchange, m3.routing_key) == (COMPLETED.exchange, task_key(COMPLETED, taskId=f"{u}t3", taskGroupId=f"{u}g2", schedulerId=u))
    assert m3.routes == [f"index.{u}.project.b", f"index.{u}.other.c"]
    assert (m3.fields["taskId"], m3.fields["taskGroupId"], m3.redelivered, m3.attempt) == (f"{u}t3", f"{u}g2", False, 1)
    assert app.metrics.get("received") == app.metrics.get("acked") == 8
    assert "consuming from" in caplog.text and pulse_user.password not in caplog.text
    assert queued(pulse_user.url, app.queue) == 0


def test_a_named_listener_has_a_durable_queue_and_an_unnamed_one_an_exclusive_auto_delete_queue(pulse_user, taskcluster_exchanges, queue_name, rabbitmq):
    from conftest import rabbitmqctl

    named, anonymous = Listener(queue_name, broker=pulse_user.url), Listener(broker=pulse_user.url)
    for app in (named, anonymous):
        app.add_handler(lambda event: None, COMPLETED, schedulerId=queue_name)
    with running(named), running(anonymous):
        rows = rabbitmqctl("list_queues", "name", "durable", "auto_delete", "exclusive", "--no-table-headers")
    table = {row.split("\t")[0]: row.split("\t")[1:] for row in rows.splitlines()}
    assert named.queue == f"queue/{pulse_user.name}/{queue_name}"
    assert table[named.queue] == ["true", "false", "false"]
    assert anonymous.queue.startswith(f"queue/{pulse_user.name}/anonymous-")
    assert table[anonymous.queue] == ["false", "true", "true"]


def test_a_missing_exchange_is_one_clear_error_naming_it(pulse_user, queue_name):
    app = Listener(queue_name, broker=pulse_user.url)
    app.add_handler(lambda event: None, Binding("exchange/no-such-service/v1/gone", "#"))
    with pytest.raises(BrokerFailure, match=r"exchange 'exchange/no-such-service/v1/gone' does not exist on "
                                            r"amqp://.*declare_exchanges=True"):
        app.run()


def test_declare_exchanges_creates_them_for_local_development_but_a_pulse_user_may_not(pulse_user, rabbitmq, queue_name):
    exchange = f"exchange/tcpulse-local-{queue_name}/v1/thing"
    local = Listener(queue_name, broker=rabbitmq, declare_exchanges=True)
    local.add_handler(lambda event: None, Binding(exchange, "#"))
    with running(local):
        pass
    pulse = Listener(queue_name, broker=pulse_user.url, declare_exchanges=True)
    pulse.add_handler(lambda event: None, Binding(exchange, "#"))
    with pytest.raises(BrokerFailure, match=f"does not let user '{pulse_user.name}' declare exchange '{exchange}'"):
        pulse.run()
    delete_listener_topology(rabbitmq, "guest", queue_name)
    with Publisher(rabbitmq) as guest:
        guest.conn.channel().exchange_delete(exchange=exchange)


def test_a_message_no_handler_matches_is_acked_counted_and_logged(pulse_user, taskcluster_exchanges, queue_name, caplog):
    # A durable queue keeps a binding no binding record names (made by hand, or by a version of
    # the script that kept no record while others consumed the queue, so it could not move).
    old = Listener(queue_name, broker=pulse_user.url)
    old.add_handler(lambda event: None, COMPLETED, schedulerId=queue_name)
    with running(old):
        pass
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        conn.channel().queue_bind(old.queue, FAILED.exchange, FAILED(schedulerId=queue_name).routing_key_pattern)
    new = Listener(queue_name, broker=pulse_user.url)
    seen = []
    new.add_handler(seen.append, COMPLETED, schedulerId=queue_name)
    caplog.set_level(logging.WARNING, logger="tcpulse.listener")
    with running(new), Publisher() as pub:
        pub.publish(FAILED.exchange, task_key(FAILED, taskId="stale", schedulerId=queue_name), {"id": 1})
        pub.publish(FAILED.exchange, task_key(FAILED, taskId="stale2", schedulerId=queue_name), {"id": 3})
        pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {"id": 2})
        wait_for(lambda: seen and new.metrics.get("acked") == 3, what="all messages acked")
    assert [e.body["id"] for e in seen] == [2]
    assert new.metrics.get("unmatched") == 2
    assert "matched no handler" in caplog.text and task_key(FAILED, taskId="stale", schedulerId=queue_name) in caplog.text
    assert caplog.text.count("matched no handler") == 1  # the second is counted, not logged again
    assert queued(pulse_user.url, new.queue) == 0


def test_the_decorator_returns_the_function_unchanged_and_registering_after_run_is_an_error(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url)

    def handler(event):
        return "plain"
    assert app.on(COMPLETED, taskGroupId=queue_name)(handler) is handler and handler(None) == "plain"
    with running(app):
        with pytest.raises(RuntimeError, match=r"cannot register handler '.*late': Listener\(.*\) is already running; "
                                               r"register handlers and set options before calling run\(\)"):
            @app.on(FAILED)
            def late(event): ...


def test_on_checks_its_arguments_at_once_before_any_function_is_given():
    with pytest.raises(tcpulse.TaskclusterTopicExchangeFailure, match="Did you mean 'taskGroupId'"):
        Listener("x").on(COMPLETED, taskGroupID="g")


def test_module_level_on_registers_on_the_default_listener():
    from tcpulse._listen.listener import default_listener

    @tcpulse.on(QueueEvents.taskPending, route="index.x.#")
    def pending(event): ...
    handler = next(h for h in default_listener().handlers if h.func is pending)
    assert handler.bindings == (Binding(QueueEvents.taskPending.exchange, "route.index.x.#"),)


def test_running_handlers_keep_the_connection_serviced_and_all_are_acked_at_the_end(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url, concurrency=4, prefetch=8)
    release = threading.Event()
    done = []

    def slow(event):
        release.wait(10)
        done.append(event.body["id"])
    app.add_handler(slow, COMPLETED, schedulerId=queue_name)
    with running(app), Publisher() as pub:
        for i in range(20):
            pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {"id": i})
        wait_for(lambda: queued(pulse_user.url, app.queue) == 12, what="the prefetch window to fill")
        assert app.is_ready() and app._consumer.pool.running == 4
        release.set()
        wait_for(lambda: app.metrics.get("acked") == 20, what="every message acked")
    assert sorted(done) == list(range(20))


def test_a_handler_outliving_the_grace_period_is_abandoned_and_its_message_stays_queued(pulse_user, taskcluster_exchanges, queue_name, caplog):
    app = Listener(queue_name, broker=pulse_user.url, shutdown_grace=0.5)
    started = threading.Event()
    app.add_handler(lambda event: (started.set(), time.sleep(3)), COMPLETED, schedulerId=queue_name)
    assert not app.is_ready()
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {})
        assert started.wait(10)
        stop_at = time.monotonic()
    assert time.monotonic() - stop_at < 2.5 and not app.is_ready()
    assert "1 handler(s) still running after the 0.5 s grace period" in caplog.text
    wait_for(lambda: queued(pulse_user.url, app.queue) == 1, what="the message back in the queue")
    assert app.metrics.get("acked") == 0


def test_a_message_with_odd_retry_headers_or_a_handler_calling_exit_never_kills_the_listener(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url, max_attempts=1)
    seen = []

    def handler(event):
        seen.append(event.body["n"])
        if event.body["n"] == 2:
            raise SystemExit("a handler must not take its thread down")
    app.add_handler(handler, COMPLETED, schedulerId=queue_name)
    key = task_key(COMPLETED, schedulerId=queue_name)
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"n": 1}, headers={"tcpulse-exchange": COMPLETED.exchange,
                                                               "tcpulse-attempt": "not a number"})
        for n in (2, 3):
            pub.publish(COMPLETED.exchange, key, {"n": n})
        wait_for(lambda: app.metrics.get("acked") == 3, what="all three settled")
        assert app.is_ready()
    assert seen == [1, 2, 3]  # retry headers a publisher set are ignored: message 1 is dispatched as sent
    assert app.metrics.get("dead_lettered") == 1 and app.metrics.get("handler_errors", handler=app.handlers[0].name) == 1

