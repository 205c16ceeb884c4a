"""The examples do what their docstrings say, checked with tcpulse's own pytest harness
(the `tcpulse_harness` fixture, registered through the pytest11 entry point)."""
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from artifactserver import Blob, artifact_server  # noqa: F401 - the fixture

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WATCHER = str(EXAMPLES / "task_group_watcher.py")
GROUP_FILE = str(EXAMPLES / "messages" / "task-group.jsonl")
COMPLETED_TASKS = ["Vj4tUqDCTWqRUhx_sYtT2A", "d3xRBj6jRPGcJxjbHvsxGA", "GCzF6DY2Sv2N6xGm1K8kZQ"]


@pytest.fixture
def dry_run(monkeypatch):
    monkeypatch.delenv("TASKCLUSTER_ROOT_URL", raising=False)
    monkeypatch.delenv("TASK_GROUP_ID", raising=False)


def test_the_watcher_handles_each_task_of_its_group_and_ignores_other_groups(tcpulse_harness, dry_run, capsys):
    app = tcpulse_harness.load(WATCHER)
    results = tcpulse_harness.deliver_file(app, GROUP_FILE)
    assert [r.ran for r in results] == [
        ["task_group_watcher.completed"], ["task_group_watcher.completed"], [],
        ["task_group_watcher.failed"], ["task_group_watcher.failed"], ["task_group_watcher.completed"]]
    assert all(r.acked for r in results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"completed  {COMPLETED_TASKS[0]} run 0: would fetch "
                        f"queue.listArtifacts('{COMPLETED_TASKS[0]}', 0)")
    assert lines[2] == ("failed     LH7YpQ1dQOykxJ0eyB3gRw run 0 (failed): "
                        "would fetch queue.status('LH7YpQ1dQOykxJ0eyB3gRw')")
    assert lines[3].startswith("exception  dZqT3pRZQpWbbG2mUjiRNA run 0 (worker-shutdown)")
    assert len(lines) == 5


def test_the_sample_messages_are_shaped_like_the_queues_own(tcpulse_harness):
    from tcpulse._api.exchanges import exchange_named
    from tcpulse._ops.recording import read

    for message in read(GROUP_FILE):
        fields = exchange_named(message.exchange).parse(message.routing_key)
        status = message.body["status"]
        run = status["runs"][message.body["runId"]]
        assert (fields["taskId"], fields["taskGroupId"], fields["workerType"]) == \
            (status["taskId"], status["taskGroupId"], status["workerType"])
        assert (fields["runId"], fields["workerGroup"]) == (str(run["runId"]), message.body["workerGroup"])
        assert run["state"] == status["state"]


class FakeQueue(http.server.BaseHTTPRequestHandler):
    """A Queue service on 127.0.0.1: artifacts for known runs, status for known tasks, else 404."""

    def do_GET(self):
        parts = self.path.split("/")  # /api/queue/v1/task/<taskId>/runs/<runId>/artifacts
        if self.path.endswith("/artifacts") and parts[5] in COMPLETED_TASKS:
            self._send(200, {"artifacts": [{"name": "public/build/target.tar.bz2"}, {"name": "public/logs/live.log"}]})
        elif self.path.endswith("/status") and parts[5] == "LH7YpQ1dQOykxJ0eyB3gRw":
            self._send(200, {"status": {"state": "failed", "retriesLeft": 4}})
        else:
            self._send(404, {"code": "ResourceNotFound", "message": "no such task"})

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def queue_service(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeQueue)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TASKCLUSTER_ROOT_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("TASK_GROUP_ID", raising=False)
    yield
    server.shutdown()


def test_with_a_root_url_the_watcher_fetches_through_the_queue_client(tcpulse_harness, queue_service, capsys):
    app = tcpulse_harness.load(WATCHER)
    results = tcpulse_harness.deliver_file(app, GROUP_FILE)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"completed  {COMPLETED_TASKS[0]} run 0: 2 artifacts: "
                      "public/build/target.tar.bz2, public/logs/live.log")
    assert out[2] == "failed     LH7YpQ1dQOykxJ0eyB3gRw run 0 (failed): now failed, 4 retries left"
    # the exception task is unknown to this Queue: a 404 is permanent, so no retries
    exception = results[4]
    assert exception.dead_lettered and exception.calls == [(1, "task_group_watcher.failed")]
    assert "TaskclusterRestFailure" in exception.reason
    assert [r.acked for r in results] == [True, True, True, True, False, True]


def test_the_index_listener_runs_only_for_tasks_indexed_under_its_namespace(tcpulse_harness, monkeypatch, capsys):
    monkeypatch.delenv("INDEX_NAMESPACE", raising=False)
    app = tcpulse_harness.load(str(EXAMPLES / "index_route_listener.py"))
    results = tcpulse_harness.deliver_file(app, str(EXAMPLES / "messages" / "index-routes.jsonl"))
    assert [r.ran for r in results] == [["index_route_listener.indexed"], ["index_route_listener.indexed"], [], []]
    assert capsys.readouterr().out.splitlines() == [
        "indexed    Rk8v0wYbS6OVCq2G3kBZ3g at project.example.app.v1.latest, project.example.app.v1.revision.1c9e4b2",
        "indexed    Ma1Y7PdgRuyP3nA4cV5iBw at project.example.docs.latest"]


def test_the_routing_key_example_runs_without_a_listener_or_broker():
    script = (f"import runpy, sys; runpy.run_path({str(EXAMPLES / 'routing_keys.py')!r}); "
              "print('kombu loaded' if 'kombu' in sys.modules else 'no kombu')")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("bind exchange/taskcluster-queue/v1/task-completed "
                        "primary.*.*.*.*.*.*.*.Q2ZlV3k3QmWq2RvdcYxWFA.#")
    assert lines[1].startswith("bind exchange/taskcluster-queue-staging/v1/task-failed ")
    assert lines[3] == "task Vj4tUqDCTWqRUhx_sYtT2A run 0 on gecko-t-linux-large"
    assert lines[-1] == "no kombu"


@pytest.mark.parametrize("module", ["_broker.broker", "_broker.embedded", "_ops.recording", "testing", "_listen.messages", "_listen.shutdown", "_listen.scripts",
                                    "cli", "cli.base", "cli.routing", "cli.brokers", "cli.listen"])
def test_the_docstring_examples_run(module, monkeypatch):
    import doctest
    import importlib

    monkeypatch.chdir(EXAMPLES.parent)  # examples name files relative to a checkout
    monkeypatch.delenv("PULSE_URL", raising=False)
    failures, tried = doctest.testmod(importlib.import_module(f"tcpulse.{module}"))
    assert tried > 0 and failures == 0


DOWNLOADER = str(EXAMPLES / "artifact_downloader.py")


def test_the_downloader_without_a_root_url_says_what_it_would_download(tcpulse_harness, dry_run, capsys):
    results = tcpulse_harness.deliver_file(tcpulse_harness.load(DOWNLOADER), GROUP_FILE)
    assert capsys.readouterr().out.splitlines() == [
        f"would download public/build/target.tar.bz2 of {task} run 0" for task in COMPLETED_TASKS]
    assert all(result.acked for result in results)


def test_the_downloader_streams_each_completed_tasks_artifact_whatever_its_storage(
        tcpulse_harness, artifact_server, tmp_path, monkeypatch, capsys):
    name = "public/build/target.tar.bz2"
    artifact_server.store(COMPLETED_TASKS[0], 0, name, "s3", Blob(b"s3 bytes" * 1000, "application/x-bzip2"))
    artifact_server.store(COMPLETED_TASKS[1], 0, name, "object", Blob(b"object bytes", "application/x-bzip2",
                                                                     failures=[503]))
    artifact_server.store(COMPLETED_TASKS[2], 0, name, "error", message="not built", reason="file-missing-on-worker")
    monkeypatch.setenv("TASKCLUSTER_ROOT_URL", artifact_server.url)
    monkeypatch.setenv("DOWNLOAD_DIR", str(tmp_path))
    monkeypatch.delenv("TASK_GROUP_ID", raising=False)
    results = tcpulse_harness.deliver_file(tcpulse_harness.load(DOWNLOADER), GROUP_FILE)
    assert capsys.readouterr().out.splitlines() == [
        f"downloaded {name} of {COMPLETED_TASKS[0]} run 0: 8000 bytes, application/x-bzip2",
        f"downloaded {name} of {COMPLETED_TASKS[1]} run 0: 12 bytes, application/x-bzip2",
        f"no {name} for {COMPLETED_TASKS[2]} run 0: not built (file-missing-on-worker)"]
    assert (tmp_path / COMPLETED_TASKS[1] / "target.tar.bz2").read_bytes() == b"object bytes"
    assert not (tmp_path / COMPLETED_TASKS[2]).joinpath("target.tar.bz2").exists()
    assert all(result.acked for result in results)
