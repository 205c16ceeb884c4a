"""The pure modules, and `import tcpulse` with its routing keys, load neither kombu nor requests.

Each case runs in a fresh interpreter (from a temporary directory, so the installed package is
what gets imported) and reports which of the heavy packages ended up in `sys.modules`.
"""
import json
import os
import subprocess
import sys

import pytest

HEAVY = ("kombu", "amqp", "requests", "urllib3")

# One line per pure module; a new pure module adds its line here.
PURE_MODULES = [
    "tcpulse.errors",
    "tcpulse.references",
    "tcpulse.references.records",
    "tcpulse.references.sets",
    "tcpulse.references.pull",
    "tcpulse.references.compare",
    "tcpulse._api.exchanges",
    "tcpulse._api.binding",
    "tcpulse._listen.dispatch",
    "tcpulse._ops.metrics",
    "tcpulse._listen.outcome",
    "tcpulse.utils",
    "tcpulse._listen.running",
    "tcpulse._listen.messages",
    "tcpulse._listen.shutdown",
    "tcpulse._rest.clientcore",
    "tcpulse._rest.calls",
    "tcpulse._rest.options",
]

REPORT = f"""
import json, sys
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
"""


def heavy_modules_after(code: str, tmp_path) -> list:
    done = subprocess.run([sys.executable, "-c", code + REPORT], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("module", PURE_MODULES)
def test_a_pure_module_imports_neither_kombu_nor_requests(module, tmp_path):
    assert heavy_modules_after(f"import {module}", tmp_path) == []


def test_import_tcpulse_and_building_bindings_imports_neither_kombu_nor_requests(tmp_path):
    code = """
import tcpulse
pattern = tcpulse.QueueEvents.taskCompleted(taskGroupId="g")["routingKeyPattern"]
assert pattern == "primary.*.*.*.*.*.*.*.g.#", pattern
assert tcpulse.QueueEvents(exchangePrefix="exchange/x/v1/").taskCompleted().exchange == "exchange/x/v1/task-completed"
assert len(tcpulse.exchanges()) > 20
assert "QueueEvents" in dir(tcpulse)
"""
    assert heavy_modules_after(code, tmp_path) == []


def test_tcpulse_exchanges_stays_the_function_after_the_submodule_is_imported(tmp_path):
    code = """
import tcpulse._api.exchanges
from tcpulse._api.exchanges import find_exchange
import tcpulse
assert len(tcpulse.exchanges()) > 20
assert find_exchange("QueueEvents.taskCompleted").name == "taskCompleted"
"""
    assert heavy_modules_after(code, tmp_path) == []


def test_import_tcpulse_loads_neither_aiohttp_nor_asyncio_as_importtime_shows(tmp_path):
    # -X importtime lists every module the import loads, even ones a test could not see in
    # sys.modules (a module imported and deleted again).
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import tcpulse; from tcpulse import Listener, Event; import tcpulse.testing"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "tcpulse._api.exchanges" in loaded and "tcpulse._listen.running" in loaded  # the check sees our own modules
    assert [m for m in loaded if m.split(".")[0] in ("asyncio", "aiohttp", "_asyncio")] == []


def test_options_from_environment_does_not_load_mohawk(tmp_path):
    code = """
import os, sys
os.environ["TASKCLUSTER_ROOT_URL"] = "https://tc.example.com/"
import tcpulse
assert tcpulse.optionsFromEnvironment() == {"rootUrl": "https://tc.example.com"}
print("mohawk" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TASKCLUSTER_")})
    assert (done.returncode, done.stdout, done.stderr) == (0, "False\n", "")
