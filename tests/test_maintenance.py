"""`tcpulse delete NAME` and `tcpulse migrate NAME --to quorum|classic` on the real RabbitMQ, as a
user with Pulse's permissions, through the real console script."""
import subprocess
import sys
import time

import pytest

import faultkit
from faultkit import ListenerProcess, show
from listenerkit import Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture
from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse._ops.maintenance import delete_listener, migrate

pytestmark = pytest.mark.rabbitmq

COMPLETED = QueueEvents.taskCompleted


def tcpulse(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "tcpulse", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def exists(url: str, queue: str) -> bool:
    with resolve_broker(url, environ={}).connection() as conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
            return True
        except Exception as exc:
            assert "NOT_FOUND" in str(exc)
            return False


def run_once_with_a_dead_letter(user, name, queue_type):
    """Run listener `name` until one message is dead-lettered; it leaves its whole topology."""
    app = Listener(name, broker=user.url, retry_delays=(0.2,), max_attempts=2, queue_type=queue_type)

    @app.on(COMPLETED, taskGroupId=name)
    def doomed(event):
        raise ValueError("never works")

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=name), {"id": 1})
        wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")
    return app


def test_delete_removes_the_listeners_queues_and_exchange_and_keeps_dead_letters_unless_asked(
        pulse_user, taskcluster_exchanges, unique_name, queue_type):
    app = run_once_with_a_dead_letter(pulse_user, unique_name, queue_type)
    queue, url = app.queue, pulse_user.url

    done = tcpulse("delete", unique_name, "--retry-delays", "0.2", "--broker", url)
    assert done.stdout.splitlines() == [
        f"deleted queue {queue} (0 message(s))",
        f"deleted queue {queue}/retry-0.2s (0 message(s))",
        f"deleted queue {queue}/isolation (0 message(s))",
        f"deleted queue {queue}/bindings (1 message(s))",
        "deleted exchange the delivery exchange",
        f"kept {queue}/dead-letter (1 dead letter(s)); --include-dead-letters deletes it"]
    assert not any(exists(url, q) for q in (queue, f"{queue}/retry-0.2s", f"{queue}/bindings"))
    assert exists(url, f"{queue}/dead-letter")

    done = tcpulse("delete", unique_name, "--include-dead-letters", "--broker", url)
    assert done.stdout == f"deleted queue {queue}/dead-letter (1 message(s))\n"
    assert not exists(url, f"{queue}/dead-letter")

    again = tcpulse("delete", unique_name, "--broker", url, check=False)
    assert again.returncode == 1
    assert again.stderr == (f"tcpulse: error: nothing to delete: user {pulse_user.name!r} has no queue {queue!r} "
                            f"nor anything else listener {unique_name!r} declares on {resolve_broker(url).redacted}\n")
    assert pulse_user.password not in again.stderr


def test_migrate_and_delete_leave_no_channel_open_on_the_connection_they_are_given(
        pulse_user, taskcluster_exchanges, unique_name):
    run_once_with_a_dead_letter(pulse_user, unique_name, "classic")
    address = resolve_broker(pulse_user.url, environ={})
    with address.connection() as conn:
        open_channels = lambda: sorted(conn.connection.channels)  # noqa: E731 - py-amqp's open channels, by id
        before = open_channels()
        moved = migrate(conn, address, unique_name, "quorum", retry_delays=(0.2,), report=lambda line: None)
        assert (moved, open_channels()) == (0, before)
        removed = delete_listener(conn, address, unique_name, include_dead_letters=True, retry_delays=(0.2,),
                                  report=lambda line: None)
        assert f"queue/{pulse_user.name}/{unique_name}/dead-letter" in removed
        assert open_channels() == before


def test_delete_refuses_while_a_listener_consumes_the_queue(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url)
    app.add_handler(print, COMPLETED, taskGroupId=queue_name)
    with running(app):
        done = tcpulse("delete", queue_name, "--broker", pulse_user.url, check=False)
    assert done.returncode == 1
    assert done.stderr == (f"tcpulse: error: {app.queue} has 1 consumer(s): stop every listener on it before "
                           "you delete it\n")
    assert exists(pulse_user.url, app.queue)


def test_migrating_10000_messages_to_quorum_and_back_with_a_publisher_running_and_a_kill_loses_nothing(
        pulse_user, taskcluster_exchanges, unique_name, tmp_path, capsys):
    script, ledger = faultkit.scenario(tmp_path, capsys)
    url, queue = pulse_user.url, f"queue/{pulse_user.name}/{unique_name}"
    guest = "amqp://guest:guest@127.0.0.1:5672//"

    first = ListenerProcess(script, url, unique_name, ledger, "before")  # declares the topology, records it
    first.wait_ready(30)
    assert first.terminate() == 0
    faultkit.BurstPublisher(guest, ledger).publish(range(10_000))
    publisher = faultkit.BurstPublisher(guest, ledger, batch=50, pause=0.25).start(range(10_000, 14_000))

    migrate = [sys.executable, "-m", "tcpulse", "migrate", unique_name, "--retry-delays", "1", "--broker", url]
    started = time.monotonic()
    cut = subprocess.Popen(migrate + ["--to", "quorum"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    parked = lambda: _ready(url, f"{queue}/migrating")  # noqa: E731
    faultkit.wait_for(lambda: parked() >= 3_000 or cut.poll() is not None, 120, "the first 3,000 messages parked")
    parked_at_kill = parked()
    cut.kill()
    assert cut.wait() == -9, f"the migration ended before it was killed: {cut.communicate()}"
    to_quorum = tcpulse(*migrate[3:], "--to", "quorum")
    assert to_quorum.stdout.splitlines()[-1].startswith(f"{queue} is a quorum queue now, with its 1 binding(s)")
    to_classic = tcpulse(*migrate[3:], "--to", "classic")
    assert to_classic.stdout.splitlines()[-1].startswith(f"{queue} is a classic queue now")
    migrated = time.monotonic() - started
    publisher.join(120)

    after = ListenerProcess(script, url, unique_name, ledger, "after")
    try:
        faultkit.wait_for(lambda: set(ledger.published) <= set(ledger.handled()), 180, "every message handled", after)
    finally:
        after.terminate()
    show(capsys, f"[migration] classic -> quorum (killed with {parked_at_kill} parked, then rerun) -> classic: "
                  f"{migrated:.1f} s for both with a publisher running\n  {to_quorum.stdout.strip()}\n  "
                  f"{to_classic.stdout.strip()}")
    ledger.report("migration")
    assert ledger.lost() == []


def _ready(url: str, queue: str) -> int:
    with resolve_broker(url, environ={}).connection() as conn:
        try:
            return conn.channel().queue_declare(queue, passive=True).message_count
        except Exception:
            return 0



def test_migrating_a_listener_that_never_ran_is_one_line_and_creates_nothing(pulse_user, unique_name):
    done = tcpulse("migrate", unique_name, "--to", "quorum", "--broker", pulse_user.url, check=False)
    queue = f"queue/{pulse_user.name}/{unique_name}"
    assert done.returncode == 1
    assert done.stderr == (f"tcpulse: error: nothing to migrate: user {pulse_user.name!r} has no queue {queue!r} "
                           f"on {resolve_broker(pulse_user.url).redacted} (has listener {unique_name!r} run there?)\n")
    assert not exists(pulse_user.url, f"{queue}/migrating")
