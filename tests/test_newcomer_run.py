"""Issue 19 item 7, what a newcomer met: misspelt names get a did-you-mean, REST connection
errors name their cause, the CLI's replay and publish say what they did and what went wrong."""
import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import kombu
import pytest

import tcpulse
import tcpulse.aio
from tcpulse import Listener, QueueEvents
from faultkit import free_port
from listenerkit import GUEST, Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture

COMPLETED = QueueEvents.taskCompleted
REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"


def test_a_misspelt_client_method_or_module_name_is_an_attribute_error_with_a_did_you_mean():
    queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    with pytest.raises(AttributeError, match=r"^'Queue' object has no attribute 'taks'\. Did you mean 'tasks?'\?$"):
        queue.taks  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'tcpulse' has no attribute 'QueueEvent'\. Did you mean 'QueueEvents'\?$"):
        tcpulse.QueueEvent  # noqa: B018
    with pytest.raises(AttributeError, match=r"no attribute 'Listner'\. Did you mean 'Listener'\?$"):
        tcpulse.Listner  # noqa: B018
    assert not hasattr(queue, "__deepcopy__") and not hasattr(tcpulse, "__wrapped__")


class _Server:
    """A TCP server on 127.0.0.1 that accepts and then, per `answer`, either sends plain HTTP
    (so a TLS client fails its handshake) or says nothing (so the client times out)."""

    def __init__(self, answer: bytes) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer, self.held = answer, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(client)
            if self.answer:
                client.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()
        for client in self.held:
            client.close()


def _call_ping(root_url: str, asynchronous: bool) -> str:
    options = {"rootUrl": root_url, "maxRetries": 0, "timeout": 1}
    with pytest.raises(tcpulse.TaskclusterConnectionError) as caught:
        if asynchronous:
            async def ping() -> None:
                async with tcpulse.aio.Queue(options) as queue:
                    await queue.ping()
            asyncio.run(ping())
        else:
            tcpulse.Queue(options).ping()
    return str(caught.value)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "aio"])
def test_a_rest_connection_error_names_its_cause_refused_dns_tls_or_timeout(asynchronous):
    assert _call_ping(f"http://127.0.0.1:{free_port()}", asynchronous).startswith("Queue.ping: connection refused (")
    assert "Queue.ping: DNS lookup failed: " in _call_ping("http://no-such-host.invalid", asynchronous)
    plain, silent = _Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), _Server(b"")
    try:
        assert "Queue.ping: TLS failed: " in _call_ping(f"https://127.0.0.1:{plain.port}", asynchronous)
        assert "Queue.ping: no answer within 1 s (" in _call_ping(f"http://127.0.0.1:{silent.port}", asynchronous)
    finally:
        plain.close()
        silent.close()


def _tcpulse(*args: str, timeout: float = 60):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
    return subprocess.run([str(TCPULSE), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _line(exchange: str, key: str, n: int) -> str:
    return json.dumps({"exchange": exchange, "routing_key": key, "body": {"n": n}})


@pytest.mark.rabbitmq
def test_replay_checks_or_declares_exchanges_first_and_a_failed_publish_names_its_line_and_count(
        pulse_user, taskcluster_exchanges, tmp_path):
    own = f"exchange/{pulse_user.name}/v1/replayed-{uuid.uuid4().hex[:8]}"
    recording = tmp_path / "mixed.jsonl"
    # A Pulse user may publish to its own exchanges only: the line-4 message is refused.
    recording.write_text("\n".join([_line(own, "a", 1), _line(own, "b", 2), "",
                                    _line(COMPLETED.exchange, task_key(), 3)]) + "\n")
    missing = _tcpulse("replay", str(recording), "--broker", pulse_user.url)
    assert missing.returncode == 1, missing.stderr
    assert missing.stderr.startswith(f"tcpulse: error: {recording} line 1: nothing was published: exchange {own!r} "
                                     "does not exist on ") and "--declare-exchanges creates it" in missing.stderr
    stopped = _tcpulse("replay", str(recording), "--broker", pulse_user.url, "--declare-exchanges")
    assert stopped.returncode == 1, stopped.stderr
    assert stopped.stderr.startswith(f"tcpulse: error: {recording} line 4: publishing to {COMPLETED.exchange} "
                                     "failed (2 published before it): ") and "ACCESS_REFUSED" in stopped.stderr
    assert "1 not published" in stopped.stderr and pulse_user.password not in stopped.stderr


@pytest.mark.rabbitmq
def test_publish_declares_the_users_own_exchange_with_declare_exchanges(pulse_user, tmp_path):
    own = f"exchange/{pulse_user.name}/v1/published-{uuid.uuid4().hex[:8]}"
    args = ["publish", own, "--routing-key", "build.linux", "--body", '{"ok": true}', "--broker", pulse_user.url]
    missing = _tcpulse(*args)
    assert missing.returncode == 1 and f"exchange {own!r} does not exist" in missing.stderr
    assert "--declare-exchanges creates it" in missing.stderr
    done = _tcpulse(*args, "--declare-exchanges")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"published 1 message to {own} with key build.linux"


def test_listen_replay_says_which_lines_no_binding_matched(tmp_path):
    script = tmp_path / "watch_g1.py"
    script.write_text("import tcpulse\n\n\n@tcpulse.on(tcpulse.QueueEvents.taskCompleted, taskGroupId='g1')\n"
                      "def completed(event):\n    print('handled', event.body['n'], flush=True)\n")
    recording = tmp_path / "three.jsonl"
    recording.write_text("\n".join([_line(COMPLETED.exchange, task_key(taskGroupId="g2"), 1),
                                    _line(COMPLETED.exchange, task_key(taskGroupId="g1"), 2),
                                    _line(QueueEvents.taskFailed.exchange, task_key(QueueEvents.taskFailed), 3)]))
    done = _tcpulse("listen", str(script), "--broker", "memory://", "--replay", str(recording), "--exit-when-idle",
                    "--idle-seconds", "0.3")
    assert done.returncode == 0, done.stderr
    assert "handled 2" in done.stdout and "received 1 message;" in done.stdout
    assert ("replayed 3 messages into memory://; 2 of them (lines 1, 3) match no handler's binding, so the broker "
            "did not deliver them to this listener") in done.stderr


@pytest.mark.rabbitmq
def test_a_retry_and_a_permanent_failure_log_one_line_each_with_a_traceback_once_per_handler_and_error_type(
        pulse_user, taskcluster_exchanges, queue_name, caplog):
    caplog.set_level(logging.DEBUG, logger="tcpulse")
    app = Listener(queue_name, broker=pulse_user.url, max_attempts=3, retry_delays=(0.2,))

    @app.on(COMPLETED, taskGroupId=queue_name)
    def flaky(event):
        raise ValueError("the service is down")

    @app.on(QueueEvents.taskFailed, taskGroupId=queue_name)
    def refuse(event):
        raise tcpulse.PermanentFailure("task has no artifacts")

    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name), {"n": 1})
        pub.publish(QueueEvents.taskFailed.exchange, task_key(QueueEvents.taskFailed, taskGroupId=queue_name), {"n": 2})
        wait_for(lambda: app.metrics.get("dead_lettered") == 2, what="both messages dead-lettered")
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    tracebacks = [r for r in shown if r.exc_info]
    # Nested functions: their names read without '<locals>' in every line and metric.
    flaky_name = "test_newcomer_run.test_a_retry_and_a_permanent_failure_log_one_line_each_with_a_traceback_once_per_handler_and_error_type.flaky"
    assert not any("<locals>" in r.getMessage() for r in caplog.records)
    assert app.metrics.get("handler_errors", handler=flaky_name) == 3
    assert len(tracebacks) == 1 and f"handler {flaky_name} failed" in tracebacks[0].getMessage()
    assert sum("retrying in" in r.getMessage() for r in shown) == 2
    about_refuse = [r.getMessage() for r in shown if "refuse" in r.getMessage()]
    assert len(about_refuse) == 1 and "PermanentFailure: task has no artifacts" in about_refuse[0], about_refuse
    at_debug = [r.getMessage().split(" failed")[0].rsplit(".", 1)[1] for r in caplog.records
                if r.levelno == logging.DEBUG and r.exc_info]
    assert sorted(at_debug) == ["flaky", "flaky", "refuse"]


def test_tcpulse_listen_prints_the_stop_summary_once():
    done = _tcpulse("listen", "examples/task_group_watcher.py", "--broker", "memory://", "--replay",
                    "examples/messages/task-group.jsonl", "--exit-when-idle", "--idle-seconds", "0.3")
    assert done.returncode == 0, done.stderr
    summaries = [line for line in (done.stdout + done.stderr).splitlines() if "; handled: " in line]
    assert len(summaries) == 1 and done.stdout.splitlines()[-1] == summaries[0], summaries
    assert "stopped listening on queue/guest/" in done.stderr


@pytest.mark.rabbitmq
def test_app_run_on_a_missing_exchange_ends_the_script_with_one_line_not_a_traceback(pulse_user, tmp_path):
    missing = f"exchange/{pulse_user.name}/v1/missing-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "app.py"
    script.write_text("import sys\nfrom tcpulse import Binding, Listener\n\n"
                      "app = Listener(broker=sys.argv[1])\n"
                      f"app.on(Binding({missing!r}, '#'))(lambda event: None)\n\n"
                      "if __name__ == '__main__':\n    app.run()\n")
    done = subprocess.run([sys.executable, str(script), pulse_user.url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"MissingExchange: exchange {missing!r} does not exist on amqp://{pulse_user.name}:***@127.0.0.1:5672//: is "
        "the service that publishes it running there? (for local development, Listener(..., declare_exchanges=True) "
        "creates it)"], done.stderr


@pytest.mark.rabbitmq
def test_the_readmes_pulse_user_lines_give_pulses_permissions(rabbitmq):
    import re
    import shlex

    from conftest import rabbitmqctl

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- pulse-user -->\n```\n(.*?)```", readme, re.S).group(1)
    name = f"readme-{uuid.uuid4().hex[:8]}"
    commands = [shlex.split(line.replace("alice", name)) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["rabbitmqctl", "add_user"], ["rabbitmqctl", "set_permissions"]]
    try:
        for command in commands:
            rabbitmqctl(*command[1:])
        url = f"amqp://{name}:{name}-password@127.0.0.1:5672//"
        mine = f"exchange/{name}/v1/x"
        done = _tcpulse("publish", mine, "--routing-key", "k", "--broker", url, "--declare-exchanges")
        assert done.returncode == 0, done.stderr  # its own exchange: created
        refused = _tcpulse("publish", "exchange/someone-else/v1/x", "--routing-key", "k", "--broker", url,
                           "--declare-exchanges")
        assert refused.returncode == 1 and f"does not let user {name!r} declare exchange" in refused.stderr
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", name], capture_output=True, timeout=60)
        with kombu.Connection(GUEST) as conn:
            conn.channel().exchange_delete(f"exchange/{name}/v1/x")
