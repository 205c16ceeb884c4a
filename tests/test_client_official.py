"""The REST client behaves as the official client of today (113.x) where a ported handler would
notice, checked against the Hawk-verifying server; the official client's own answers are in
tests/fixtures/official_client/observed.json (recorded by record.py beside it)."""
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import tcpulse
from hawkserver import CLIENTS, other_server, server  # noqa: F401 - fixtures

PERMANENT = {"clientId": "tester", "accessToken": CLIENTS["tester"]}


@pytest.fixture
def environment_credentials(monkeypatch):
    monkeypatch.setenv("TASKCLUSTER_CLIENT_ID", "issuer")
    monkeypatch.setenv("TASKCLUSTER_ACCESS_TOKEN", CLIENTS["issuer"])


def test_explicit_options_without_credentials_send_unsigned_requests_even_with_credentials_in_the_environment(
        server, environment_credentials):
    tcpulse.Queue({"rootUrl": server.url}).task("abc")
    assert "Authorization" not in server.requests[0].headers


def test_explicit_credentials_sign_with_exactly_those_not_the_environments(server, environment_credentials):
    tcpulse.Queue({"rootUrl": server.url, "credentials": PERMANENT}).task("abc")
    assert (server.requests[0].client_id, server.requests[0].auth_error) == ("tester", None)


def test_a_client_built_without_options_signs_with_the_environments_credentials(
        server, environment_credentials, monkeypatch):
    monkeypatch.setenv("TASKCLUSTER_ROOT_URL", server.url + "/")
    tcpulse.Queue().task("abc")
    assert (server.requests[0].client_id, server.requests[0].path) == ("issuer", "/api/queue/v1/task/abc")


def test_options_from_environment_merges_credentials_key_by_key_and_leaves_the_defaults_unchanged(monkeypatch):
    monkeypatch.delenv("TASKCLUSTER_CLIENT_ID", raising=False)
    monkeypatch.setenv("TASKCLUSTER_ACCESS_TOKEN", "env-token")
    monkeypatch.setenv("TASKCLUSTER_ROOT_URL", "https://tc.example.com//")
    defaults = {"credentials": {"clientId": "them"}}
    assert tcpulse.optionsFromEnvironment(defaults) == {
        "rootUrl": "https://tc.example.com", "credentials": {"clientId": "them", "accessToken": "env-token"}}
    assert defaults == {"credentials": {"clientId": "them"}}


@pytest.mark.parametrize("credentials, field", [
    ({"clientId": "me", "accessToken": "s\u00e9cret-token"}, "accessToken"),
    ({"clientId": "m\u00e9", "accessToken": "token"}, "clientId"),
    ({"clientId": "me", "accessToken": "s\u00e9cret-token".encode()}, "accessToken"),
    ({"clientId": "me", "accessToken": "t", "certificate": '{"seed": "\u00e9"}'}, "certificate"),
])
def test_credentials_that_are_not_ascii_raise_auth_failure_when_the_client_is_built(credentials, field):
    with pytest.raises(tcpulse.TaskclusterAuthFailure,
                       match=rf"^credentials: {field} must be ASCII text \(it holds other characters\)$") as caught:
        tcpulse.Queue({"rootUrl": "https://tc", "credentials": credentials})
    assert "cret" not in str(caught.value)


def test_a_303_answer_is_the_result_and_its_location_is_not_followed(server, other_server):
    target = other_server.url + "/artifact.bin"
    server.script = [(303, {"storageType": "s3", "url": target}, {"Location": target})]
    result = tcpulse.Queue({"rootUrl": server.url, "credentials": PERMANENT}).getLatestArtifact("t", "public/x")
    assert result == {"storageType": "s3", "url": target}
    assert other_server.requests == []


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_never_carries_the_signed_request_or_its_body_anywhere(server, other_server, status):
    target = other_server.url + "/steal"
    server.script = [(status, b"", {"Location": target})]
    result = tcpulse.Queue({"rootUrl": server.url, "credentials": PERMANENT}).createTask("t1", {"secret": "body"})
    assert result["response"].status_code == status and result["response"].headers["Location"] == target
    assert other_server.requests == [] and len(server.requests) == 1


@pytest.mark.parametrize("call, path", [
    (lambda c: c.task(".."), "/api/queue/v1/task/%2E%2E"),
    (lambda c: c.task("."), "/api/queue/v1/task/%2E"),
    (lambda c: c.getArtifact("..", 0, ".."), "/api/queue/v1/task/%2E%2E/runs/0/artifacts/%2E%2E"),
    (lambda c: c.getArtifact("t", 0, "../../x"), "/api/queue/v1/task/t/runs/0/artifacts/..%2F..%2Fx"),
    (lambda c: tcpulse.Index(c.options).findArtifactFromTask("..", "x"), "/api/index/v1/task/%2E%2E/artifacts/x"),
])
def test_dot_and_dot_dot_route_arguments_stay_one_segment_of_the_route(server, call, path):
    call(tcpulse.Queue({"rootUrl": server.url, "credentials": PERMANENT}))
    assert (server.requests[0].path, server.requests[0].auth_error) == (path, None)


@pytest.mark.parametrize("expiration", [-1, -0.5, 0, "60", [60], True])
def test_a_signed_url_expiration_that_is_not_a_positive_number_is_a_usage_error(expiration):
    client = tcpulse.Queue({"rootUrl": "https://tc", "credentials": PERMANENT})
    with pytest.raises(tcpulse.ClientUsageError, match=r"^Queue.task: buildSignedUrl expiration must be a "
                                                       r"number of seconds > 0 \(got "):
        client.buildSignedUrl("task", "abc", expiration=expiration)


def test_a_clients_options_show_no_secret_in_any_repr_or_str():
    secret = "the-access-token-" + "x" * 20
    client = tcpulse.Queue({"rootUrl": "https://tc", "credentials": {"clientId": "me", "accessToken": secret,
                                                                       "certificate": '{"signature": "sig-secret"}'}})
    views = [repr(client.options), str(client.options), repr(client.options["credentials"]),
             str(client.options["credentials"]), f"{client.options}", repr(client), repr(dict(client.options))]
    assert not any(secret in view or "sig-secret" in view for view in views)
    assert "'clientId': 'me'" in views[0]
    assert client.options["credentials"]["accessToken"] == secret  # still readable, as in the official client


def test_a_call_without_any_root_url_fails_at_once_in_one_line_without_network(tmp_path):
    # An audit hook in the child records every socket it would open or name it would resolve.
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                sys.stderr.write(f"NETWORK {event}\\n")
        sys.addaudithook(hook)
    """))
    env = {key: value for key, value in os.environ.items() if not key.startswith("TASKCLUSTER_")}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    done = subprocess.run([sys.executable, "-c", "import tcpulse; tcpulse.Queue().task('x')"],
                          capture_output=True, text=True, env=env, timeout=30)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "NETWORK" not in done.stderr
    assert last == ("tcpulse.errors.ClientUsageError: Queue.task: no rootUrl: set TASKCLUSTER_ROOT_URL (read by a "
                    "client built without options) or pass options['rootUrl'], e.g. "
                    "tcpulse.Queue({'rootUrl': 'https://tc.example.com'})")
    assert "During handling" not in done.stderr and "direct cause" not in done.stderr


def test_explicit_options_without_a_root_url_name_both_ways_to_give_one():
    with pytest.raises(tcpulse.ClientUsageError, match=r"Index.findTask: no rootUrl: set TASKCLUSTER_ROOT_URL .* "
                                                       r"options\['rootUrl'\]"):
        tcpulse.Index({"maxRetries": 0}).findTask("a.b")


def test_errors_take_the_message_as_msg_and_pickle_with_their_attributes():
    error = tcpulse.TaskclusterRestFailure(msg="gone", status_code=404, body={"message": "gone"}, superExc=None)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.status_code, copy.body, copy.superExc) == ("gone", 404, {"message": "gone"}, None)
    artifact = pickle.loads(pickle.dumps(tcpulse.TaskclusterArtifactError("no file", "file-missing-on-worker")))
    assert (str(artifact), artifact.reason) == ("no file", "file-missing-on-worker")


def test_a_rest_failure_from_a_call_keeps_the_richer_text_and_the_servers_message_in_body(server):
    server.script = [(404, {"message": "Task not found", "code": "ResourceNotFound"})]
    with pytest.raises(tcpulse.TaskclusterRestFailure) as caught:
        tcpulse.Queue({"rootUrl": server.url}).task("abc")
    assert str(caught.value) == "Queue.task: HTTP 404 Not Found: Task not found"
    assert caught.value.body["message"] == "Task not found" and caught.value.superExc is None


def test_client_classes_carry_the_official_attributes():
    queue = tcpulse.Queue({"rootUrl": "https://tc"})
    assert (queue.serviceName, queue.apiVersion, queue.classOptions) == ("queue", "v1", {})
    assert tcpulse.Index.serviceName == "index" and set(tcpulse.Queue.funcinfo) == set(tcpulse.Queue.entries)
    assert tcpulse.Queue.funcinfo["listTaskGroup"]["query"] == ["continuationToken", "limit"]


def test_create_session_gives_a_session_a_client_accepts(server):
    session = tcpulse.createSession()
    client = tcpulse.Queue({"rootUrl": server.url}, session)
    assert client.session is session and client.task("abc") == {"path": "/api/queue/v1/task/abc"}


@pytest.mark.parametrize("module", ["client", "_rest.calls", "_rest.options", "auth", "_rest.hawk", "utils", "errors", "_rest.artifacts", "download"])
def test_the_docstring_examples_of_the_rest_client_modules_run(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(f"tcpulse.{module}"))
    assert failures == 0 and tried > 0
