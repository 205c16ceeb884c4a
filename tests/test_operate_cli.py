"""`tcpulse --version`, `tcpulse tail` and `tcpulse status` through the real console script, on RabbitMQ as a
Pulse-permission user: what they print, their exit codes, and that a tail leaves nothing behind."""
import json
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import rabbitmqctl
from listenerkit import Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture
from tcpulse import Listener, PermanentFailure, QueueEvents

pytestmark = pytest.mark.rabbitmq

TCPULSE = Path(sys.executable).parent / "tcpulse"
COMPLETED = QueueEvents.taskCompleted


def start_tail(user, *args):
    """A running `tcpulse tail` and the name of its queue, once it consumes."""
    proc = subprocess.Popen([str(TCPULSE), "tail", *args, "--broker", user.url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    found = re.search(r" through (queue/\S+) \(Ctrl-C to stop\)", line)
    assert found, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, found.group(1)


def queues_of(user) -> list:
    rows = rabbitmqctl("list_queues", "name", "--no-table-headers").splitlines()
    return [row.strip() for row in rows if row.strip().startswith(f"queue/{user.name}/tail-")]


def test_tail_prints_the_3_matching_of_5_messages_exits_0_and_leaves_no_queue(pulse_user, taskcluster_exchanges):
    group = uuid.uuid4().hex[:12]
    proc, queue = start_tail(pulse_user, "QueueEvents.taskCompleted", f"taskGroupId={group}", "--count", "3")
    assert queue.startswith(f"queue/{pulse_user.name}/tail-") and queue in queues_of(pulse_user)
    with Publisher() as pub:
        for n in range(5):
            mine = n % 2 == 0  # 0, 2, 4
            pub.publish(COMPLETED.exchange, task_key(taskGroupId=group if mine else "other", taskId=f"task{n}"),
                        {"status": {"n": n}}, routes=[f"index.n{n}"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, out
    for n, line in zip((0, 2, 4), lines):
        assert re.fullmatch(rf"\d\d:\d\d:\d\d QueueEvents\.taskCompleted taskId=task{n} runId=0 .*"
                            rf"taskGroupId={group} routes=index\.n{n} \{{\"status\":\{{\"n\":{n}\}}\}}", line), line
    assert "tail ended after 3 messages" in err
    assert pulse_user.password not in out + err
    assert queue not in queues_of(pulse_user)


def test_tail_json_lines_replay_into_a_listener(pulse_user, taskcluster_exchanges, tmp_path):
    group = uuid.uuid4().hex[:12]
    proc, _ = start_tail(pulse_user, "QueueEvents.taskCompleted", "--route", f"index.{group}.#", "--json",
                         "--count", "2")
    with Publisher() as pub:
        for n in range(2):
            pub.publish(COMPLETED.exchange, task_key(taskId=f"t{n}"), {"n": n}, routes=[f"index.{group}.x"])
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    recording = tmp_path / "tail.jsonl"
    recording.write_text(out)
    assert [json.loads(line)["routes"] for line in out.splitlines()] == [[f"index.{group}.x"]] * 2
    script = tmp_path / "app.py"
    script.write_text("import tcpulse\n\n@tcpulse.on(tcpulse.QueueEvents.taskCompleted)\ndef done(event):\n"
                      "    print('handled', event.body['n'], flush=True)\n")
    replayed = subprocess.run([str(TCPULSE), "listen", str(script), "--broker", "memory://", "--replay",
                               str(recording), "--exit-when-idle"], capture_output=True, text=True, timeout=60)
    assert replayed.returncode == 0, replayed.stderr
    assert "handled 0" in replayed.stdout and "handled 1" in replayed.stdout


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "timeout"])
def test_tail_ends_with_0_on_ctrl_c_sigterm_and_timeout_leaving_no_queue(pulse_user, taskcluster_exchanges, how):
    args = ["QueueEvents.taskDefined"] + (["--timeout", "0.5"] if how == "timeout" else [])
    proc, queue = start_tail(pulse_user, *args)
    if how != "timeout":
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "tail ended after" in err
    assert queue not in queues_of(pulse_user)


def test_status_reports_waiting_messages_a_dead_letter_and_the_bindings(pulse_user, taskcluster_exchanges,
                                                                        queue_name):
    app = Listener(queue_name, broker=pulse_user.url)

    @app.on(COMPLETED, taskGroupId=queue_name)
    def check(event):
        if event.body.get("bad"):
            raise PermanentFailure("the task definition is invalid")

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name), {"bad": True})
        wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")
    with Publisher() as pub:  # the listener has stopped: these wait in its queue
        for n in range(2):
            pub.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name, taskId=f"w{n}"), {"n": n})
    wait_for(lambda: _status(pulse_user, queue_name)["messages"] == 2, 10, what="2 waiting messages")
    status = _status(pulse_user, queue_name)
    assert status["consumers"] == 0 and status["type"] == "classic" and status["unacked"] is None
    # One holding queue per retry delay (5, 30, 120, 600 s by default), all empty.
    assert [h["messages"] for h in status["holding_queues"]] == [0, 0, 0, 0], status["holding_queues"]
    assert status["isolation"] == {"queue": f"queue/{pulse_user.name}/{queue_name}/isolation", "messages": 0}
    assert status["dead_letters"]["count"] == 1
    assert "the task definition is invalid" in status["dead_letters"]["newest"][0]["reason"]
    assert status["bindings"] == [[COMPLETED.exchange, COMPLETED(taskGroupId=queue_name).routing_key_pattern]]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["bindings_written_at"])
    text = subprocess.run([str(TCPULSE), "status", queue_name, "--broker", pulse_user.url], capture_output=True,
                          text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "messages ready 2, consumers 0" in text.stdout and "dead letters: 1 in" in text.stdout
    assert f"waiting to run alone (came back unacked): 0 in queue/{pulse_user.name}/{queue_name}/isolation" in text.stdout
    assert f"{COMPLETED.exchange} primary." in text.stdout
    assert pulse_user.password not in text.stdout + text.stderr


def _status(user, name) -> dict:
    done = subprocess.run([str(TCPULSE), "status", name, "--json", "--broker", user.url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_of_a_listener_that_never_ran_is_one_line_and_exit_1(pulse_user, unique_name):
    done = subprocess.run([str(TCPULSE), "status", unique_name, "--broker", pulse_user.url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert f"has no queue 'queue/{pulse_user.name}/{unique_name}'" in done.stderr


def test_status_tells_a_quorum_queue(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url, queue_type="quorum")
    app.add_handler(lambda event: None, COMPLETED, taskGroupId=queue_name)
    with running(app):
        status = _status(pulse_user, queue_name)
        assert status["consumers"] == 1
    assert status["type"] == "quorum" and status["dead_letters"]["count"] == 0
    assert _status(pulse_user, queue_name)["type"] == "quorum"  # the probe changed nothing


def test_version_prints_the_installed_version():
    import tcpulse

    done = subprocess.run([str(TCPULSE), "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, f"tcpulse {tcpulse.__version__}\n")
