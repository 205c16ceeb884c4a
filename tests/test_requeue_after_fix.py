"""Requeue after a fix (issue 18 item 5): a retry or a requeued dead letter is never acked
without running a handler.

Replays what a new user did: handler `boom` dead-letters a message; the fix renames the function
(or the script was first run as `python app.py`, handler `__main__.boom`, and then as `tcpulse
listen app.py`, handler `app.boom`); `tcpulse dead-letters NAME --requeue`; start the listener.
On the old code the message "matched no handler" and was acked: gone. Now it is handled by the
handler that matches it, or it stays parked with the reason. Real subprocesses on RabbitMQ as a
Pulse-permission user; the in-process part of each scenario on memory:// too.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import kombu
import pytest

from listenerkit import Publisher, running, task_key, wait_for
from tcpulse import Listener, PermanentFailure, QueueEvents
from tcpulse._broker.broker import Transport
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.deadletters import list_dead_letters

TCPULSE = [sys.executable, "-m", "tcpulse"]

# One script, three versions: the buggy one, and two fixes. `{name}` is the handler's function name,
# `{group}` the task group it binds.
SCRIPT = textwrap.dedent('''
    import os
    import tcpulse
    from tcpulse import QueueEvents

    app = tcpulse.Listener(os.environ["LISTENER"], broker=os.environ["BROKER"], retry_delays=(1,), max_attempts=2)


    @app.on(QueueEvents.taskCompleted, taskGroupId="{group}")
    def {name}(event):
        if not os.environ.get("FIXED"):
            raise tcpulse.PermanentFailure("the bug")
        print("HANDLED", event.fields["taskId"], flush=True)


    if __name__ == "__main__":
        app.run()
''')


class Scenario:
    """One listener name of a Pulse user, its script folder, and the CLI run against it."""

    def __init__(self, user, tmp_path: Path) -> None:
        self.user = user
        self.name = "fix-" + uuid.uuid4().hex[:8]
        self.group = "g" + uuid.uuid4().hex[:8]
        self.folder = tmp_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
        self.env.update(LISTENER=self.name, BROKER=user.url, PYTHONUNBUFFERED="1")

    def write(self, file: str, function: str, group: str = "") -> Path:
        path = self.folder / file
        path.write_text(SCRIPT.format(name=function, group=group or self.group))
        return path

    def publish(self, task_id: str) -> None:
        with Publisher() as publisher:
            publisher.publish(QueueEvents.taskCompleted.exchange, task_key(taskId=task_id, taskGroupId=self.group),
                              {"status": {"taskId": task_id}})

    def dead_letters(self) -> list:
        with resolve_broker(self.user.url, environ={}).connection() as conn:
            return list_dead_letters(conn, f"queue/{self.user.name}/{self.name}")

    def dead_letter_with(self, command: list, task_id: str) -> dict:
        """Run the buggy version with `command` until the message it gets is dead-lettered."""
        process = subprocess.Popen(command, cwd=self.folder, env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            # Publish once the listener consumes (its queue and dead-letter queue exist then).
            wait_for(lambda: self._consumed() or process.poll() is not None, 30, what="the listener's queue")
            assert process.poll() is None, process.communicate()[0]
            self.publish(task_id)
            wait_for(lambda: len(self.dead_letters()) == 1, 30, interval=0.2, what="the dead letter")
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
        [letter] = self.dead_letters()
        return letter

    def _consumed(self) -> bool:
        with resolve_broker(self.user.url, environ={}).connection() as conn:
            try:
                return conn.channel().queue_declare(f"queue/{self.user.name}/{self.name}", passive=True)[2] > 0
            except Exception:  # noqa: BLE001 - not declared yet
                return False

    def requeue(self) -> None:
        done = subprocess.run([*TCPULSE, "dead-letters", self.name, "--requeue", "--broker", self.user.url],
                              env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "requeued 1 dead letter" in done.stderr, done.stderr

    def listen_fixed(self, script: Path) -> str:
        """`tcpulse listen` the fixed script until its queue is idle; its output."""
        done = subprocess.run([*TCPULSE, "listen", str(script), "--broker", self.user.url, "--exit-when-idle",
                               "--idle-seconds", "1"], cwd=self.folder, env={**self.env, "FIXED": "1"},
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr


@pytest.mark.rabbitmq
def test_rename_after_a_dead_letter_then_requeue_runs_the_renamed_handler(pulse_user, taskcluster_exchanges, tmp_path):
    run = Scenario(pulse_user, tmp_path)
    script = run.write("app.py", "boom")
    letter = run.dead_letter_with([*TCPULSE, "listen", str(script), "--broker", pulse_user.url], "t-rename")
    assert list(letter["failures"]) == ["app.boom"]
    run.write("app.py", "completed")  # the fix renames the function
    run.requeue()
    output = run.listen_fixed(script)
    assert "HANDLED t-rename" in output
    assert "was for app.boom, which no longer exists" in output and "matches it now: app.completed" in output
    assert run.dead_letters() == []


@pytest.mark.rabbitmq
def test_python_app_py_then_tcpulse_listen_app_py_after_requeue_runs_the_same_handler(
        pulse_user, taskcluster_exchanges, tmp_path):
    run = Scenario(pulse_user, tmp_path)
    script = run.write("app.py", "boom")
    letter = run.dead_letter_with([sys.executable, str(script)], "t-main")
    assert list(letter["failures"]) == ["app.boom"], "a script run as `python app.py` names handlers as tcpulse listen does"
    run.requeue()
    output = run.listen_fixed(script)
    assert "HANDLED t-main" in output
    assert "no longer exist" not in output, "the handler is found under its own name, not by the fallback"
    assert run.dead_letters() == []


@pytest.mark.rabbitmq
def test_renamed_file_whose_handlers_no_longer_match_keeps_the_requeued_letter_parked(
        pulse_user, taskcluster_exchanges, tmp_path):
    run = Scenario(pulse_user, tmp_path)
    letter = run.dead_letter_with([*TCPULSE, "listen", str(run.write("app.py", "boom")), "--broker", pulse_user.url],
                                  "t-parked")
    assert list(letter["failures"]) == ["app.boom"]
    # The fix moves the handler to another file and binds it to another task group (the queue keeps
    # no binding that reaches it now; the requeued letter still comes back through the listener).
    fixed = run.write("watcher.py", "completed", group="other")
    run.requeue()
    output = run.listen_fixed(fixed)
    assert "HANDLED" not in output
    [parked] = run.dead_letters()
    assert parked["body"] == {"status": {"taskId": "t-parked"}}
    assert parked["reason"] == ("no handler matches it now: it was for app.boom (app.boom no longer exists: "
                                "renamed?); requeue it once a handler takes it")


def _memory_listener(name: str) -> Listener:
    return Listener(name, broker="memory://", retry_delays=(0.3,), max_attempts=3)


def _boom_on_memory(name: str, task_id: str, error: Exception, outcome: str) -> Listener:
    """Listener `name` on memory:// whose handler `boom` raises `error` on message `task_id`, run
    until the message is `outcome` ('dead_lettered' or 'retried'); then a fresh listener of that
    name (the fixed version) for the test to register its handlers on."""
    old = _memory_listener(name)

    @old.on(QueueEvents.taskCompleted)
    def boom(event):
        raise error

    with running(old):
        with kombu.Connection("memory://", transport=Transport) as conn:
            kombu.Producer(conn.channel(), auto_declare=False).publish(
                json.dumps({"status": {"taskId": task_id}}), exchange=QueueEvents.taskCompleted.exchange,
                routing_key=task_key(taskId=task_id), content_type="application/json")
        wait_for(lambda: old.metrics.snapshot().get(outcome), 10, what=f"the message {outcome}")
    return _memory_listener(name)


def test_memory_a_dead_letter_requeued_after_a_rename_is_handled_by_the_new_handler():
    handled = []
    new = _boom_on_memory("rename-" + uuid.uuid4().hex[:6], "t1", PermanentFailure("the bug"), "dead_lettered")
    new.on(QueueEvents.taskCompleted)(lambda event: handled.append(event.fields["taskId"]))
    assert new.requeue_dead_letters() == 1
    with running(new):
        wait_for(lambda: handled, 10, what="the requeued message handled")
    assert handled == ["t1"] and new.dead_letters() == []


def test_memory_a_retry_that_comes_back_after_a_rename_is_handled_by_the_new_handler():
    handled = []
    new = _boom_on_memory("retry-" + uuid.uuid4().hex[:6], "t2", RuntimeError("transient"), "retried")

    @new.on(QueueEvents.taskCompleted)
    def completed(event):
        handled.append((event.fields["taskId"], event.attempt))

    with running(new):
        wait_for(lambda: handled, 10, what="the retry handled")
    assert handled == [("t2", 2)] and new.dead_letters() == []


def test_memory_a_retry_no_handler_matches_any_more_is_dead_lettered_with_the_reason_not_acked():
    new = _boom_on_memory("gone-" + uuid.uuid4().hex[:6], "t3", RuntimeError("transient"), "retried")
    new.on(QueueEvents.taskCompleted, taskGroupId="another")(lambda event: None)
    with running(new):
        wait_for(lambda: new.metrics.snapshot().get("dead_lettered"), 10, what="the retry parked")
    [parked] = new.dead_letters()
    assert parked["body"] == {"status": {"taskId": "t3"}}
    assert parked["reason"] == ("no handler matches it now: it was for test_requeue_after_fix._boom_on_memory.<locals>"
                                ".boom (test_requeue_after_fix._boom_on_memory.<locals>.boom no longer exists: "
                                "renamed?); requeue it once a handler takes it")
