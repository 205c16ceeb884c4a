"""Issue 18, item 3: a listener's delivery path (retries, dead letters, binding record) is private
to it, and a copy the broker refuses never ends `run()` nor loses its message.

Each test replays an attack by a second Pulse user (`attacker`, Pulse's permissions: it may bind
a queue of its own to any `exchange/...` it can name, as Pulse allows) on the victim
(`pulse_user`) on the real RabbitMQ; the refusal and the move also run on memory://."""
import contextlib
import json
import logging
import subprocess
import sys

import kombu
import pytest
from amqp.exceptions import NotFound

from tcpulse import Listener, PermanentFailure, QueueEvents
from tcpulse._broker.connection import resolve_broker
from listenerkit import Publisher, delete_listener_topology, queued, running, task_key, wait_for

COMPLETED = QueueEvents.taskCompleted
REJECTING = {"x-max-length": 0, "x-overflow": "reject-publish"}
KEYS = ("retry-0.2s", "dead-letter", "bindings", "return")


@pytest.fixture
def victim(pulse_user, taskcluster_exchanges, unique_name):
    yield pulse_user
    delete_listener_topology(pulse_user.url, pulse_user.name, unique_name, retry_delays=(0.2, 30))


def guessable(user, name):
    """The delivery exchange's name before it carried a secret: anyone could work it out."""
    return f"exchange/{user}/{name}/delivery"


def spy(attacker, exchange, name, arguments=None):
    """As `attacker`: declare queue/<attacker>/<name> and bind it to `exchange` with every key the
    delivery path uses. Returns whether the broker let it bind (False: no such exchange)."""
    with resolve_broker(attacker.url, environ={}).connection() as conn:
        channel = conn.channel()
        channel.queue_declare(f"queue/{attacker.name}/{name}", durable=False, auto_delete=False,
                              arguments=arguments or {})
        try:
            for key in KEYS:
                channel.queue_bind(f"queue/{attacker.name}/{name}", exchange, key)
        except NotFound:
            return False
    return True


def failing_listener(victim, name, headers=None):
    """A listener whose handler fails once (a retry), then for good on the second message (a
    dead letter); `seen` records (body id, attempt), `headers` (a list) each event's headers."""
    app = Listener(name, broker=victim.url, retry_delays=(0.2,), max_attempts=3)
    seen = []

    @app.on(COMPLETED, taskGroupId=name)
    def flaky(event):
        seen.append((event.body["id"], event.attempt))
        if headers is not None:
            headers.append(json.dumps(event.headers, default=str))
        if event.body["id"] == "doomed":
            raise PermanentFailure("never")
        if event.attempt == 1:
            raise ConnectionError("once")
    return app, seen


def run_retry_and_dead_letter(app, seen, name):
    with running(app), Publisher() as pub:
        for body in ({"id": "flaky"}, {"id": "doomed"}):
            pub.publish(COMPLETED.exchange, task_key(taskGroupId=name), body)
        wait_for(lambda: ("flaky", 2) in seen and app.metrics.get("dead_lettered") == 1,
                 what="the retry and the dead letter")
        assert app.is_ready()


@pytest.mark.rabbitmq
def test_another_pulse_user_cannot_block_the_delivery_path_with_a_rejecting_queue(victim, attacker, unique_name):
    """Attack: bind `x-max-length: 0, reject-publish` to exchange/<victim>/<name>/delivery, so that
    every confirmed publish through it is nacked (the listener could not start: the binding
    record's publish failed; or it died on the first failed handler)."""
    with running(failing_listener(victim, unique_name)[0]):
        pass  # the listener's first start: its whole topology exists from now on
    app, seen = failing_listener(victim, unique_name)
    guessed = guessable(victim.name, unique_name)
    assert not spy(attacker, guessed, f"{unique_name}-block", REJECTING), "the guessable exchange must not exist"
    run_retry_and_dead_letter(app, seen, unique_name)
    assert seen == [("flaky", 1), ("doomed", 1), ("flaky", 2)]
    [letter] = app.dead_letters()
    assert letter["reason"].startswith("permanent failure in") and letter["origin_verified"]


@pytest.mark.rabbitmq
def test_another_pulse_user_cannot_read_retries_dead_letters_or_the_binding_record(victim, attacker, unique_name,
                                                                                  caplog):
    """Attack: bind a plain queue to exchange/<victim>/<name>/delivery and read every retry, dead
    letter (with its failure text) and the binding record. The secret part of the exchange's
    name is nowhere the attacker can look, nor in the listener's log."""
    caplog.set_level(logging.DEBUG)
    headers = []
    app, seen = failing_listener(victim, unique_name, headers)
    guessed = guessable(victim.name, unique_name)
    assert not spy(attacker, guessed, f"{unique_name}-read")
    run_retry_and_dead_letter(app, seen, unique_name)
    assert not spy(attacker, guessed, f"{unique_name}-read")
    assert queued(attacker.url, f"queue/{attacker.name}/{unique_name}-read") == 0
    exchange = locate_as(victim, app.queue)
    assert exchange.startswith(guessed + "-") and len(exchange) == len(guessed) + 23
    secret = exchange[len(guessed) + 1:]
    # Not in the log, nor in the headers a handler sees (which it might log or forward): the
    # broker's x-death of the retry names the holding queue's dead-letter exchange.
    assert not any(secret in r.getMessage() for r in caplog.records)
    assert len(headers) == 3 and not any(secret in h for h in headers)
    # Only the victim finds it: the attacker cannot read the victim's binding record.
    with pytest.raises(Exception, match="ACCESS_REFUSED"):
        locate_as(attacker, app.queue)


def locate_as(user, queue):
    from tcpulse._listen.layout import locate
    from tcpulse._listen.topology import ListenerNames

    with resolve_broker(user.url, environ={}).connection() as conn:
        return locate(conn, ListenerNames(queue)).exchange


class Victim:
    """The victim on memory://, where there are no users."""

    def __init__(self, url):
        self.url = url


@pytest.fixture(params=[pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "memory"])
def victim_anywhere(request, unique_name):
    if request.param == "memory":
        yield Victim(f"memory:///{unique_name}")
    else:
        yield request.getfixturevalue("victim")


@contextlib.contextmanager
def service_publisher(url):
    """Publishes as a Taskcluster service: as guest on RabbitMQ, in-process on memory://."""
    if not url.startswith("memory"):
        with Publisher() as pub:
            yield pub.publish
        return
    with resolve_broker(url, environ={}).connection() as conn:
        producer = kombu.Producer(conn.channel(), auto_declare=False)
        yield lambda exchange, key, body: producer.publish(body, exchange=exchange, routing_key=key)


def test_a_copy_the_broker_nacks_never_ends_run_and_its_message_waits_unacked_until_it_goes_through(
        victim_anywhere, unique_name, monkeypatch, caplog):
    """Whatever makes the broker refuse a retry copy (here a queue of the victim's own that
    rejects every message, as the attacker's did), the listener keeps running, the message stays
    unacked, and its copy is sent again later until the broker takes it."""
    monkeypatch.setattr("tcpulse._listen.unsettled.FIRST_WAIT", 0.3, raising=False)
    app, seen = failing_listener(victim_anywhere, unique_name)
    with running(app), service_publisher(victim_anywhere.url) as publish, \
            resolve_broker(victim_anywhere.url, environ={}).connection() as conn:
        channel = conn.channel()
        blocker, exchange = f"{app.queue}/blocker", app._delivery.exchange
        channel.queue_declare(blocker, durable=False, auto_delete=False, arguments=REJECTING)
        channel.queue_unbind(app._delivery.holding_queue(2), exchange, "retry-0.2s")
        channel.queue_bind(blocker, exchange, "retry-0.2s")
        publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": "flaky"})
        refused = ("the broker nacked a copy sent with key 'retry-0.2s' through the listener's delivery exchange (a "
                   "queue bound there refused it: full, or unavailable); the message stays unacked and its copy is "
                   "sent again in ")
        wait_for(lambda: sum(r.getMessage().startswith(refused) for r in caplog.records) >= 2, what="two refusals")
        assert seen == [("flaky", 1)] and app.is_ready() and app.metrics.get("acked") == 0
        channel.queue_delete(blocker)  # now returned for want of a queue: the listener binds its own again
        wait_for(lambda: seen == [("flaky", 1), ("flaky", 2)], what="the retry, once the copy went through")
        wait_for(lambda: app.metrics.get("acked") == 2, what="both deliveries acked")
    assert app.metrics.get("reconnects") == 0


def build_legacy_layout(url, name, handler):
    """As the victim, lay out listener `name` as tcpulse did before the private exchange: its
    queue (bound to COMPLETED, and to FAILED by a handler since removed), exchange/<user>/<name>/delivery,
    a retry waiting 30 s in a holding queue, a dead letter of `handler`, a message in the queue
    and a binding record without a secret. Returns the listener's queue and old exchange."""
    from tcpulse._listen.delivery import Delivery
    from tcpulse._listen.outcome import RetryPolicy

    address = resolve_broker(url, environ={})
    queue = f"queue/{address.user}/{name}"
    old = Delivery(queue, RetryPolicy(retry_delays=(30,)))  # no secret: the legacy names
    key = task_key(taskGroupId=name)
    origin = {"tcpulse-exchange": COMPLETED.exchange, "tcpulse-routing-key": key, "tcpulse-cc": []}
    with address.connection() as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=old.queue_arguments())
        for exchange in (COMPLETED, QueueEvents.taskFailed):
            channel.queue_bind(queue, exchange.exchange, exchange(taskGroupId=name).routing_key_pattern)
        old.declare(channel)
        channel.queue_declare(f"{queue}/bindings", durable=True, auto_delete=False)
        channel.queue_bind(f"{queue}/bindings", old.exchange, "bindings")

        def publish(body, routing_key, headers=None, expiration=None):
            message = channel.prepare_message(json.dumps(body).encode(), content_type="application/json",
                                              content_encoding="utf-8", headers=headers or {},
                                              properties={"delivery_mode": 2, **({"expiration": expiration}
                                                                                  if expiration else {})})
            channel.basic_publish(message, exchange=old.exchange, routing_key=routing_key)

        publish({"id": "waiting"}, "return", origin)
        publish({"id": "retried"}, "retry-30s", {**origin, "tcpulse-attempt": 2}, expiration="30000")
        publish({"id": "parked"}, "dead-letter", {**origin, "tcpulse-attempt": 3, "tcpulse-reason": "failed 3 of 3",
                                                  "tcpulse-failures": json.dumps({handler: {"type": "E", "message": "m"}})})
        publish({"bindings": [[e.exchange, e(taskGroupId=name).routing_key_pattern]
                              for e in (COMPLETED, QueueEvents.taskFailed)],
                 "holding_queues": old.holding_queues()}, "bindings")
    return queue, old.exchange


def test_a_listener_on_the_old_layout_moves_to_the_private_exchange_on_start_with_nothing_lost(
        victim_anywhere, attacker_anywhere, unique_name, caplog):
    """Attack in place before the upgrade: the attacker's queue is bound to the old, guessable
    exchange. On start the listener moves: the message waiting in its queue and the retry
    waiting in a holding queue are handled, the dead letter stays (and requeues to its handler),
    the binding record keeps working (the removed handler's binding goes), and the old exchange,
    with the attacker's binding, is gone."""
    caplog.set_level(logging.INFO, logger="tcpulse.listener")
    app = Listener(unique_name, broker=victim_anywhere.url, retry_delays=(30,))
    seen = []
    handler = app.add_handler(lambda event: seen.append((event.body["id"], event.attempt)), COMPLETED,
                              taskGroupId=unique_name)
    queue, legacy = build_legacy_layout(victim_anywhere.url, unique_name, handler.name)
    if attacker_anywhere is not None:
        assert spy(attacker_anywhere, legacy, f"{unique_name}-old")
    with running(app):
        wait_for(lambda: sorted(seen) == [("retried", 2), ("waiting", 1)], what="the waiting and the held message")
        assert app._delivery.exchange.startswith(legacy + "-")
        [letter] = app.dead_letters()
        assert (letter["exchange"], letter["routing_key"], letter["attempts"], letter["origin_verified"]) == (
            COMPLETED.exchange, task_key(taskGroupId=unique_name), 3, True)
        assert app.requeue_dead_letters() == 1
        wait_for(lambda: ("parked", 1) in seen, what="the requeued dead letter")
    messages = [r.getMessage() for r in caplog.records]
    assert f"moving {queue}, off {legacy}, which any Pulse user can bind to (and so read or block its retries, " \
           "dead letters and binding record), to a new private delivery exchange; what waits in its queue and retry " \
           "queues comes back to its queue" in messages
    assert any(m.startswith(f"moved {queue} to its private delivery exchange (2 message(s) back in its queue)")
               for m in messages)
    assert any(m.startswith(f"removed the binding of {queue} to {QueueEvents.taskFailed.exchange}") for m in messages)
    with resolve_broker(victim_anywhere.url, environ={}).connection() as conn:
        with pytest.raises(NotFound):
            conn.channel().exchange_declare(legacy, "direct", passive=True)
        assert locate_as(victim_anywhere, queue) == app._delivery.exchange
    if attacker_anywhere is not None:
        assert queued(attacker_anywhere.url, f"queue/{attacker_anywhere.name}/{unique_name}-old") == 0


@pytest.fixture
def attacker_anywhere(victim_anywhere, request):
    """The attacker where there are users (RabbitMQ); none on memory://."""
    return None if victim_anywhere.url.startswith("memory") else request.getfixturevalue("attacker")


@pytest.mark.rabbitmq
def test_migrate_finds_a_listener_on_the_old_layout_and_leaves_it_on_a_private_exchange(victim, attacker, unique_name):
    """`tcpulse migrate` on a listener that never started with this version: it moves the queues
    to the other type and off the guessable exchange at once, nothing lost."""
    queue, legacy = build_legacy_layout(victim.url, unique_name, "app.h")
    assert spy(attacker, legacy, f"{unique_name}-migrate")
    done = subprocess.run([sys.executable, "-m", "tcpulse", "migrate", unique_name, "--to", "quorum",
                           "--retry-delays", "30", "--broker", victim.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"deleted exchange {legacy}" in done.stdout.splitlines()
    exchange = locate_as(victim, queue)
    assert exchange.startswith(legacy + "-")
    assert queued(victim.url, queue) == 2  # the waiting message and the retry, back at once
    [letter] = Listener(unique_name, broker=victim.url).dead_letters()
    assert (letter["body"], letter["origin_verified"], letter["exchange"]) == ({"id": "parked"}, True, COMPLETED.exchange)
    assert queued(attacker.url, f"queue/{attacker.name}/{unique_name}-migrate") == 0
