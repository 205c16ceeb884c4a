"""Record from RabbitMQ -> JSON Lines file -> replay into a listener on the embedded broker
reproduces exactly the handler calls the live listener made on RabbitMQ (all real processes)."""
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TCPULSE = str(Path(sys.executable).parent / "tcpulse")
WATCHER = str(REPO / "examples" / "task_group_watcher.py")
GROUP_FILE = str(REPO / "examples" / "messages" / "task-group.jsonl")
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))},
       "PYTHONUNBUFFERED": "1"}


class Process:
    """A running `tcpulse` whose stdout and stderr lines are collected as they come."""

    def __init__(self, *args):
        self.popen = subprocess.Popen([TCPULSE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=ENV, cwd=REPO)
        self.lines = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        for name in self.lines:
            threading.Thread(target=self._pump, args=(name,), daemon=True).start()

    def _pump(self, name):
        for line in getattr(self.popen, name):
            self.lines[name].put(line.rstrip("\n"))
        self.lines[name].put(None)

    def wait_for(self, name, text, timeout=30):
        """Lines of `name` up to and including the first containing `text`."""
        seen = []
        while True:
            line = self.lines[name].get(timeout=timeout)
            if line is None:
                raise AssertionError(f"{name} ended before {text!r}: {seen}")
            seen.append(line)
            if text in line:
                return seen

    def rest(self, name):
        return [line for line in iter(self.lines[name].get, None)]


@pytest.mark.rabbitmq
def test_recorded_messages_replayed_into_a_listener_give_the_same_handler_calls(
        rabbitmq, pulse_user, taskcluster_exchanges, tmp_path):
    recording = tmp_path / "recorded.jsonl"
    live = Process("listen", WATCHER, "--broker", rabbitmq)
    recorder = None
    try:
        live.wait_for("stderr", "consuming from")
        recorder = Process("record", "--script", WATCHER, "--out", str(recording), "--count", "5",
                           "--timeout", "60", "--broker", pulse_user.url)
        recorder.wait_for("stderr", "recording 3 binding(s)")
        published = subprocess.run([TCPULSE, "replay", GROUP_FILE, "--broker", rabbitmq], capture_output=True,
                                   text=True, env=ENV, timeout=60)
        assert published.returncode == 0, published.stderr
        assert recorder.popen.wait(timeout=60) == 0
        assert recorder.rest("stdout") == [f"recorded 5 messages into {recording}"]
        live_calls = [line for line in live.wait_for("stdout", "GCzF6DY2Sv2N6xGm1K8kZQ")]
        live.popen.send_signal(signal.SIGTERM)
        assert live.popen.wait(timeout=60) == 0
        live_summary = live.rest("stdout")
    finally:
        for process in (live, recorder):
            if process is not None and process.popen.poll() is None:
                process.popen.kill()
    replayed = subprocess.run([TCPULSE, "listen", WATCHER, "--broker", "memory://", "--replay", str(recording),
                               "--exit-when-idle"], capture_output=True, text=True, env=ENV, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert len(live_calls) == 5
    assert replayed.stdout.splitlines() == live_calls + live_summary
    assert live_summary == ["received 5 messages; handled: task_group_watcher.completed 3, "
                            "task_group_watcher.failed 2; unmatched 0, retried 0, dead-lettered 0"]


def test_an_error_the_replay_raises_just_after_the_listener_stopped_still_fails_the_command(monkeypatch, capsys):
    import argparse
    import time

    import tcpulse
    from tcpulse.cli import listen
    from tcpulse.cli.base import RuntimeFailure

    def replay_failing_late(listener, messages):
        listener.stop()
        time.sleep(0.5)  # the run has returned by now: only a join of this thread sees the error
        raise RuntimeFailure("replaying into memory:// failed: late")

    monkeypatch.setattr(listen, "_replay", replay_failing_late)
    app = tcpulse.Listener(broker="memory://")
    app.on(tcpulse.QueueEvents.taskFailed)(print)
    with pytest.raises(RuntimeFailure, match="^replaying into memory:// failed: late$"):
        listen.run_listen(app, argparse.Namespace(replay=GROUP_FILE, exit_when_idle=False, idle_seconds=1.0))
    assert capsys.readouterr().out.startswith("received ")
