"""Delivery guarantees of a running listener on the real RabbitMQ, as a user with Pulse's
permissions (issue 6): delayed retries of only the failed handlers, the dead-letter queue and its
requeue, poison messages, a queue deleted under the listener, and queue-argument conflicts."""
import json
import re
import subprocess
import sys
import time

import kombu
import pytest

from tcpulse import Listener, PermanentFailure, QueueEvents, TaskclusterRestFailure
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.deadletters import list_dead_letters
from tcpulse._listen.delivery import Delivery
from tcpulse._listen.outcome import RetryPolicy
from conftest import rabbitmqctl
from listenerkit import Publisher, delete_delivery_exchange, queued, running, task_key, wait_for

pytestmark = pytest.mark.rabbitmq

COMPLETED = QueueEvents.taskCompleted


@pytest.fixture(autouse=True)
def cleanup_delivery_exchange(pulse_user, unique_name):
    """Exchanges outlive their user; the queues go when the session's user is cleaned up."""
    yield
    delete_delivery_exchange(pulse_user.url, f"queue/{pulse_user.name}/{unique_name}")


def pulse_connection(pulse_user):
    return resolve_broker(pulse_user.url, environ={}).connection()


def holding_queues(app):
    delivery = Delivery(app.queue, RetryPolicy(app.max_attempts, app.retry_delays))
    return sorted({delivery.holding_queue(a) for a in range(2, len(app.retry_delays) + 2)})


def test_a_handler_failing_twice_is_handled_on_attempt_3_while_later_messages_flow(
        pulse_user, taskcluster_exchanges, unique_name, queue_type, caplog):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, max_attempts=5, retry_delays=(2.0, 0.3))
    attempts, audited = [], []

    # Group ids unique to this test: other test runs publish to the same real exchanges.
    flaky_group, other_group = unique_name + "-f", unique_name + "-o"

    @app.on(COMPLETED, taskGroupId=flaky_group)
    def flaky(event):
        attempts.append((event.attempt, time.monotonic(), event.exchange, event.routing_key, tuple(event.routes)))
        if event.attempt < 3:
            raise ConnectionError("database is down")

    @app.on(COMPLETED(taskGroupId=flaky_group), COMPLETED(taskGroupId=other_group))
    def audit(event):
        audited.append((event.body["id"], time.monotonic()))

    key = task_key(taskGroupId=flaky_group)
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"id": "flaky"}, routes=["index.project.a"])
        wait_for(lambda: attempts, what="the first attempt")
        for i in range(20):
            pub.publish(COMPLETED.exchange, task_key(taskGroupId=other_group), {"id": f"later-{i}"})
        wait_for(lambda: len(attempts) == 3 and len(audited) == 21, what="attempt 3 and every later message")
        wait_for(lambda: app.metrics.get("acked") == 23, what="the acks")

    assert [a[0] for a in attempts] == [1, 2, 3]
    assert {a[2:] for a in attempts} == {(COMPLETED.exchange, key, ("index.project.a",))}
    assert [i for i, _ in audited].count("flaky") == 1, "the handler that succeeded must not run again"
    later = [t for i, t in audited if i.startswith("later-")]
    assert max(later) < attempts[1][1], "later messages must be handled during the first delay"
    assert attempts[1][1] - attempts[0][1] >= 2.0 and attempts[2][1] - attempts[1][1] >= 0.3
    assert app.metrics.get("retried") == 2 and app.metrics.get("dead_lettered") == 0
    retry_lines = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert re.search(r"test_delivery_listener\.test_a_handler.*\.flaky failed on "
                     r"exchange/taskcluster-queue/v1/task-completed '.*' \(ConnectionError: database is "
                     r"down\); retrying in 2\.[0-5] s, attempt 2 of 5$", retry_lines[0])
    assert re.search(r"retrying in 0\.[34] s, attempt 3 of 5$", retry_lines[1])
    for queue in [app.queue, *holding_queues(app)]:
        assert queued(pulse_user.url, queue) == 0


def test_a_handler_that_always_fails_is_dead_lettered_with_its_error_and_requeued_after_a_fix(
        pulse_user, taskcluster_exchanges, unique_name, queue_type, caplog):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, max_attempts=3, retry_delays=(0.2,))
    fixed, seen = [False], []

    @app.on(COMPLETED, taskGroupId=unique_name)
    def doomed(event):
        seen.append(event.attempt)
        if not fixed[0]:
            raise ValueError(f"cannot parse task {event.fields['taskId']}")

    key = task_key(taskId="T1", taskGroupId=unique_name)
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"id": "doomed"}, routes=["index.x"])
        wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")
        wait_for(lambda: app.metrics.get("acked") == 3, what="the last ack")
        assert seen == [1, 2, 3]
        for queue in [app.queue, *holding_queues(app)]:
            assert queued(pulse_user.url, queue) == 0
        [record] = app.dead_letters()
        assert record["reason"] == "failed 3 of 3 attempts" and record["attempts"] == 3
        assert record["failures"] == {doomed_name(app): {"type": "ValueError", "message": "cannot parse task T1"}}
        assert (record["exchange"], record["routing_key"], record["routes"]) == (COMPLETED.exchange, key, ["index.x"])
        assert record["body"] == {"id": "doomed"}

        fixed[0] = True
        assert app.requeue_dead_letters() == 1
        wait_for(lambda: len(seen) == 4, what="the requeued message")
        wait_for(lambda: app.metrics.get("acked") == 4, what="its ack")
    assert seen[3] == 1, "a requeued dead letter starts over at attempt 1"
    assert any(f"it waits in {app.queue}/dead-letter (tcpulse dead-letters {unique_name} --list / --requeue)"
               in r.getMessage() for r in caplog.records)
    assert app.dead_letters() == []


def doomed_name(app):
    return next(h.name for h in app.handlers if h.name.endswith(".doomed"))


POISON = [
    (b'{"id": "\xff\xfe"}', "body is not valid UTF-8 (byte 8)"),
    (b"<html>502 Bad Gateway</html>", "body is not JSON (Expecting value: line 1 column 1 (char 0))"),
    (b'["a", "list"]', "body is JSON but not an object (got list)"),
    (b'{"big": "' + b"x" * (1 << 20) + b'"}', "body is 1048587 bytes, more than the limit of 1048576"),
]


def test_each_kind_of_poison_is_dead_lettered_with_its_reason_while_1000_good_messages_are_handled(
        pulse_user, taskcluster_exchanges, unique_name, queue_type):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, prefetch=20)
    handled = set()
    app.add_handler(lambda event: handled.add(event.body["id"]), COMPLETED, taskGroupId=unique_name)

    with running(app), Publisher() as pub:
        for i in range(1000):
            if i % 250 == 125:
                raw, _ = POISON[i // 250]
                pub.producer.publish(raw, exchange=COMPLETED.exchange, routing_key=task_key(taskId=f"p{i}", taskGroupId=unique_name),
                                     content_type="application/json", content_encoding="utf-8")
            pub.publish(COMPLETED.exchange, task_key(taskId=f"g{i}", taskGroupId=unique_name), {"id": i})
        wait_for(lambda: len(handled) == 1000 and app.metrics.get("dead_lettered") == 4,
                 what="every good message and four dead letters")
        assert app.is_ready(), "the listener must still be consuming"
    with pulse_connection(pulse_user) as conn:
        records = list_dead_letters(conn, app.queue)
    assert [(r["routing_key"].split(".")[1], r["reason"]) for r in records] == [
        (f"p{125 + 250 * n}", reason) for n, (_, reason) in enumerate(POISON)]
    assert records[0]["body_text"].startswith('{"id": "')
    assert queued(pulse_user.url, app.queue) == 0


def test_a_queue_deleted_under_the_listener_is_redeclared_with_its_bindings_and_a_warning(
        pulse_user, taskcluster_exchanges, unique_name, queue_type, caplog):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type)
    handled = []
    app.add_handler(lambda event: handled.append(event.body["id"]), COMPLETED, taskGroupId=unique_name)

    def warned():
        return [r for r in caplog.records if "cancelled the consumer" in r.getMessage()]

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": "before"})
        wait_for(lambda: handled == ["before"], what="the first message")
        rabbitmqctl("delete_queue", app.queue)
        wait_for(warned, what="the warning about the deleted queue")
        wait_for(app.is_ready, what="consumption to resume")
        for i in range(10):
            pub.publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": i})
        wait_for(lambda: len(handled) == 11, what="the messages published after the deletion")
    [record] = warned()
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"the broker cancelled the consumer of {app.queue}: the queue was deleted (by an operator, or "
        "by Pulse for growing too large) and the messages it held are LOST; redeclaring it with all "
        "its bindings and resuming")
    assert handled[1:] == list(range(10))


def test_a_queue_argument_conflict_is_one_line_and_exit_code_1(pulse_user, taskcluster_exchanges, unique_name,
                                                                queue_type, tmp_path):
    queue = f"queue/{pulse_user.name}/{unique_name}"
    earlier = Delivery(queue, RetryPolicy(), queue_type=queue_type)  # an earlier deployment, without max_length
    with pulse_connection(pulse_user) as conn:
        kombu.Queue(queue, durable=True, queue_arguments=earlier.queue_arguments(), channel=conn.channel()).declare()
    script = tmp_path / "bounded.py"
    script.write_text("import tcpulse\n"
                      f"app = tcpulse.Listener({unique_name!r}, max_length=5000, queue_type={queue_type!r})\n"
                      "app.add_handler(print, tcpulse.QueueEvents.taskCompleted)\n")
    done = subprocess.run([sys.executable, "-m", "tcpulse", "listen", str(script), "--broker", pulse_user.url,
                           "--log-level", "error"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    # On quorum, max_length also switches dead-lettering to at-most-once: either argument may be named.
    assert any(f"queue '{queue}' already exists with a different {arg!r} (" in line
               for arg in ("x-max-length", "x-dead-letter-strategy")[:1 if queue_type == "classic" else 2]), line
    assert line.endswith("another tool declared it, or this listener with other options: take it over in place, "
                         "keeping its messages, with --adopt (Listener(..., adopt=True)), which moves it to "
                         "tcpulse's layout"), line
    assert "delete_queue" not in line
    assert pulse_user.password not in done.stderr + done.stdout


@pytest.mark.parametrize("error, reason", [
    (PermanentFailure("task definition is malformed"),
     "permanent failure in {h}: PermanentFailure: task definition is malformed"),
    (TaskclusterRestFailure("Task not found", status_code=404),
     "permanent failure in {h}: TaskclusterRestFailure: Task not found"),
])
def test_a_permanent_failure_is_dead_lettered_on_the_first_attempt(
        pulse_user, taskcluster_exchanges, unique_name, queue_type, error, reason):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, retry_delays=(0.2,))
    seen = []

    @app.on(COMPLETED, taskGroupId=unique_name)
    def permanent(event):
        seen.append(event.attempt)
        raise error

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": "p"})
        wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")
        [record] = app.dead_letters()
    assert seen == [1] and app.metrics.get("retried") == 0
    assert record["reason"] == reason.format(h=app.handlers[0].name) and record["attempts"] == 1


def test_the_dead_letters_command_lists_and_requeues(pulse_user, taskcluster_exchanges, unique_name, queue_type):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type)
    handled = []
    app.add_handler(lambda event: handled.append(event.body), COMPLETED, taskGroupId=unique_name)
    command = [sys.executable, "-m", "tcpulse", "dead-letters", unique_name, "--broker", pulse_user.url]
    with running(app), Publisher() as pub:
        pub.producer.publish(b"[1, 2]", exchange=COMPLETED.exchange, routing_key=task_key(taskGroupId=unique_name),
                             content_type="application/json", content_encoding="utf-8")
        wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")

        listed = subprocess.run(command + ["--list"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        [line] = listed.stdout.splitlines()
        record = json.loads(line)
        assert (record["reason"], record["body_text"]) == ("body is JSON but not an object (got list)", "[1, 2]")

        requeued = subprocess.run(command + ["--requeue"], capture_output=True, text=True, timeout=60)
        assert requeued.returncode == 0, requeued.stderr
        assert requeued.stderr == f"requeued 1 dead letter(s) from {app.queue}/dead-letter to {app.queue}\n"
        # Still not an object: the listener parks it again rather than dying of it.
        wait_for(lambda: app.metrics.get("dead_lettered") == 2, what="the poison message parked again")
        assert app.is_ready() and handled == []



def test_a_retry_queue_deleted_under_the_listener_loses_nothing(pulse_user, taskcluster_exchanges, unique_name, queue_type, caplog):
    app = Listener(unique_name, broker=pulse_user.url, queue_type=queue_type, retry_delays=(0.2,))
    seen = []

    @app.on(COMPLETED, taskGroupId=unique_name)
    def once_flaky(event):
        seen.append((event.attempt, event.redelivered))
        if event.attempt == 1:
            raise ConnectionError("flaky")

    with running(app), Publisher() as pub:
        with pulse_connection(pulse_user) as conn:
            conn.channel().queue_delete(holding_queues(app)[0])
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": "x"})
        wait_for(lambda: seen and seen[-1][0] == 2, what="attempt 2")
    # The copy found no queue: the listener declared its retry queues again and resent it, before
    # acking the original, without reconnecting or running the handler again.
    assert seen == [(1, False), (2, False)] and app.metrics.get("reconnects") == 0
    assert any(r.getMessage().startswith("the broker returned a copy sent with key 'retry-0.2s' through the "
                                         "listener's delivery exchange (Basic.return: (312) NO_ROUTE: no queue is "
                                         "bound there for that key); declaring the retry and dead-letter queues")
               for r in caplog.records)


def test_an_unnamed_listener_retries_through_queues_that_vanish_with_it(pulse_user, taskcluster_exchanges, unique_name):
    app = Listener(broker=pulse_user.url, retry_delays=(0.2,))
    seen = []

    @app.on(COMPLETED, taskGroupId=unique_name)
    def once_flaky(event):
        seen.append(event.attempt)
        if event.attempt == 1:
            raise ConnectionError("flaky")

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=unique_name), {"id": "x"})
        wait_for(lambda: seen == [1, 2], what="attempt 2")
    with pulse_connection(pulse_user) as conn:
        for queue in [app.queue, f"{app.queue}/dead-letter", *holding_queues(app)]:
            with pytest.raises(Exception, match="NOT_FOUND"):
                conn.channel().queue_declare(queue, passive=True)
        with pytest.raises(Exception, match="NOT_FOUND"):
            conn.channel().exchange_declare(app._delivery.exchange, "direct", passive=True)


def test_an_unnamed_quorum_listener_is_refused_in_one_line():
    with pytest.raises(ValueError) as caught:
        Listener(broker="memory://", queue_type="quorum")
    assert str(caught.value) == (
        "an unnamed Listener cannot use queue_type='quorum': its queue is exclusive and goes away with its "
        "connection, and quorum queues are durable; give the listener a name (Listener('my-listener', "
        "queue_type='quorum'), or tcpulse listen --queue NAME)")
