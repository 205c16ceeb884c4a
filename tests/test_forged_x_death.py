"""Issue 18, item 4: `x-death` is not a trusted origin.

RabbitMQ updates an `x-death` entry for the same queue and reason in place, keeping the
publisher's `exchange` and `routing-keys`. An attacker who publishes to one exchange a victim's
listener binds (here: a second Pulse user's own exchange) forges an entry naming the victim's
queue, and lets the victim's `max_length` drop its message: the dead letter then claims to come
from `QueueEvents.taskCompleted`. Listing must not present that claim as the origin, a requeue
must not run the attacker's body through the victim's taskCompleted handler, and a letter whose
headers cannot be read is reported and skipped, never a crash. Real RabbitMQ with two Pulse users
(the CLI too), and memory://."""
import json
import subprocess
import sys

import kombu
import pytest

from tcpulse import Binding, Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from listenerkit import delete_listener_topology, running, task_key, wait_for

COMPLETED = QueueEvents.taskCompleted


class Side:
    """A user's broker URL and name (memory:// has one user, guest)."""

    def __init__(self, url, name):
        self.url, self.name = url, name


@pytest.fixture(params=[pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "memory"])
def sides(request, unique_name):
    """(victim, attacker, the attacker's exchange, which the victim binds)."""
    if request.param == "memory":
        url = f"memory:///{unique_name}"
        victim, attacker = Side(url, "guest"), Side(url, "guest")
    else:
        victim, attacker = request.getfixturevalue("pulse_user"), request.getfixturevalue("attacker")
        request.getfixturevalue("taskcluster_exchanges")
    exchange = f"exchange/{attacker.name}/{unique_name}-events"
    with resolve_broker(attacker.url, environ={}).connection() as conn:
        conn.channel().exchange_declare(exchange, "topic", durable=True, auto_delete=False)
    yield victim, attacker, exchange
    if request.param == "rabbitmq":
        delete_listener_topology(victim.url, victim.name, unique_name)


def victim_listener(victim, name, theirs_exchange, seen):
    app = Listener(name, broker=victim.url, max_length=1)
    app.add_handler(lambda event: seen.append(("completed", event.body)), COMPLETED, taskGroupId=name)
    app.add_handler(lambda event: seen.append(("theirs", event.body)), Binding(theirs_exchange, "#"))
    return app


def forged_headers(victim, name, variant):
    queue = f"queue/{victim.name}/{name}"
    if variant == "impersonation":  # the dropped letter claims to come from taskCompleted
        return {"x-death": [{"queue": queue, "reason": "maxlen", "count": 1, "exchange": COMPLETED.exchange,
                             "routing-keys": [task_key(taskGroupId=name)]}]}
    # tcpulse's own headers, and x-death naming the old, guessable delivery exchange they were believed on
    return {"x-death": [{"queue": queue, "reason": "maxlen", "count": 1, "exchange": f"exchange/{victim.name}/{name}/delivery",
                         "routing-keys": ["return"]}],
            "tcpulse-exchange": COMPLETED.exchange, "tcpulse-routing-key": task_key(taskGroupId=name),
            "tcpulse-attempt": 1, "tcpulse-failures": "not json", "tcpulse-reason": "forged"}


def overflow_with_forgery(attacker, exchange, headers):
    """As the attacker: publish the forged message, then one more, so the victim's queue
    (max_length 1) drops the forged one into its dead-letter queue."""
    with resolve_broker(attacker.url, environ={}).connection() as conn:
        producer = kombu.Producer(conn.channel(), auto_declare=False)
        producer.publish({"id": "forged"}, exchange=exchange, routing_key="anything", headers=headers)
        producer.publish({"id": "pushes it out"}, exchange=exchange, routing_key="anything")


@pytest.mark.parametrize("variant", ["impersonation", "unreadable tcpulse headers"])
def test_a_forged_x_death_is_listed_as_a_claim_and_never_requeued_to_the_handler_it_names(
        sides, unique_name, variant, caplog):
    victim, attacker, exchange = sides
    seen = []
    with running(victim_listener(victim, unique_name, exchange, seen)):
        pass  # declares the queue (max_length 1), its bindings and its dead-letter queue
    overflow_with_forgery(attacker, exchange, forged_headers(victim, unique_name, variant))
    app = victim_listener(victim, unique_name, exchange, seen)
    wait_for(lambda: app.dead_letters(), what="the forged message in the dead-letter queue")
    [letter] = app.dead_letters()
    assert (letter["exchange"], letter["routing_key"]) == (None, None), "the forged origin is shown as the origin"
    assert letter["origin_verified"] is False
    assert letter["claimed_origin"]["exchange"] in (COMPLETED.exchange, f"exchange/{victim.name}/{unique_name}/delivery")
    assert letter["reason"] == f"dropped by the broker from {app.queue} (maxlen)" and letter["failures"] == {}
    assert letter["body"] == {"id": "forged"}
    assert app.requeue_dead_letters() == 0
    assert any(r.getMessage().startswith(f"left 1 dead letter(s) in {app.queue}/dead-letter: 1 dropped by the broker "
                                         "straight from a bound exchange") for r in caplog.records)
    with running(app):
        wait_for(lambda: ("theirs", {"id": "pushes it out"}) in seen, what="the attacker's second message")
    assert ("completed", {"id": "forged"}) not in seen and len(app.dead_letters()) == 1


@pytest.mark.rabbitmq
def test_the_dead_letters_command_lists_and_skips_a_forged_letter_without_a_traceback(
        pulse_user, attacker, taskcluster_exchanges, unique_name):
    exchange = f"exchange/{attacker.name}/{unique_name}-events"
    with resolve_broker(attacker.url, environ={}).connection() as conn:
        conn.channel().exchange_declare(exchange, "topic", durable=True, auto_delete=False)
    try:
        with running(victim_listener(pulse_user, unique_name, exchange, [])):
            pass
        overflow_with_forgery(attacker, exchange, forged_headers(pulse_user, unique_name, "unreadable"))
        command = [sys.executable, "-m", "tcpulse", "dead-letters", unique_name, "--broker", pulse_user.url]
        wait_for(lambda: tcpulse(command + ["--list"]).stdout.strip(), what="the dead letter")
        listed = tcpulse(command + ["--list"])
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        assert json.loads(listed.stdout)["origin_verified"] is False
        requeued = tcpulse(command + ["--requeue"])
        assert requeued.returncode == 0 and "Traceback" not in requeued.stderr, requeued.stderr
        queue = f"queue/{pulse_user.name}/{unique_name}"
        assert requeued.stderr.splitlines() == [
            f"left 1 dead letter(s) in {queue}/dead-letter: 1 dropped by the broker straight from a bound exchange, "
            "whose origin is only what their publisher wrote in x-death (see claimed_origin in --list)",
            f"requeued 0 dead letter(s) from {queue}/dead-letter to {queue}"]
    finally:
        delete_listener_topology(pulse_user.url, pulse_user.name, unique_name)


def tcpulse(command):
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(params=[pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "memory"])
def victim_url(request, unique_name):
    if request.param == "memory":
        yield f"memory:///{unique_name}"
        return
    user = request.getfixturevalue("pulse_user")
    request.getfixturevalue("taskcluster_exchanges")
    yield user.url
    delete_listener_topology(user.url, user.name, unique_name)


def test_a_dead_letter_whose_headers_cannot_be_read_is_listed_as_unreadable_and_skipped(victim_url, unique_name,
                                                                                       caplog):
    """A letter through the listener's own exchange (believed) whose tcpulse-failures is not
    JSON: the listing says so, the requeue leaves it and says why, the good letter goes."""
    seen = []
    app = Listener(unique_name, broker=victim_url)
    app.add_handler(lambda event: seen.append(event.body), COMPLETED, taskGroupId=unique_name)
    with running(app):
        exchange = app._delivery.exchange
    origin = {"tcpulse-exchange": COMPLETED.exchange, "tcpulse-routing-key": task_key(taskGroupId=unique_name),
              "tcpulse-attempt": 5, "tcpulse-reason": "failed 5 of 5 attempts"}
    with resolve_broker(victim_url, environ={}).connection() as conn:
        producer = kombu.Producer(conn.channel(), auto_declare=False)
        for body, failures in (({"id": "unreadable"}, "not json"), ({"id": "good"}, "{}")):
            producer.publish(body, exchange=exchange, routing_key="dead-letter",
                             headers={**origin, "tcpulse-failures": failures})
    unreadable, good = app.dead_letters()
    assert unreadable["unreadable"] == "its tcpulse-failures header is not a JSON object"
    assert unreadable["failures"] is None and unreadable["exchange"] == COMPLETED.exchange
    assert "unreadable" not in good and good["failures"] == {}
    assert app.requeue_dead_letters() == 1
    assert any(r.getMessage() == f"left 1 dead letter(s) in {app.queue}/dead-letter: unreadable: its tcpulse-failures "
                                 "header is not a JSON object" for r in caplog.records)
    app = Listener(unique_name, broker=victim_url)
    app.add_handler(lambda event: seen.append(event.body), COMPLETED, taskGroupId=unique_name)
    with running(app):
        wait_for(lambda: seen == [{"id": "good"}], what="the requeued good letter")
    assert [letter["body"] for letter in app.dead_letters()] == [{"id": "unreadable"}]
