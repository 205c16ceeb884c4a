"""The `tcpulse` console script, run for real in subprocesses: every subcommand's success path,
exit code 2 with one line for bad usage, exit code 1 with one line for an unreachable broker."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import kombu
import pytest

from conftest import rabbitmqctl
from listenerkit import delete_listener_topology

REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"
WATCHER = str(REPO / "examples" / "task_group_watcher.py")
GROUP_FILE = str(REPO / "examples" / "messages" / "task-group.jsonl")
COMPLETED = "exchange/taskcluster-queue/v1/task-completed"
KEY = "primary.t1.0.wg.w1.aws.b-linux.sched.g1._"
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1//"
SAMPLE_GROUP = "Q2ZlV3k3QmWq2RvdcYxWFA"
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))},
       "PYTHONUNBUFFERED": "1"}


def tcpulse(*args, timeout=60):
    return subprocess.run([str(TCPULSE), *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO)


def assert_fails(done, code, text):
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.startswith("tcpulse: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["listen", "exchanges", "routing-key", "bindings", "publish", "record", "replay",
                                     "dead-letters"])
def test_every_command_has_help_with_an_example(command):
    done = tcpulse(command, "--help")
    assert done.returncode == 0 and "example:\n  tcpulse " + command in done.stdout


def test_exchanges_lists_every_exchange_with_its_routing_key_fields():
    everything = tcpulse("exchanges").stdout
    queue = tcpulse("exchanges", "QueueEvents").stdout.splitlines()
    assert "GithubEvents.push  exchange/taskcluster-github/v1/push" in everything
    assert queue[0] == "QueueEvents.taskDefined  exchange/taskcluster-queue/v1/task-defined"
    assert queue[1].strip() == ("primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>."
                                "<workerType>.<schedulerId>.<taskGroupId>.<reserved.#>")


def test_an_unknown_exchange_class_is_a_usage_error_with_a_suggestion():
    assert_fails(tcpulse("exchanges", "QueueEvent"), 2, "'QueueEvent' is not an exchange class. Did you mean 'QueueEvents'?")


def test_routing_key_prints_a_pattern_or_a_concrete_key():
    assert tcpulse("routing-key", "QueueEvents.taskCompleted", "taskGroupId=g1").stdout == "primary.*.*.*.*.*.*.*.g1.#\n"
    fields = ["taskId=t1", "runId=0", "workerGroup=wg", "workerId=w1", "provisionerId=aws", "workerType=b-linux",
              "schedulerId=sched", "taskGroupId=g1"]
    assert tcpulse("routing-key", "QueueEvents.taskCompleted", *fields, "--publish").stdout == KEY + "\n"
    assert tcpulse("routing-key", "exchange/taskcluster-queue/v1/task-completed", *fields).stdout == KEY + "\n"


@pytest.mark.parametrize("args, message", [
    (["QueueEvents.taskComplete"], "Did you mean 'QueueEvents.taskCompleted'?"),
    (["QueueEvents.taskCompleted", "taskGroupID=g"], "'taskGroupID' is not a routing-key field of QueueEvents.taskCompleted"),
    (["QueueEvents.taskCompleted", "taskGroupId"], "expected field=value, such as taskGroupId=abc (got 'taskGroupId')"),
    (["QueueEvents.taskCompleted", "taskId=t", "--publish"], "needs every required field for a routing key; missing: runId"),
])
def test_routing_key_usage_errors_are_one_line_with_exit_code_2(args, message):
    assert_fails(tcpulse("routing-key", *args), 2, message)


def test_bindings_prints_the_scripts_exchange_and_pattern_pairs_without_connecting():
    done = tcpulse("bindings", WATCHER)
    assert done.returncode == 0
    assert done.stdout.splitlines() == [f"exchange/taskcluster-queue/v1/task-{kind}  primary.*.*.*.*.*.*.*.Q2ZlV3k3QmWq2RvdcYxWFA.#"
                                        for kind in ("completed", "failed", "exception")]


def test_a_missing_script_is_a_usage_error():
    assert_fails(tcpulse("bindings", "nope.py"), 2, "nope.py: no such file")
    assert_fails(tcpulse("listen", "nope.py", "--broker", "memory://"), 2, "nope.py: no such file")


def test_a_missing_or_malformed_recording_is_a_usage_error_naming_the_line(tmp_path):
    assert_fails(tcpulse("replay", str(tmp_path / "gone.jsonl")), 2, "gone.jsonl: no such file")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(Path(GROUP_FILE).read_text().splitlines()[0] + "\n{\"exchange\": \"x\",\n")
    assert_fails(tcpulse("replay", str(bad), "--broker", UNREACHABLE), 2, "bad.jsonl line 2: not valid JSON")
    assert_fails(tcpulse("listen", WATCHER, "--broker", "memory://", "--replay", str(bad)), 2, "bad.jsonl line 2")


@pytest.mark.parametrize("args", [
    ["publish", "QueueEvents.taskCompleted", "--routing-key", KEY],
    ["replay", GROUP_FILE],
    ["record", "QueueEvents.taskCompleted", "--out", "/dev/null", "--count", "1"],
    ["listen", WATCHER],
])
def test_an_unreachable_broker_fails_fast_with_exit_code_1_and_one_line(args):
    started = time.monotonic()
    done = tcpulse(*args, "--broker", UNREACHABLE, timeout=30)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tcpulse: error: ") and "127.0.0.1:1" in last and "Traceback" not in done.stderr
    assert "guest:guest" not in done.stderr
    print(f"{args[0]} gave up after {time.monotonic() - started:.1f} s")


@pytest.mark.rabbitmq
def test_record_into_a_path_that_cannot_be_written_is_a_usage_error(rabbitmq, tmp_path):
    assert_fails(tcpulse("record", "QueueEvents.taskCompleted", "--out", str(tmp_path / "no" / "such" / "dir.jsonl"),
                         "--broker", rabbitmq), 2, "dir.jsonl: cannot be written (No such file or directory)")


def test_publish_usage_errors(tmp_path):
    assert_fails(tcpulse("publish", "QueueEvents.taskComplete", "--routing-key", KEY), 2, "is not a known exchange")
    assert_fails(tcpulse("publish", "QueueEvents.taskCompleted", "--routing-key", KEY, "--body", "[1]"), 2,
                 "--body: the body must be a JSON object (got list)")
    assert_fails(tcpulse("publish", "QueueEvents.taskCompleted", "--routing-key", KEY, "--body-file",
                         str(tmp_path / "none.json")), 2, "none.json: no such file")


def test_listen_replays_into_the_embedded_broker_and_prints_a_summary():
    done = tcpulse("listen", WATCHER, "--broker", "memory://", "--replay", GROUP_FILE, "--exit-when-idle")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["completed", "completed", "failed", "exception", "completed"]
    assert lines[-1] == ("received 5 messages; handled: task_group_watcher.completed 3, "
                         "task_group_watcher.failed 2; unmatched 0, retried 0, dead-lettered 0")


@pytest.mark.rabbitmq
def test_publish_and_replay_reach_rabbitmq_with_key_routes_and_body(rabbitmq, taskcluster_exchanges):
    own_key = KEY.replace("t1", uuid.uuid4().hex[:22])  # other tests publish to this exchange too
    with kombu.Connection(rabbitmq) as conn:
        exchange = kombu.Exchange(COMPLETED, type="topic")
        queue = kombu.Queue(f"tcpulse-cli-{uuid.uuid4().hex[:8]}", exchange, exclusive=True, channel=conn.channel(),
                            bindings=[kombu.binding(exchange, routing_key=own_key),
                                      kombu.binding(exchange, routing_key=f"primary.*.*.*.*.*.*.*.{SAMPLE_GROUP}.#")])
        queue.declare()
        done = tcpulse("publish", "QueueEvents.taskCompleted", "--routing-key", own_key, "--route", "index.a.b",
                       "--body", '{"n": 1}', "--broker", rabbitmq)
        assert done.returncode == 0 and done.stdout.startswith("published 1 message to " + COMPLETED)
        message = queue.get(no_ack=True)
        assert (message.payload, message.delivery_info["routing_key"], message.headers["CC"]) == \
            ({"n": 1}, own_key, ["route.index.a.b"])
        done = tcpulse("replay", GROUP_FILE, "--broker", rabbitmq)
        assert done.returncode == 0 and done.stdout.startswith("replayed 6 messages from ")
        expected = [json.loads(line) for line in Path(GROUP_FILE).read_text().splitlines()]
        wanted = [e["routing_key"] for e in expected if e["exchange"] == COMPLETED and SAMPLE_GROUP in e["routing_key"]]
        got = [queue.get(no_ack=True) for _ in wanted]
        assert [m.delivery_info["routing_key"] for m in got] == wanted
        assert got[0].headers["CC"] == ["route." + r for r in expected[0]["routes"]]


FLAKY = '''
from tcpulse import Listener, QueueEvents

app = Listener("flaky", retry_delays=(0.2,), max_attempts=3)


@app.on(QueueEvents.taskCompleted, taskGroupId="GROUP")
def flaky(event):
    print("flaky", event.attempt, event.fields["taskId"])
    if event.attempt == 1:
        raise ConnectionError("database down")


@app.on(QueueEvents.taskFailed, taskGroupId="GROUP")
def broken(event):
    print("broken", event.attempt)
    raise ValueError("always")
'''


def test_listen_on_memory_waits_for_retries_before_exiting_when_idle(tmp_path):
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY.replace("GROUP", SAMPLE_GROUP))
    done = tcpulse("listen", str(script), "--broker", "memory://", "--replay", GROUP_FILE, "--exit-when-idle")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(line for line in lines if line.startswith("flaky")) == sorted(
        f"flaky {attempt} {task}" for attempt in (1, 2)
        for task in ("Vj4tUqDCTWqRUhx_sYtT2A", "d3xRBj6jRPGcJxjbHvsxGA", "GCzF6DY2Sv2N6xGm1K8kZQ"))
    assert [line for line in lines if line.startswith("broken")] == ["broken 1", "broken 2", "broken 3"]
    # Four messages, each received once however often it was retried.
    assert lines[-1] == "received 4 messages; handled: flaky.flaky 3; unmatched 0, retried 5, dead-lettered 1"
    assert "queue/guest/flaky/dead-letter" in done.stderr


@pytest.mark.rabbitmq
def test_dead_letters_lists_and_requeues_what_a_listener_parked_on_rabbitmq(rabbitmq, taskcluster_exchanges, tmp_path):
    # A group of our own: other tests on this shared broker publish taskFailed messages too.
    group = uuid.uuid4().hex[:22]
    script = tmp_path / "flaky.py"
    script.write_text(FLAKY.replace("GROUP", group))
    name = f"flaky-{uuid.uuid4().hex[:8]}"
    one_failed = tmp_path / "failed.jsonl"
    one_failed.write_text(Path(GROUP_FILE).read_text().splitlines()[3].replace(SAMPLE_GROUP, group) + "\n")
    try:
        done = tcpulse("listen", str(script), "--queue", name, "--broker", rabbitmq, "--replay", str(one_failed),
                       "--exit-when-idle", "--idle-seconds", "1.5")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1].endswith("retried 2, dead-lettered 1")
        listed = tcpulse("dead-letters", name, "--broker", rabbitmq)
        assert listed.returncode == 0, listed.stderr
        records = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(records) == 1 and "failed 3 of 3 attempts" in json.dumps(records[0])
        requeued = tcpulse("dead-letters", name, "--requeue", "--broker", rabbitmq)
        assert requeued.returncode == 0 and "requeued 1 dead letter(s)" in requeued.stderr
    finally:
        delete_listener_topology(rabbitmq, "guest", name, retry_delays=(0.2,))
    left = [row for kind in ("queues", "exchanges") for row in rabbitmqctl(f"list_{kind}", "name").split()
            if row.startswith((f"queue/guest/{name}", f"exchange/guest/{name}"))]
    assert left == [], "the test left these on the broker"


@pytest.mark.rabbitmq
def test_a_long_replay_reports_progress_every_hundred_messages(rabbitmq, tmp_path):
    exchange = f"exchange/tcpulse-test/{uuid.uuid4().hex}"  # of its own: nothing else hears the 250
    line = json.loads(Path(GROUP_FILE).read_text().splitlines()[0])
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps({**line, "exchange": exchange}) + "\n") * 250)
    with kombu.Connection(rabbitmq) as conn:
        kombu.Exchange(exchange, type="topic")(conn.channel()).declare()
        try:
            done = tcpulse("replay", str(big), "--broker", rabbitmq)
        finally:
            conn.channel().exchange_delete(exchange)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["replayed 100 messages...", "replayed 200 messages..."]
    assert done.stdout == f"replayed 250 messages from {big} to amqp://guest:***@127.0.0.1:5672//\n"


@pytest.mark.rabbitmq
def test_declare_exchanges_lets_a_listener_start_on_a_bare_local_rabbitmq(rabbitmq, tmp_path):
    exchange = f"exchange/tcpulse-test/{uuid.uuid4().hex}"
    script = tmp_path / "own.py"
    script.write_text("import tcpulse\nfrom tcpulse._api.exchanges import Binding\n\n"
                      f"@tcpulse.on(Binding({exchange!r}, 'primary.#'))\n"
                      "def seen(event):\n    print('seen', event.routing_key)\n")
    recording = tmp_path / "one.jsonl"
    recording.write_text(json.dumps({"exchange": exchange, "routing_key": "primary.x", "body": {}}) + "\n")
    missing = tcpulse("listen", str(script), "--broker", rabbitmq)
    assert missing.returncode == 1
    assert f"exchange {exchange!r} does not exist on amqp://guest:***@" in missing.stderr.strip().splitlines()[-1]
    try:
        done = tcpulse("listen", str(script), "--broker", rabbitmq, "--declare-exchanges", "--replay", str(recording),
                       "--exit-when-idle")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "seen primary.x"
    finally:
        with kombu.Connection(rabbitmq) as conn:
            conn.channel().exchange_delete(exchange)


@pytest.mark.rabbitmq
def test_a_refused_login_is_exit_code_1_and_never_shows_the_password(rabbitmq):
    secret = "s3cr/et@%" + uuid.uuid4().hex[:6]
    done = tcpulse("publish", "QueueEvents.taskCompleted", "--routing-key", KEY,
                   "--broker", f"amqp://guest:{secret}@127.0.0.1:5672//")
    assert_fails(done, 1, "cannot connect to the broker at amqp://guest:***@127.0.0.1:5672//")
    assert secret not in done.stderr + done.stdout
