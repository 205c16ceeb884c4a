"""The command line's side of schema validation and samples, through real subprocesses:
`tcpulse listen --validate` and `tcpulse publish --sample EXCHANGE field=value`."""
import json
from typing import List

import pytest

from tcpulse import Listener, QueueEvents
from tcpulse.testing import sample
from listenerkit import GUEST, running, wait_for
from test_cli import tcpulse
from test_validation import drifted, reference_errors

COMPLETED = QueueEvents.taskCompleted
SCRIPT = '''
import tcpulse

@tcpulse.on(tcpulse.QueueEvents.taskCompleted)
def completed(event):
    print("handled", event.fields["taskId"], flush=True)
'''


def recording(tmp_path, bodies) -> str:
    path = tmp_path / "messages.jsonl"
    lines = []
    for event, body in bodies:
        lines.append(json.dumps({"exchange": COMPLETED.exchange, "routing_key": event.routing_key, "routes": [],
                                 "body": body}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("mode, handled, dead", [("dead-letter", 1, 1), ("warn", 2, 0), (None, 2, 0)])
def test_listen_validate_checks_bodies_as_asked(tmp_path, mode, handled, dead):
    script = tmp_path / "watch.py"
    script.write_text(SCRIPT)
    good, old = sample(COMPLETED), sample(COMPLETED)
    replay = recording(tmp_path, [(old, drifted(old.body)), (good, good.body)])
    flags = ["--validate", mode] if mode else []
    done = tcpulse("listen", str(script), "--broker", "memory://", "--replay", replay, "--exit-when-idle", *flags)
    assert done.returncode == 0, done.stderr
    assert len([line for line in done.stdout.splitlines() if line.startswith("handled")]) == handled
    assert f"dead-lettered {dead}" in done.stdout.splitlines()[-1]
    problem = "$.status: required property 'taskQueueId' is missing (rule: required)"
    assert (problem in done.stderr) == (mode is not None), done.stderr


def test_listen_validate_refuses_an_unknown_mode(tmp_path):
    script = tmp_path / "watch.py"
    script.write_text(SCRIPT)
    done = tcpulse("listen", str(script), "--validate", "strict")
    assert done.returncode == 2 and "invalid choice: 'strict'" in done.stderr


@pytest.mark.rabbitmq
def test_publish_sample_sends_a_schema_valid_body_whose_key_carries_the_fields(pulse_user, taskcluster_exchanges,
                                                                             unique_name):
    app = Listener(broker=pulse_user.url, validate="dead-letter")
    seen: List = []
    app.add_handler(seen.append, COMPLETED, taskGroupId=unique_name)
    with running(app):
        done = tcpulse("publish", "--sample", "QueueEvents.taskCompleted", f"taskGroupId={unique_name}",
                       "runId=3", "--route", "index.sample", "--broker", GUEST)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: seen, what="the sample")
    [event] = seen
    assert event.fields["taskGroupId"] == unique_name and event.fields["runId"] == "3"
    assert event.routes == ["index.sample"] and event.body["runId"] == 3
    assert reference_errors(COMPLETED.schema, event.body) == []
    assert done.stdout.startswith(f"published 1 message to {COMPLETED.exchange} with key primary.")


def test_publish_sample_refuses_a_misspelt_field_and_a_routing_key():
    done = tcpulse("publish", "--sample", "QueueEvents.taskCompleted", "taskGroupID=g", "--broker", GUEST)
    assert done.returncode == 2 and "Did you mean 'taskGroupId'?" in done.stderr
    done = tcpulse("publish", "--sample", "QueueEvents.taskCompleted", "--routing-key", "primary.x", "--broker", GUEST)
    assert done.returncode == 2 and "--sample builds the routing key from field=value words" in done.stderr
