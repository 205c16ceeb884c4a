"""The retry and dead-letter topology on the real RabbitMQ, driven directly with kombu as a user
with Pulse's permissions (no listener involved): it can be declared, a held copy comes back with
its origin intact, dead letters can be listed and requeued, and the default exchange is never
needed."""
import contextlib
import time

import kombu
import pytest
from amqp.exceptions import AccessRefused

from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.deadletters import list_dead_letters, requeue_dead_letters
from tcpulse._listen.delivery import Delivery
from tcpulse.errors import BrokerFailure
from tcpulse._listen.outcome import DeadLetter, Origin, Retry, RetryPolicy, decode_body
from tcpulse._listen.topology import QueueConflict, explain_conflicts
from listenerkit import running, task_key
from listenerkit import wait_for as wait_until

COMPLETED = QueueEvents.taskCompleted

POLICY = RetryPolicy(max_attempts=3, retry_delays=(0.2, 0.5), jitter=0.25)


class MemoryUser:
    name = "memory-user"


def pulse_connection(pulse_user):
    return kombu.Connection(hostname="127.0.0.1", port=5672, userid=pulse_user.name,
                            password=pulse_user.password, virtual_host="/")


@pytest.fixture(params=[pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "memory"])
def user_conn(request, unique_name):
    """A connection as a Pulse-permission user on the real broker, or to the embedded one."""
    if request.param == "rabbitmq":
        user = request.getfixturevalue("pulse_user")
        connection = pulse_connection(user)
    else:
        user, connection = MemoryUser(), kombu.Connection(f"memory:///{unique_name}",
                                                          transport="tcpulse._broker.broker:Transport")
    with connection:
        yield user, connection


@pytest.fixture
def conn(user_conn):
    return user_conn[1]


@pytest.fixture
def pulse_conn(pulse_user):
    with pulse_connection(pulse_user) as connection:
        yield connection


@pytest.fixture
def topology(user_conn, unique_name, queue_type):
    """A listener-like queue bound to a source exchange of our own, plus the delivery topology."""
    user, conn = user_conn
    queue = f"queue/{user.name}/{unique_name}"
    source = kombu.Exchange(f"exchange/{user.name}/{unique_name}-src", type="topic")
    delivery = Delivery(queue, POLICY, queue_type=queue_type)
    channel = conn.channel()
    source(channel).declare()
    kombu.Queue(queue, source, routing_key="primary.#", durable=True,
                queue_arguments=delivery.queue_arguments(), channel=channel).declare()
    delivery.declare(channel)
    yield delivery, source, channel
    cleanup = conn.channel()
    for name in [queue, delivery.dead_letter_queue] + [f"{queue}/retry-{d:g}s" for d in POLICY.retry_delays]:
        cleanup.queue_delete(name)
    cleanup.exchange_delete(source.name)
    cleanup.exchange_delete(delivery.exchange)


def publish(channel, exchange, key, body=b'{"status": "ok"}', headers=None):
    kombu.Producer(channel, exchange=exchange, auto_declare=False).publish(
        body, routing_key=key, headers=headers or {}, content_type="application/json",
        content_encoding="utf-8")


def wait_for(queue_name, channel, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = kombu.Queue(queue_name, channel=channel).get()
        if message is not None:
            return message
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {queue_name} within {timeout} s")


def test_a_pulse_user_can_declare_the_topology_again_and_again(topology):
    delivery, _, channel = topology
    delivery.declare(channel)
    delivery.declare(channel)
    for name in (delivery.holding_queue(2), delivery.holding_queue(3), delivery.dead_letter_queue):
        assert channel.queue_declare(name, passive=True).message_count == 0


def test_a_held_copy_comes_back_to_the_listener_queue_after_its_delay_with_its_origin(topology):
    delivery, source, channel = topology
    publish(channel, source, "primary.task.1", headers={"CC": ["route.index.a"], "trace": "t1"})
    first = wait_for(delivery.queue, channel)
    origin = Origin.of(first.headers, first.delivery_info["exchange"], first.delivery_info["routing_key"])
    assert origin.cc == ("route.index.a",) and origin.attempt == 1

    delivery.retry(first, origin, Retry(0.2, ("app.h",), 2))
    first.ack()
    sent = time.monotonic()
    back = wait_for(delivery.queue, channel)
    waited = time.monotonic() - sent

    assert waited >= 0.15
    assert back.delivery_info["exchange"] == delivery.exchange
    assert decode_body(back.body) == {"status": "ok"} and back.headers["trace"] == "t1"
    again = Origin.of(back.headers, back.delivery_info["exchange"], back.delivery_info["routing_key"])
    assert again == Origin(source.name, "primary.task.1", ("route.index.a",), 2, ("app.h",))
    back.ack()


def test_the_holding_queue_alone_brings_a_copy_back_when_the_message_has_no_expiration(topology):
    # The embedded broker may ignore per-message expiration; the queue's own TTL must suffice.
    delivery, source, channel = topology
    publish(channel, kombu.Exchange(delivery.exchange, type="direct"), "retry-0.5s",
            headers={"tcpulse-exchange": source.name, "tcpulse-routing-key": "primary.x", "tcpulse-attempt": 3})
    back = wait_for(delivery.queue, channel, timeout=3)
    assert Origin.of(back.headers, "?", "?").attempt == 3
    back.ack()


@pytest.mark.rabbitmq
def test_a_pulse_user_may_not_publish_to_the_default_exchange(pulse_conn, pulse_user):
    # What the delivery topology is built to avoid: this is the error it would otherwise hit.
    channel = pulse_conn.channel()
    with pytest.raises(AccessRefused, match="access to exchange 'amq.default'"):
        publish(channel, kombu.Exchange(""), f"queue/{pulse_user.name}/anything")
        channel.queue_declare(f"queue/{pulse_user.name}/sync", passive=False, auto_delete=True)


def test_a_dead_letter_is_listed_with_why_and_requeued_as_attempt_one_of_the_failed_handler(conn, topology):
    delivery, source, channel = topology
    publish(channel, source, "primary.task.2", headers={"CC": ["route.index.b"]})
    message = wait_for(delivery.queue, channel)
    origin = Origin("exchange/taskcluster-queue/v1/task-failed", "primary.task.2", ("route.index.b",), 3, ("app.h",))
    verdict = DeadLetter("failed 3 of 3 attempts", {"app.h": {"type": "ValueError", "message": "db down"}})
    delivery.dead_letter(message, origin, verdict)
    message.ack()

    listed = list_dead_letters(conn, delivery.queue)
    assert len(listed) == 1
    record = listed[0]
    assert record["reason"] == "failed 3 of 3 attempts" and record["attempts"] == 3
    assert record["failures"] == {"app.h": {"type": "ValueError", "message": "db down"}}
    assert (record["exchange"], record["routing_key"], record["routes"]) == (
        "exchange/taskcluster-queue/v1/task-failed", "primary.task.2", ["index.b"])
    assert record["body"] == {"status": "ok"} and record["dead_lettered_at"].endswith("+00:00")
    assert len(list_dead_letters(conn, delivery.queue)) == 1, "listing must leave the letters in place"

    assert requeue_dead_letters(conn, delivery.queue) == 1
    back = wait_for(delivery.queue, channel)
    again = Origin.of(back.headers, back.delivery_info["exchange"], back.delivery_info["routing_key"])
    assert again == Origin("exchange/taskcluster-queue/v1/task-failed", "primary.task.2",
                           ("route.index.b",), 1, ("app.h",))
    back.ack()
    assert list_dead_letters(conn, delivery.queue) == []


def test_a_poison_dead_letter_lists_its_text_and_reason(conn, topology):
    delivery, source, channel = topology
    publish(channel, source, "primary.p", body=b"not json \xff")
    message = wait_for(delivery.queue, channel)
    delivery.dead_letter(message, Origin.of(message.headers, source.name, "primary.p"),
                         DeadLetter("body is not valid UTF-8 (byte 9)"))
    message.ack()
    [record] = list_dead_letters(conn, delivery.queue)
    assert record["reason"] == "body is not valid UTF-8 (byte 9)"
    assert record["body_text"] == "not json \ufffd" and "body" not in record


def test_a_full_listener_queue_drops_its_oldest_messages_into_the_dead_letter_queue(user_conn, unique_name,
                                                                                     queue_type):
    user, conn = user_conn
    queue = f"queue/{user.name}/{unique_name}"
    with listener_queue(conn, Delivery(queue, POLICY, max_length=3, queue_type=queue_type)) as (delivery, source, channel):
        for i in range(5):
            publish(channel, source, f"primary.{i}", body=b'{"i": %d}' % i, headers={"CC": ["route.r.%d" % i]})
        deadline = time.monotonic() + 5
        while channel.queue_declare(delivery.dead_letter_queue, passive=True).message_count < 2:
            assert time.monotonic() < deadline, "the dropped messages never reached the dead-letter queue"
            time.sleep(0.02)
        records = list_dead_letters(conn, queue)
        assert [r["body"]["i"] for r in records] == [0, 1]
        assert records[0]["reason"] == f"dropped by the broker from {queue} (maxlen)"
        # Dropped straight from a bound exchange: the origin is only what x-death says, which a
        # publisher can write itself, so it is shown as a claim and not requeued.
        assert [(r["origin_verified"], r["exchange"], r["claimed_origin"]) for r in records] == [
            (False, None, {"exchange": source.name, "routing_key": f"primary.{i}", "routes": [f"r.{i}"]}) for i in (0, 1)]
        assert channel.queue_declare(queue, passive=True).message_count == 3


@contextlib.contextmanager
def listener_queue(conn, delivery):
    """`delivery`'s queue bound to a source exchange of our own with '#', and its topology;
    all of it deleted afterwards."""
    channel = conn.channel()
    source = kombu.Exchange(delivery.names.queue.replace("queue/", "exchange/", 1) + "-src", type="topic",
                            channel=channel)
    source.declare()
    kombu.Queue(delivery.queue, source, routing_key="#", queue_arguments=delivery.queue_arguments(),
                channel=channel).declare()
    delivery.declare(channel)
    try:
        yield delivery, source, channel
    finally:
        for name in (delivery.queue, delivery.dead_letter_queue, delivery.holding_queue(2), delivery.holding_queue(3)):
            channel.queue_delete(name)
        channel.exchange_delete(source.name)
        channel.exchange_delete(delivery.exchange)


def test_redeclaring_with_other_queue_arguments_is_one_line_naming_the_queue_and_remedy(conn, topology):
    delivery, _, _ = topology
    bigger = Delivery(delivery.queue, POLICY, max_length=20, queue_type=delivery.queue_type)
    channel = conn.channel()
    with pytest.raises(QueueConflict) as caught:
        with explain_conflicts():
            kombu.Queue(delivery.queue, durable=True, queue_arguments=bigger.queue_arguments(),
                        channel=channel).declare()
    message = str(caught.value)
    assert "\n" not in message
    # On quorum, max_length also switches dead-lettering to at-most-once: either argument may be named.
    differs = ("x-max-length",) if delivery.queue_type == "classic" else ("x-max-length", "x-dead-letter-strategy")
    assert any(message.startswith(f"queue {delivery.queue!r} already exists with a different {arg!r} (")
               for arg in differs), message
    assert message.endswith(f"delete it (rabbitmqctl delete_queue {delivery.queue!r}, or from the Pulse "
                            "web UI; its messages are lost) or start the listener with the options it "
                            "was created with")


def test_listing_the_dead_letters_of_a_listener_that_never_ran_says_so(user_conn):
    user, conn = user_conn
    queue = f"queue/{user.name}/never-ran"
    with pytest.raises(BrokerFailure, match=f"there is no dead-letter queue '{queue}/dead-letter' on this broker"):
        list_dead_letters(conn, queue)


def test_a_queue_not_named_like_a_pulse_queue_is_refused():
    with pytest.raises(ValueError, match=r"must be named queue/<user>/<name> \(got 'watcher'\)"):
        Delivery("watcher", POLICY)


def test_retries_and_dead_letters_work_on_the_embedded_broker(unique_name, queue_type):
    app = Listener(unique_name, broker="memory://", max_attempts=3, retry_delays=(0.1, 0.2), queue_type=queue_type)
    attempts = {"flaky": [], "doomed": []}

    @app.on(COMPLETED)
    def handler(event):
        attempts[event.body["id"]].append(event.attempt)
        if event.body["id"] == "doomed" or event.attempt < 2:
            raise ConnectionError("down")

    with running(app):
        with resolve_broker("memory://", environ={}).connection() as conn:
            producer = kombu.Producer(conn.channel(), auto_declare=False)
            for mid in ("flaky", "doomed"):
                producer.publish({"id": mid}, exchange=COMPLETED.exchange, routing_key=task_key(taskId=mid),
                                 headers={"CC": ["route.index.m"]})
        wait_until(lambda: app.metrics.get("dead_lettered") == 1 and attempts["flaky"] == [1, 2],
                 what="a retry and a dead letter")
        [record] = app.dead_letters()
    assert attempts == {"flaky": [1, 2], "doomed": [1, 2, 3]}
    assert (record["reason"], record["routes"], record["body"]) == ("failed 3 of 3 attempts", ["index.m"], {"id": "doomed"})


@pytest.mark.parametrize("options, message", [
    ({"max_length": 0}, r"max_length must be an integer >= 1 \(got 0\)"),
    ({"max_length": "100"}, r"max_length must be an integer >= 1 \(got '100'\)"),
    ({"max_attempts": 0}, r"max_attempts must be an integer >= 1 \(got 0\)"),
    ({"retry_delays": (5, 0)}, r"retry_delays must be a non-empty sequence of seconds > 0 \(got \(5, 0\)\)"),
])
def test_bad_delivery_options_are_refused_when_the_listener_is_made(options, message):
    with pytest.raises(ValueError, match=message):
        Listener("w", broker="memory://", **options)


def test_the_docstring_examples_run(monkeypatch):
    import doctest

    import tcpulse._listen.deadletters
    import tcpulse._listen.delivery

    monkeypatch.delenv("PULSE_URL", raising=False)
    results = [doctest.testmod(module) for module in (tcpulse._listen.delivery, tcpulse._listen.deadletters)]
    assert sum(tried for _, tried in results) > 10 and sum(failures for failures, _ in results) == 0


def test_a_message_never_acked_is_dead_lettered_after_delivery_limit_deliveries_with_that_reason(
        user_conn, unique_name):
    user, conn = user_conn
    queue = f"queue/{user.name}/{unique_name}"
    limited = Delivery(queue, POLICY, queue_type="quorum", delivery_limit=3)
    with listener_queue(conn, limited) as (delivery, source, channel):
        publish(channel, source, "primary.crash", headers={"CC": ["route.r.c"]})
        counts = []
        for _ in range(3):  # each time the consumer dies before acking: its channel closes
            consumer = conn.channel()
            counts.append(wait_for(queue, consumer).headers.get("x-delivery-count"))
            consumer.close()
        records = []
        deadline = time.monotonic() + 5
        while not records and time.monotonic() < deadline:
            records = list_dead_letters(conn, queue)
        [record] = records
        assert counts == [0, 1, 2]
        assert record["reason"] == (f"delivered 3 times without an ack (delivery_limit 3): the process handling "
                                    f"it exited or lost its connection each time, so {queue} dead-lettered it")
        assert record["claimed_origin"] == {"exchange": source.name, "routing_key": "primary.crash", "routes": ["r.c"]}
        assert (record["origin_verified"], record["body"]) == (False, {"status": "ok"})
        assert channel.queue_declare(queue, passive=True).message_count == 0


@pytest.mark.parametrize("options, message", [
    ({"queue_type": "quorom"}, r"queue_type must be one of classic, quorum \(got 'quorom'\). Did you mean 'quorum'\?"),
    ({"delivery_limit": True}, r"delivery_limit must be an integer >= 1 \(got True\)"),
    ({"queue_type": "quorum", "delivery_limit": 0}, r"delivery_limit must be an integer >= 1 \(got 0\)"),
])
def test_bad_queue_type_options_are_refused_when_the_listener_is_made(options, message):
    with pytest.raises(ValueError, match=message):
        Listener("w", broker="memory://", **options)


def test_a_listener_name_too_long_for_its_queues_is_refused_naming_the_name_and_by_how_much():
    name = "n" * 209  # exchange/guest/<name>/delivery-<22-character secret> is then 256 bytes
    with pytest.raises(ValueError) as caught:
        Listener(name, broker="memory://")
    assert str(caught.value) == (
        f"exchange name 'exchange/guest/{'n' * 19}...{'n' * 8}/delivery-<22 random characters>' is 256 bytes, 1 over "
        "RabbitMQ's limit of 255: shorten the listener name by at least 1 byte")
    assert Listener("n" * 208, broker="memory://").queue == "queue/guest/" + "n" * 208


def test_a_listener_name_is_measured_in_bytes():
    with pytest.raises(ValueError, match=r"exchange name '.*/delivery-<22 random characters>' is 256 bytes, 1 over"):
        Listener("é" * 102 + "abcde", broker="memory://")  # 107 characters, 209 bytes
