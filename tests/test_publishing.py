"""Publishing from Python (`tcpulse.publish`, `tcpulse.Publisher`) and the CLI's `publish`, which
goes through them: on RabbitMQ as a Pulse-permission user (who may publish only to its own
exchanges), reaching a listener through CC routes; on memory://; keys that do not fit refused."""
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import kombu
import pytest

import tcpulse
from tcpulse import Binding, Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse.errors import BrokerFailure, TaskclusterTopicExchangeFailure
from listenerkit import running, wait_for

TCPULSE = Path(sys.executable).parent / "tcpulse"
FIELDS = dict(taskId="t1", runId=0, workerGroup="wg", workerId="w", provisionerId="p", workerType="wt",
              schedulerId="s", taskGroupId="g")


@pytest.fixture
def own_exchange(pulse_user):
    """A topic exchange of the Pulse user's own (the only kind Pulse lets it publish to)."""
    name = f"exchange/{pulse_user.name}/pub-{uuid.uuid4().hex[:8]}"
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        kombu.Exchange(name, "topic", durable=True)(conn.channel()).declare()
    yield name
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        conn.channel().exchange_delete(name)


def _listen_for(app: Listener, binding: Binding, expected: int):
    seen, done = [], threading.Event()

    def handler(event):
        seen.append((event.routing_key, event.routes, event.body))
        if len(seen) >= expected:
            done.set()
    app.add_handler(handler, binding)
    return seen, done


def test_publish_with_cc_routes_reaches_a_pulse_users_listener(pulse_user, own_exchange):
    app = Listener(broker=pulse_user.url)
    seen, done = _listen_for(app, Binding(own_exchange, "route.index.mine.#"), 1)
    with running(app):
        # Only the route matches the listener's binding: the primary key alone would reach nobody.
        tcpulse.publish(own_exchange, {"n": 1}, routing_key="primary.a", routes=["index.mine.latest", "other"],
                        broker=pulse_user.url)
        assert done.wait(20), seen
    assert seen == [("primary.a", ["index.mine.latest", "other"], {"n": 1})]


def test_publisher_confirms_many_over_one_connection_in_batches(pulse_user, own_exchange):
    queue = f"queue/{pulse_user.name}/pub-{uuid.uuid4().hex[:8]}"
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        kombu.Queue(queue, kombu.Exchange(own_exchange, "topic"), routing_key="#", auto_delete=True,
                    channel=conn.channel()).declare()
        with tcpulse.Publisher(pulse_user.url, batch=40) as publisher:
            for n in range(250):
                publisher.publish(own_exchange, {"n": n}, routing_key=f"primary.{n}")
            assert publisher.flush() == 250
        wait_for(lambda: conn.channel().queue_declare(queue, passive=True).message_count == 250, 10,
                 what="250 messages in the queue")
        conn.channel().queue_delete(queue)


def test_a_nacked_publish_raises_naming_the_refusal(pulse_user, own_exchange):
    # A full queue that rejects publishes makes the broker nack every confirmed publish routed to it.
    queue = f"queue/{pulse_user.name}/full-{uuid.uuid4().hex[:8]}"
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        kombu.Queue(queue, kombu.Exchange(own_exchange, "topic"), routing_key="#", auto_delete=True,
                    queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
                    channel=conn.channel()).declare()
        with pytest.raises(BrokerFailure, match=r"refused \(nacked\) 1 message"):
            tcpulse.publish(own_exchange, {}, routing_key="primary.a", broker=pulse_user.url)
        conn.channel().queue_delete(queue)


def test_a_pulse_user_may_not_publish_to_a_service_exchange(pulse_user, taskcluster_exchanges):
    with pytest.raises(BrokerFailure, match="ACCESS_REFUSED") as refused:
        tcpulse.publish(QueueEvents.taskCompleted, {}, broker=pulse_user.url, **FIELDS)
    assert pulse_user.password not in str(refused.value)


def test_entry_fields_build_the_key_on_memory_and_reach_a_listener():
    app = Listener(broker="memory://")
    seen, done = _listen_for(app, QueueEvents.taskCompleted(taskGroupId="g"), 1)
    with running(app):
        tcpulse.publish(QueueEvents.taskCompleted, {"status": {}}, routes=("index.a",), broker="memory://", **FIELDS)
        assert done.wait(10)
    assert seen == [("primary.t1.0.wg.w.p.wt.s.g._", ["index.a"], {"status": {}})]


@pytest.mark.parametrize("call, message", [
    (dict(routing_key="primary.t1.0"), "expected at least 9 words"),
    (dict(routing_key="primary.#"), "has a wildcard"),
    (dict(routing_key="x.t1.0.wg.w.p.wt.s.g"), "must be the constant 'primary'"),
    (dict(taskId="t1"), "missing: runId"),
    (dict(routing_key="primary.t1.0.wg.w.p.wt.s.g", taskId="t1"), "not both"),
    (dict(routing_key="primary.t1.0.wg.w.p.wt.s.g", routes=["index.*"]), "without '\\*' or '#'"),
])
def test_a_key_that_does_not_fit_is_refused_before_connecting(call, message):
    with pytest.raises(TaskclusterTopicExchangeFailure, match=message):
        tcpulse.publish(QueueEvents.taskCompleted, {}, broker="amqp://nobody:x@127.0.0.1:1//", **call)


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(TypeError, match="body must be a dict"):
        tcpulse.publish("exchange/mine/v1/x", [1], routing_key="k", broker="memory://")


def test_cli_publish_builds_the_key_from_fields_and_refuses_a_misfit(pulse_user, own_exchange):
    run = [str(TCPULSE), "publish", "QueueEvents.taskCompleted", "--routing-key", "primary.t1", "--broker",
           pulse_user.url]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "does not fit QueueEvents.taskCompleted" in done.stderr, done.stderr
    app = Listener(broker=pulse_user.url)
    seen, arrived = _listen_for(app, Binding(own_exchange, "primary.#"), 1)
    with running(app):
        done = subprocess.run([str(TCPULSE), "publish", own_exchange, "--routing-key", "primary.cli", "--route",
                               "index.x", "--body", '{"via": "cli"}', "--broker", pulse_user.url],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert arrived.wait(20)
    assert seen == [("primary.cli", ["index.x"], {"via": "cli"})]
    assert pulse_user.password not in done.stdout + done.stderr
