"""The REST client against a real local HTTP server: Hawk, ext, bewits, retries, keep-alive."""
import base64
import datetime
import json
import logging
import socket
import subprocess
import sys
import time

import mohawk.bewit
import pytest
import requests

import tcpulse
import tcpulse.client
from tcpulse.auth import Credentials
from hawkserver import CLIENTS, DROP, derived_token, server  # noqa: F401

PERMANENT = {"clientId": "tester", "accessToken": CLIENTS["tester"]}


def queue(server, **options):
    return tcpulse.Queue({"rootUrl": server.url, "maxRetries": 2, **options})


def temporary(name=None, scopes=("queue:*",)):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    return tcpulse.createTemporaryCredentials("issuer", CLIENTS["issuer"], start,
                                              start + datetime.timedelta(hours=1), list(scopes), name)


def test_a_call_with_permanent_credentials_is_signed_and_the_server_accepts_it(server):
    assert queue(server, credentials=PERMANENT).task("abc") == {"path": "/api/queue/v1/task/abc"}
    seen = server.requests[0]
    assert (seen.client_id, seen.auth_error, seen.ext) == ("tester", None, {})


def test_a_payload_is_covered_by_the_hawk_signature(server):
    queue(server, credentials=PERMANENT).createTask("t1", {"created": "now", "n": [1, 2]})
    seen = server.requests[0]
    assert seen.auth_error is None and seen.method == "PUT"
    assert seen.json() == {"created": "now", "n": [1, 2]}
    assert 'hash="' in seen.headers["Authorization"]


def test_authorized_scopes_travel_in_ext(server):
    queue(server, credentials=PERMANENT, authorizedScopes=["queue:a", "queue:b"]).task("abc")
    seen = server.requests[0]
    assert seen.auth_error is None
    assert seen.ext == {"authorizedScopes": ["queue:a", "queue:b"]}


@pytest.mark.parametrize("name", [None, "my-temp-client"])
@pytest.mark.parametrize("scopes", [None, ["queue:get-task"]])
def test_temporary_credentials_sign_requests_with_the_certificate_in_ext(server, name, scopes):
    creds = temporary(name)
    options = {"credentials": creds} if scopes is None else {"credentials": creds, "authorizedScopes": scopes}
    queue(server, **options).task("abc")
    seen = server.requests[0]
    assert seen.auth_error is None
    assert seen.client_id == (name or "issuer")
    certificate = seen.ext["certificate"]
    assert certificate["scopes"] == ["queue:*"] and certificate.get("issuer") == ("issuer" if name else None)
    assert seen.ext.get("authorizedScopes") == scopes


def test_a_certificate_whose_signature_was_tampered_with_is_refused_with_an_auth_failure(server):
    creds = temporary()
    creds["certificate"] = creds["certificate"].replace('"queue:*"', '"queue:**"')
    with pytest.raises(tcpulse.TaskclusterAuthFailure, match=r"Queue.task: HTTP 401 Unauthorized: "
                                                             r"Authentication failed") as caught:
        queue(server, credentials=creds).task("abc")
    assert caught.value.status_code == 401 and len(server.requests) == 1


def test_a_wrong_access_token_raises_auth_failure_without_retrying_and_without_the_token(server):
    with pytest.raises(tcpulse.TaskclusterAuthFailure) as caught:
        queue(server, credentials={"clientId": "tester", "accessToken": "not-the-token"}).task("abc")
    assert "MacMismatch" in str(caught.value) and "not-the-token" not in str(caught.value)
    assert len(server.requests) == 1


def unpadded_to_standard(bewit: str) -> str:
    # mohawk's check decodes with standard base64; the wire form (as the official client and
    # the JS services use it) is base64url without padding.
    return base64.b64encode(base64.urlsafe_b64decode(bewit + "=" * (-len(bewit) % 4))).decode()


@pytest.mark.parametrize("credentials", ["permanent", "temporary"])
def test_a_signed_url_carries_a_bewit_that_mohawk_verifies(server, credentials):
    creds = PERMANENT if credentials == "permanent" else temporary()
    client = queue(server, credentials=creds)
    url = client.buildSignedUrl("getLatestArtifact", "abc", "public/logs/live.log", expiration=60)
    base, bewit = url.split("?bewit=")
    assert base == server.url + "/api/queue/v1/task/abc/artifacts/public%2Flogs%2Flive.log"
    assert "=" not in bewit
    key = (CLIENTS["tester"] if credentials == "permanent"
           else derived_token(CLIENTS["issuer"], json.loads(creds["certificate"])["seed"]))
    assert mohawk.bewit.check_bewit(f"{base}?bewit={unpadded_to_standard(bewit)}",
                                    lambda cid: {"id": cid, "key": key, "algorithm": "sha256"})
    parsed = mohawk.bewit.parse_bewit(unpadded_to_standard(bewit))
    assert 55 <= int(parsed.expiration) - time.time() <= 61


@pytest.mark.parametrize("credentials", ["permanent", "temporary"])
def test_the_server_accepts_a_signed_url_and_refuses_it_once_altered(server, credentials):
    creds = PERMANENT if credentials == "permanent" else temporary(name="reader")
    url = queue(server, credentials=creds, authorizedScopes=["queue:get-artifact:*"]).buildSignedUrl(
        "getLatestArtifact", "abc", "public/x.log")
    assert requests.get(url).status_code == 200
    assert requests.get(url.replace("/abc/", "/abd/")).status_code == 401
    accepted, altered = server.requests
    assert (accepted.auth_error, accepted.client_id) == (None, creds["clientId"])
    assert accepted.ext["authorizedScopes"] == ["queue:get-artifact:*"]
    assert "MacMismatch" in altered.auth_error


def test_a_signed_url_defaults_to_fifteen_minutes_and_keeps_the_query(server):
    url = queue(server, credentials=PERMANENT).buildSignedUrl("listTaskGroup", "g", query={"limit": 2})
    assert "/task-group/g/list?limit=2&bewit=" in url
    parsed = mohawk.bewit.parse_bewit(unpadded_to_standard(url.split("bewit=")[1]))
    assert 895 <= int(parsed.expiration) - time.time() <= 901
    assert base64.urlsafe_b64decode(parsed.ext) == b"{}"


def test_a_signed_url_without_credentials_says_what_is_missing(server):
    with pytest.raises(tcpulse.TaskclusterAuthFailure, match="Queue.task: buildSignedUrl needs credentials"):
        queue(server).buildSignedUrl("task", "abc")


def test_500_500_200_succeeds_on_the_third_call_after_growing_delays(server, caplog):
    server.script = [(500, {"message": "boom"}), (502, {}), (200, {"ok": 1})]
    with caplog.at_level(logging.WARNING, logger="tcpulse.client"):
        assert queue(server, maxRetries=5).task("abc") == {"ok": 1}
    first, second, third = (seen.arrived for seen in server.requests)
    assert len(server.requests) == 3
    # Lower bounds only (a busy machine only adds time): the second wait is at least 0.15 s,
    # more than the first can ever be (0.1 s + 25 %).
    assert second - first >= 0.075 and third - second >= 0.15
    assert "retrying in" in caplog.text and "attempt 2 of 6" in caplog.text and "attempt 3 of 6" in caplog.text


@pytest.mark.parametrize("retry, low, middle, high", [
    (1, 0.075, 0.1, 0.125), (2, 0.15, 0.2, 0.25), (5, 1.2, 1.6, 2.0), (9, 19.2, 25.6, 30.0), (12, 30.0, 30.0, 30.0),
])
def test_backoff_doubles_from_a_tenth_of_a_second_with_a_quarter_jitter_capped_at_thirty(retry, low, middle, high):
    delays = [tcpulse.calculateSleepTime(retry, rand=lambda r=r: r) for r in (0.0, 0.5, 1.0)]
    assert delays == pytest.approx([low, middle, high])


def test_a_dropped_connection_is_retried_on_a_new_connection(server):
    server.script = [(DROP, None)]
    assert queue(server).task("abc") == {"path": "/api/queue/v1/task/abc"}
    assert len(server.requests) == 2 and server.connections == 2


def test_a_server_error_on_the_last_attempt_is_raised_with_its_message(server):
    server.script = [(500, {"message": "still broken"})] * 2
    with pytest.raises(tcpulse.TaskclusterRestFailure, match="HTTP 500 Internal Server Error: still broken") as caught:
        queue(server, maxRetries=1).task("abc")
    assert caught.value.status_code == 500 and len(server.requests) == 2


def test_a_404_is_called_once_and_carries_status_and_server_message(server):
    server.script = [(404, {"message": "Task not found", "code": "ResourceNotFound"})]
    with pytest.raises(tcpulse.TaskclusterRestFailure, match="Queue.task: HTTP 404 Not Found: Task not found") as caught:
        queue(server).task("abc")
    assert caught.value.status_code == 404
    assert caught.value.body == {"message": "Task not found", "code": "ResourceNotFound"}
    assert len(server.requests) == 1


def test_a_refused_port_raises_connection_error_after_max_retries_plus_one_attempts(caplog, mocker):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = tcpulse.Queue({"rootUrl": f"http://127.0.0.1:{port}", "maxRetries": 2})
    attempts = mocker.spy(client.session, "send")
    with caplog.at_level(logging.WARNING, logger="tcpulse.client"):
        with pytest.raises(tcpulse.TaskclusterConnectionError, match=r"Queue.task: connection refused \(ConnectionError on GET "
                                                                       r"http://127.0.0.1:\d+/api/queue/v1/task/abc\), "
                                                                       r"after 3 attempt\(s\)") as caught:
            client.task("abc")
    assert caplog.text.count("retrying in") == 2 and attempts.call_count == 3
    assert caught.value.__cause__ is caught.value.superExc


def test_a_hanging_server_hits_the_timeout(server):
    server.delay = 2.0
    with pytest.raises(tcpulse.TaskclusterConnectionError, match=r"no answer within 0.2 s \(ReadTimeout"):
        queue(server, timeout=0.2, maxRetries=0).task("abc")
    assert len(server.requests) == 1


def test_fifty_sequential_calls_on_one_client_use_one_connection(server):
    client = queue(server, credentials=PERMANENT)
    for number in range(50):
        client.task(f"t{number}")
    assert len(server.requests) == 50 and server.connections == 1
    assert all(seen.auth_error is None for seen in server.requests)


def test_one_client_can_be_shared_by_threads(server):
    from concurrent.futures import ThreadPoolExecutor

    client = queue(server, credentials=PERMANENT)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: client.task(f"t{n}"), range(40)))
    assert [r["path"] for r in results] == [f"/api/queue/v1/task/t{n}" for n in range(40)]
    assert server.connections <= 4 and all(seen.auth_error is None for seen in server.requests)


def test_no_credential_appears_in_logs_exceptions_or_reprs(server, caplog):
    creds = temporary(name="leak-check")
    client = queue(server, credentials=creds, authorizedScopes=["queue:x"], maxRetries=1)
    server.script = [(500, {}), (200, {}), (401, {"message": "nope"})]
    secrets = [creds["accessToken"], CLIENTS["issuer"], json.loads(creds["certificate"])["signature"]]
    texts = []
    with caplog.at_level(logging.DEBUG):  # every logger: tcpulse, mohawk, urllib3
        client.task("abc")
        signed = client.buildSignedUrl("task", "abc")
        with pytest.raises(tcpulse.TaskclusterAuthFailure) as caught:
            client.task("abc")
    secrets += [signed.split("bewit=")[1]]
    secrets += [seen.headers["Authorization"].split('mac="')[1].split('"')[0] for seen in server.requests]
    texts += [caplog.text, str(caught.value), repr(caught.value), repr(client), str(client),
              repr(client._credentials), str(Credentials.from_option(creds))]
    assert "retrying in" in caplog.text and "GET" in caplog.text
    for secret in secrets:
        assert all(secret not in text for text in texts)


def test_debug_taskcluster_client_turns_on_debug_logging():
    code = "import logging, tcpulse.client; print(logging.getLogger('tcpulse.client').level)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         env={"DEBUG_TASKCLUSTER_CLIENT": "1", "PATH": ""})
    assert out.stdout.strip() == str(logging.DEBUG), out.stderr


def test_proxy_settings_are_read_from_the_environment_when_the_client_is_built(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert tcpulse.Queue({"baseUrl": "http://queue.invalid/v1", "maxRetries": 0}).ping() == {"path": "/v1/ping"}
