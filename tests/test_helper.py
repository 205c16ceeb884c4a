"""tcpulse.helper answers as the official client's helper (taskcluster 113.x, the control) in
every scenario of tests/fixtures/official_client/helper_probe.py: credentials explicit, from the
environment, through a task's proxy, or none; service clients; secrets fetched from a real
(fake) Secrets service with Hawk, narrowed by prefixes, checked for required keys, or local.
Where the official helper fails, tcpulse fails too, with a message that says what was expected."""
import doctest
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

import tcpulse
import tcpulse.helper
from fixtures.official_client.helper_probe import scenarios
from hawkserver import HawkServer, Seen, running

PROBE = Path(__file__).parent / "fixtures" / "official_client" / "helper_probe.py"
SECRET = {"common": {"TOKEN": "common-token", "LEVEL": 1}, "app": {"LEVEL": 3, "URL": "https://app"},
          "TOP": "top-level"}


class SecretsService(HawkServer):
    def __init__(self) -> None:
        super().__init__()
        self.responder = self.secret

    def secret(self, seen: Seen) -> Any:
        if seen.method == "GET" and seen.path == "/api/secrets/v1/secret/project%2Fapp" and seen.client_id == "tester":
            return 200, {"secret": SECRET, "expires": "2030-01-01T00:00:00.000Z"}
        return 403, {"message": f"{seen.client_id} may not {seen.method} {seen.path}"}


@pytest.fixture(scope="module")
def secrets_service():
    with running(SecretsService()) as srv:
        yield srv


def answers(python: str, package: str, root: str) -> List[Any]:
    done = subprocess.run([python, str(PROBE), package, root], capture_output=True, text=True, timeout=120,
                          cwd=str(PROBE.parent))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def both(secrets_service, current_official_python):
    return (answers(sys.executable, "tcpulse", secrets_service.url),
            answers(current_official_python, "taskcluster", secrets_service.url))


@pytest.mark.parametrize("index", range(len(scenarios("ROOT"))))
def test_the_helper_answers_as_the_officials(both, index):
    ours, official = both[0][index], both[1][index]
    if "raised" in official:
        assert "raised" in ours, ours
    else:
        assert ours == official


def test_the_scenarios_cover_every_kind_of_answer(both):
    official = both[1]
    assert {next(iter(answer)) for answer in official} == {"options", "class", "secrets", "raised"}
    assert sum("raised" in answer for answer in official) == 5


def test_failures_say_what_was_expected(both):
    messages = [answer["message"] for answer in both[0] if "raised" in answer]
    assert messages == [
        "ClientUsageError: TaskclusterConfig needs a deployment: pass url=... or set TASKCLUSTER_ROOT_URL",
        "ClientUsageError: get_service: 'no-such-service' is not a Taskcluster service of the active reference set "
        "(services: auth, github, hooks, index, notify, object, purgecache, queue, secrets, webserver, workermanager)",
        "TaskclusterFailure: Missing value TOKEN in secrets under app (secret 'project/app').",
        "TaskclusterFailure: Missing value MISSING in secrets (secret 'project/app').",
        "ClientUsageError: load_secrets needs a secret_name (or local_secrets, a dict)",
    ]


def test_get_service_also_finds_services_with_inner_capitals():
    config = tcpulse.helper.TaskclusterConfig("https://tc.example.com")
    assert type(config.get_service("workerManager")).__name__ == "WorkerManager"
    assert type(config.get_service("PurgeCache")).__name__ == "PurgeCache"


def test_the_repr_never_shows_the_access_token():
    config = tcpulse.helper.TaskclusterConfig("https://tc.example.com")
    config.auth(client_id="me", access_token="hunter2-secret")
    assert repr(config) == "TaskclusterConfig('https://tc.example.com', clientId='me')"


@pytest.mark.parametrize("module", ["helper", "_rest.uploading"])
def test_the_docstring_examples_run(module):
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(f"tcpulse.{module}"))
    assert failures == 0 and tried > 0
