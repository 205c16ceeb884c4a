"""examples/worker_pool_watcher.py, which listens to WorkerManagerEvents (an exchange class of
today's references only), and its recording, whose bodies follow today's message schemas."""
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcpulse._api.exchanges import exchange_named
from tcpulse._ops.recording import read
from tcpulse.references import BUNDLED, open_set

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WATCHER = str(EXAMPLES / "worker_pool_watcher.py")
RECORDING = str(EXAMPLES / "messages" / "worker-pool.jsonl")
SCHEMAS = open_set(BUNDLED).root / "schemas" / "worker-manager"
OUTPUT = [
    "running  us-east-1/i-0a1b2c3d4e5f60718 capacity 1 (1 running)",
    "running  us-west-2/i-09f8e7d6c5b4a3921 capacity 1 (2 running)",
    "stopped  us-east-1/i-0a1b2c3d4e5f60718 after 87 min (1 running)",
    "removed  us-west-2/i-09f8e7d6c5b4a3921: terminateAfter time exceeded",
    "stopped  us-west-2/i-09f8e7d6c5b4a3921 after 120 min (0 running)",
]


def test_the_watcher_follows_its_pools_workers_and_ignores_other_pools(tcpulse_harness, monkeypatch, capsys):
    monkeypatch.delenv("WORKER_POOL", raising=False)
    app = tcpulse_harness.load(WATCHER)
    results = tcpulse_harness.deliver_file(app, RECORDING)
    assert [r.ran for r in results] == [
        ["worker_pool_watcher.running"], ["worker_pool_watcher.running"], [],
        ["worker_pool_watcher.stopped"], ["worker_pool_watcher.removed"], ["worker_pool_watcher.stopped"]]
    assert all(r.acked for r in results)
    assert capsys.readouterr().out.splitlines() == OUTPUT


def test_the_watcher_runs_from_the_command_line_on_the_embedded_broker():
    done = subprocess.run([str(Path(sys.executable).parent / "tcpulse"), "listen", WATCHER, "--broker", "memory://",
                           "--replay", RECORDING, "--exit-when-idle"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k not in ("WORKER_POOL", "TCPULSE_REFERENCES")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:5] == OUTPUT


def resolve(ref: str, here: Path) -> dict:
    """The schema a `$ref` such as 'worker-full.json#/properties/capacity' points to."""
    name, _, pointer = ref.partition("#")
    node = json.loads((here / name).read_text(encoding="utf-8"))
    for part in filter(None, pointer.split("/")):
        node = node[part]
    return node


def problems(body: dict, schema: dict, here: Path) -> list:
    """What in `body` breaks `schema` (required, additionalProperties, and each property's type,
    pattern, length, minimum and date-time format)."""
    found = [f"missing {name}" for name in schema["required"] if name not in body]
    found += [f"unexpected {name}" for name in body if name not in schema["properties"]]
    types = {"string": str, "integer": int}
    for name, value in body.items():
        if name not in schema["properties"]:
            continue
        rule = schema["properties"][name]
        rule = resolve(rule["$ref"], here) if "$ref" in rule else rule
        if not isinstance(value, types[rule["type"]]):
            found.append(f"{name} is not {rule['type']}")
            continue
        if "pattern" in rule and not re.search(rule["pattern"], value):
            found.append(f"{name} does not match {rule['pattern']}")
        if not rule.get("minLength", 0) <= len(str(value)) <= rule.get("maxLength", 10 ** 6):
            found.append(f"{name} has a bad length")
        if rule["type"] == "integer" and value < rule.get("minimum", value):
            found.append(f"{name} is below {rule['minimum']}")
        if rule.get("format") == "date-time":
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return found


@pytest.mark.parametrize("message", list(read(RECORDING)), ids=lambda m: f"{m.exchange.rsplit('/', 1)[1]} {m.body['workerId']}")
def test_each_recorded_body_follows_its_exchanges_message_schema_and_routing_key(message):
    exchange = exchange_named(message.exchange)
    entry = next(e for e in open_set(BUNDLED).get("WorkerManagerEvents").entries if e.name == exchange.name)
    schema_file = SCHEMAS / entry.schema.split("#")[0]
    assert problems(message.body, json.loads(schema_file.read_text(encoding="utf-8")), schema_file.parent) == []
    fields = exchange.parse(message.routing_key)
    assert f"{fields['provisionerId']}/{fields['workerType']}" == message.body["workerPoolId"]
    assert (fields["providerId"], fields["workerGroup"], fields["workerId"], fields["launchConfigId"]) == (
        message.body["providerId"], message.body["workerGroup"], message.body["workerId"], message.body["launchConfigId"])


def test_the_schema_check_catches_a_body_that_does_not_follow_the_schema():
    schema_file = SCHEMAS / "v1" / "pulse-worker-message.json"
    body = {**next(iter(read(RECORDING))).body, "capacity": 0, "color": "red", "workerId": "a.b"}
    del body["timestamp"]
    assert problems(body, json.loads(schema_file.read_text(encoding="utf-8")), schema_file.parent) == [
        "missing timestamp", "unexpected color", "workerId does not match ^([a-zA-Z0-9-_]*)$", "capacity is below 1"]
