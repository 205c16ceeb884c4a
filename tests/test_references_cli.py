"""`tcpulse references pull|list|diff`, run for real in subprocesses against a local HTTP server
that serves the bundled references under a rootUrl with a path prefix, as a deployment does,
with one reference altered (Queue gains a method, QueueEvents an exchange).

The round trip: pull, diff (names exactly the two additions), select the pulled set, call the
new method against the same server (Hawk-signed, verified by the server), and receive a message
on the new exchange through `tcpulse listen` on memory://. Failures (deployment unreachable,
manifest 404, malformed reference) exit 1 with one line and leave the previous pull intact.
"""
import copy
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

from tcpulse.references import BUNDLED, open_set
from hawkserver import CLIENTS, HawkServer, running, server  # noqa: F401 - the fixture

TCPULSE = Path(sys.executable).parent / "tcpulse"
PREFIX = "/tc/deployment"
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("TASKCLUSTER_", "TCPULSE_", "PULSE_", "XDG_"))}
BUNDLE = open_set(BUNDLED).root
NEW_METHOD = {"args": ["taskGroupId"], "category": "Task Groups", "description": "Move a task group.",
              "method": "post", "name": "teleportTaskGroup", "query": [], "route": "/task-group/<taskGroupId>/teleport",
              "scopes": "queue:teleport-task-group:<taskGroupId>", "stability": "experimental",
              "title": "Teleport Task Group", "type": "function"}
LOGS = {"$schema": "/schemas/common/logs-reference-v0.json#", "serviceName": "queue", "types": []}


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(TCPULSE), *args], capture_output=True, text=True, timeout=120, env={**ENV, **env})


def served_files() -> Dict[str, object]:
    """The bundle by URL path, with Queue's two references extended and a logs reference listed."""
    files = {"/" + path.relative_to(BUNDLE).as_posix(): json.loads(path.read_text(encoding="utf-8"))
             for path in BUNDLE.rglob("*.json")}
    files["/references/queue/v1/api.json"]["entries"].append(NEW_METHOD)
    exchanges = files["/references/queue/v1/exchanges.json"]["entries"]
    completed = next(e for e in exchanges if e["name"] == "taskCompleted")
    exchanges.append({**copy.deepcopy(completed), "name": "taskTeleported", "exchange": "task-teleported",
                      "title": "Task Teleported Messages"})
    files["/references/queue/v1/logs.json"] = LOGS
    files["/references/manifest.json"]["references"].append("/references/queue/v1/logs.json")
    return files


@pytest.fixture
def deployment(server):  # noqa: F811 - the hawkserver fixture
    """The server answering as a deployment under PREFIX; `deployment.files` may be changed."""
    server.files = served_files()

    def respond(seen):
        path = seen.path[len(PREFIX):] if seen.path.startswith(PREFIX + "/") else None
        if seen.method == "POST" and path and path.endswith("/teleport"):
            return 200, {"teleported": path.split("/")[-2]}
        if path in server.files:
            return 200, server.files[path]
        return 404, {"message": f"no such resource {seen.path}"}

    server.responder = respond
    server.root_url = server.url + PREFIX
    return server


def tree(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pull_select_call_bind_and_diff_round_trip(deployment, tmp_path):
    folder = tmp_path / "set"
    pulled = run("references", "pull", "--root-url", deployment.root_url, "--dir", str(folder))
    assert (pulled.returncode, pulled.stderr) == (0, "")
    assert pulled.stdout == (f"pulled 11 services (193 methods) and 6 exchange sets (37 exchanges) with 166 schemas "
                             f"from {deployment.root_url} into {folder}\n")
    assert not any(seen.path.endswith("logs.json") for seen in deployment.requests)
    assert json.loads((folder / "source.json").read_text())["rootUrl"] == deployment.root_url

    diff = run("references", "diff", str(folder))
    assert (diff.returncode, diff.stdout.splitlines()) == (0, [
        f"only in {folder.resolve()}: method Queue.teleportTaskGroup",
        f"only in {folder.resolve()}: exchange QueueEvents.taskTeleported"])

    call = subprocess.run([sys.executable, "-c", f"""
import json, tcpulse
queue = tcpulse.Queue({{"rootUrl": {deployment.root_url!r}, "credentials": {{"clientId": "tester", "accessToken": {CLIENTS['tester']!r}}}}})
print(json.dumps(queue.teleportTaskGroup("g1")))
"""], capture_output=True, text=True, timeout=60, env={**ENV, "TCPULSE_REFERENCES": str(folder)}, cwd=tmp_path)
    assert (call.returncode, call.stdout) == (0, '{"teleported": "g1"}\n'), call.stderr
    seen = deployment.requests[-1]
    assert (seen.method, seen.path, seen.auth_error) == ("POST", f"{PREFIX}/api/queue/v1/task-group/g1/teleport", None)

    script = tmp_path / "teleports.py"
    script.write_text("import tcpulse\n\n@tcpulse.on(tcpulse.QueueEvents.taskTeleported, taskGroupId='g1')\n"
                      "def teleported(event):\n    print('teleported', event.fields['taskId'], flush=True)\n")
    recording = tmp_path / "teleports.jsonl"
    recording.write_text(json.dumps({"exchange": "exchange/taskcluster-queue/v1/task-teleported", "routes": [],
                                     "routing_key": "primary.t1.0.wg.w1.prov.wt.sched.g1._",
                                     "body": {"status": {"taskId": "t1"}, "runId": 0}}) + "\n")
    listened = run("listen", str(script), "--broker", "memory://", "--replay", str(recording), "--exit-when-idle",
                   TCPULSE_REFERENCES=str(folder))
    assert listened.returncode == 0, listened.stderr
    assert "teleported t1" in listened.stdout.splitlines()


def test_without_dir_the_set_goes_to_a_folder_per_deployment_under_the_cache_directory(deployment, tmp_path):
    pulled = run("references", "pull", "--root-url", deployment.root_url + "/", XDG_CACHE_HOME=str(tmp_path))
    port = deployment.server_address[1]
    folder = tmp_path / "tcpulse" / "references" / f"127.0.0.1-{port}-tc-deployment"
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.endswith(f" into {folder}\n")
    assert open_set(str(folder)).get("QueueEvents").entries[-1].name == "taskTeleported"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def break_queue_reference(deployment) -> None:
    del deployment.files["/references/queue/v1/api.json"]["entries"][0]["route"]


@pytest.mark.parametrize("failure", ["unreachable", "manifest 404", "malformed reference", "deeply nested reference"])
def test_a_failed_pull_is_one_line_exit_1_and_leaves_the_previous_set_intact(deployment, tmp_path, failure):
    folder = tmp_path / "set"
    assert run("references", "pull", "--root-url", deployment.root_url, "--dir", str(folder)).returncode == 0
    before = tree(folder)
    root_url, expected = {
        "unreachable": (f"http://127.0.0.1:{closed_port()}/tc",
                        "/references/manifest.json: cannot reach the deployment ([Errno 111] Connection refused)"),
        "manifest 404": (deployment.url + "/elsewhere",
                         "/references/manifest.json: HTTP 404 Not Found; is --root-url the deployment's rootUrl?"),
        "malformed reference": (deployment.root_url, "/references/queue/v1/api.json: document.entries[0] is missing 'route'"),
        "deeply nested reference": (deployment.root_url, "/references/queue/v1/api.json: JSON nested too deep to read"),
    }[failure]
    if failure == "malformed reference":
        break_queue_reference(deployment)
    if failure == "deeply nested reference":
        deployment.files["/references/queue/v1/api.json"] = b"[" * 100_000 + b"]" * 100_000
    done = run("references", "pull", "--root-url", root_url, "--dir", str(folder))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == f"tcpulse: error: {root_url}{expected}\n"
    assert tree(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no half-written set left beside it
    assert open_set(str(folder)).get("Queue").entries[-1].name == "teleportTaskGroup"


@pytest.fixture
def https_redirector(tmp_path):
    """An https server on 127.0.0.1 (its certificate trusted through SSL_CERT_FILE, as a system
    CA store would be) whose answers are scripted: here, redirects."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    srv = HawkServer()
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    srv.cert = cert
    with running(srv):
        yield srv


def test_pull_refuses_a_redirect_from_https_to_http(deployment, https_redirector, tmp_path):
    root_url = f"https://127.0.0.1:{https_redirector.server_address[1]}{PREFIX}"
    https_redirector.responder = lambda seen: (302, b"", {"Location": deployment.url + seen.path})
    done = run("references", "pull", "--root-url", root_url, "--dir", str(tmp_path / "set"),
               SSL_CERT_FILE=str(https_redirector.cert))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"tcpulse: error: {root_url}/references/manifest.json: refusing a redirect from https to "
                           f"http URL {deployment.root_url}/references/manifest.json\n")
    assert [seen.path for seen in https_redirector.requests] == [f"{PREFIX}/references/manifest.json"]
    assert deployment.requests == [] and not (tmp_path / "set").exists()


def test_pull_follows_a_redirect_from_https_to_https(deployment, https_redirector, tmp_path):
    root_url = f"https://127.0.0.1:{https_redirector.server_address[1]}"
    https_redirector.responder = lambda seen: (
        (302, b"", {"Location": PREFIX + seen.path}) if not seen.path.startswith(PREFIX) else deployment.responder(seen))
    done = run("references", "pull", "--root-url", root_url, "--dir", str(tmp_path / "set"),
               SSL_CERT_FILE=str(https_redirector.cert))
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert open_set(str(tmp_path / "set")).get("Queue").entries[-1].name == "teleportTaskGroup"


def test_pull_refuses_to_replace_a_folder_that_is_not_a_reference_set(deployment, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = run("references", "pull", "--root-url", deployment.root_url, "--dir", str(tmp_path))
    assert (done.returncode, done.stderr) == (1, f"tcpulse: error: {tmp_path}: exists and is not a reference set; "
                                                 f"give --dir a new or empty folder\n")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_list_prints_a_sets_services_methods_and_exchanges_one_a_line():
    listed = run("references", "list", "--set", "legacy-2018")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "TreeherderEvents  exchange/taskcluster-treeherder/v1/  1 exchanges" in lines
    assert "Queue.getLatestArtifact  GET /task/<taskId>/artifacts/<name>" in lines
    assert run("references", "list", TCPULSE_REFERENCES="legacy-2018").stdout == listed.stdout
    today = run("references", "list").stdout.splitlines()
    assert "Object  object/v1  9 methods" in today and "Queue.artifact  GET /task/<taskId>/runs/<runId>/artifact-content/<name>" in today
    assert len(today) == 17 + 192 + 36


def test_diff_of_the_shipped_sets_names_the_retired_and_the_new_services():
    done = run("references", "diff", "legacy-2018")
    lines = done.stdout.splitlines()
    assert done.returncode == 0
    assert "only in legacy-2018: service TreeherderEvents" in lines and "only in bundled: service Object" in lines
    assert "only in bundled: method Queue.artifact" in lines
    assert "only in bundled: exchange QueueEvents.taskGroupSealed" in lines
    assert run("references", "diff", "bundled").stdout == "no differences between bundled and bundled\n"


def test_the_other_commands_honour_the_selected_set():
    done = run("exchanges", "TreeherderEvents", TCPULSE_REFERENCES="legacy-2018")
    assert (done.returncode, done.stdout.splitlines()[0]) == (0, "TreeherderEvents.jobs  exchange/taskcluster-treeherder/v1/jobs")


def test_an_unknown_set_is_a_usage_error_with_a_suggestion():
    done = run("references", "list", "--set", "legacy2018")
    assert (done.returncode, done.stderr) == (2, (
        "tcpulse: error: reference set 'legacy2018' is not a folder: give 'bundled', 'legacy-2018' or a folder "
        "written by 'tcpulse references pull'. Did you mean 'legacy-2018'?\n"))


def test_a_bad_selection_in_the_environment_is_one_line_in_any_command(tmp_path):
    missing = tmp_path / "nowhere"
    done = run("exchanges", TCPULSE_REFERENCES=str(missing))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"tcpulse: error: TCPULSE_REFERENCES: reference set '{missing}' is not a folder: give "
                           f"'bundled', 'legacy-2018' or a folder written by 'tcpulse references pull'.\n")


def test_a_selected_set_with_a_broken_reference_is_one_line_exit_1(tmp_path):
    folder = tmp_path / "set"
    (folder / "references" / "queue" / "v1").mkdir(parents=True)
    (folder / "references" / "manifest.json").write_text(json.dumps({"references": ["/references/queue/v1/exchanges.json"]}))
    (folder / "references" / "queue" / "v1" / "exchanges.json").write_text("{not json")
    done = run("routing-key", "QueueEvents.taskCompleted", TCPULSE_REFERENCES=str(folder))
    assert done.returncode == 1
    assert done.stderr.startswith(f"tcpulse: error: {folder.resolve()}/references/queue/v1/exchanges.json: cannot be "
                                  f"read as JSON (") and done.stderr.count("\n") == 1


def test_the_task_group_example_handles_the_same_messages_under_either_shipped_set():
    repo = Path(__file__).resolve().parent.parent
    command = ("listen", str(repo / "examples" / "task_group_watcher.py"), "--broker", "memory://", "--replay",
               str(repo / "examples" / "messages" / "task-group.jsonl"), "--exit-when-idle")
    today, legacy = run(*command), run(*command, TCPULSE_REFERENCES="legacy-2018")
    assert (today.returncode, legacy.returncode) == (0, 0), today.stderr + legacy.stderr
    assert today.stdout == legacy.stdout and "handled: task_group_watcher.completed 3" in today.stdout
