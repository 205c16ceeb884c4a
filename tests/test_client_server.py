"""The Hawk-verifying test server rejects what a real Taskcluster service would."""
from typing import Dict

import mohawk
import requests

from hawkserver import CLIENTS, server  # noqa: F401 - the fixture


def _signed(url: str, client_id: str, key: str, method: str = "GET", content: bytes = b"") -> Dict[str, str]:
    sender = mohawk.Sender({"id": client_id, "key": key, "algorithm": "sha256"}, url, method,
                           content=content, content_type="application/json" if content else "")
    return {"Authorization": sender.request_header}


def test_the_test_server_accepts_a_request_signed_by_a_known_client(server):
    url = server.url + "/api/queue/v1/ping"
    assert requests.get(url, headers=_signed(url, "tester", CLIENTS["tester"])).status_code == 200
    assert server.requests[0].client_id == "tester" and server.requests[0].auth_error is None


def test_the_test_server_rejects_a_wrong_key_and_a_signature_for_another_path(server):
    url = server.url + "/api/queue/v1/ping"
    assert requests.get(url, headers=_signed(url, "tester", "wrong")).status_code == 401
    other = server.url + "/api/queue/v1/other"
    assert requests.get(url, headers=_signed(other, "tester", CLIENTS["tester"])).status_code == 401
    assert all("MacMismatch" in seen.auth_error for seen in server.requests)


def test_the_test_server_counts_one_connection_for_keep_alive_requests(server):
    with requests.Session() as session:
        for _ in range(3):
            session.get(server.url + "/x")
    assert server.connections == 1


def test_the_test_server_refuses_a_replayed_request(server):
    url = server.url + "/api/queue/v1/ping"
    headers = _signed(url, "tester", CLIENTS["tester"])
    assert requests.get(url, headers=headers).status_code == 200
    assert requests.get(url, headers=headers).status_code == 401
    assert "AlreadyProcessed" in server.requests[1].auth_error
