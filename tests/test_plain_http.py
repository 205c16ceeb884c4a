"""`tcpulse.utils.makeHttpRequest` and `putFile` against a real local server, scenario by scenario
beside the official client's (taskcluster 113.x, in its own interpreter) as the control: what
is retried, how many requests the server saw and with which bodies, what comes back."""
import json
import subprocess
import sys
from typing import Any, Dict, List

import pytest
import requests

import tcpulse
from hawkserver import DROP, running, HawkServer

PROBE = r"""
import importlib, json, sys
package, kind, url, path = sys.argv[1:5]
utils = importlib.import_module(package + ".utils")
try:
    if kind == "put":
        response = utils.putFile(path, url, "text/plain")
    else:
        with open(path, "rb") as payload:
            response = utils.makeHttpRequest("post", url, payload, {"Content-Type": "text/plain"}, retries=2)
    print(json.dumps({"status": response.status_code, "body": response.text}))
except Exception as exc:
    print(json.dumps({"raised": type(exc).__name__}))
"""

SCENARIOS = {
    "a 500 then a success": ("post", [(500, {"message": "busy"}), (200, {"ok": 1})]),
    "a dropped connection then a success": ("post", [(DROP, None), (201, {"ok": 2})]),
    "a 404 is the answer": ("post", [(404, {"message": "no"})]),
    "every try a 503: the last answer": ("post", [(503, {"n": 1}), (503, {"n": 2}), (503, {"n": 3})]),
    "every try dropped": ("post", [(DROP, None)] * 3),
    "putFile retries a 502 and sends the whole file again": ("put", [(502, {}), (200, {"stored": True})]),
}


def observe(python: str, package: str, scenario: str, tmp_path: Any) -> Dict[str, Any]:
    kind, script = SCENARIOS[scenario]
    path = tmp_path / "payload.txt"
    path.write_bytes(b"line\n" * 20_000)
    with running(HawkServer()) as server:
        server.script = list(script)
        done = subprocess.run([python, "-c", PROBE, package, kind, server.url + "/thing", str(path)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        seen: List[Any] = [(s.method, s.path, len(s.body), s.headers.get("Content-Type"),
                            "Authorization" in s.headers) for s in server.requests]
    return {"outcome": json.loads(done.stdout), "requests": seen}


@pytest.fixture(scope="module")
def observed(current_official_python, tmp_path_factory) -> Dict[str, Any]:
    """Each scenario run once with tcpulse and once with the official client."""
    folder = tmp_path_factory.mktemp("plain-http")
    return {name: (observe(sys.executable, "tcpulse", name, folder),
                   observe(current_official_python, "taskcluster", name, folder)) for name in SCENARIOS}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_make_http_request_and_put_file_behave_as_the_officials(observed, scenario):
    ours, official = observed[scenario]
    assert ours == official
    assert ours["requests"] and all(length == 100_000 for _, _, length, _, _ in ours["requests"])


def test_what_the_scenarios_show(observed):
    shown = {name: ours for name, (ours, _) in observed.items()}
    assert shown["a 500 then a success"]["outcome"] == {"status": 200, "body": '{"ok": 1}'}
    assert len(shown["a dropped connection then a success"]["requests"]) == 2
    assert len(shown["a 404 is the answer"]["requests"]) == 1
    assert shown["every try a 503: the last answer"]["outcome"]["status"] == 503
    assert shown["every try dropped"]["outcome"] == {"raised": "ConnectionError"}
    assert [r[0] for r in shown["putFile retries a 502 and sends the whole file again"]["requests"]] == ["PUT", "PUT"]


def test_a_given_session_is_used_and_left_open():
    with running(HawkServer()) as server:
        session = tcpulse.createSession()
        response = tcpulse.makeHttpRequest("get", server.url + "/x", None, {}, session=session)
        assert response.json() == {"path": "/x"} and server.connections == 1
        assert tcpulse.makeHttpRequest("get", server.url + "/y", None, {}, session=session).ok
        assert server.connections == 1  # the same pooled connection: the session was not closed
        session.close()
    assert isinstance(response, requests.Response)
