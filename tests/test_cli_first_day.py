"""First-day friction of the command line (issue 12, items 13, 14, 16, 17, 18, 19), through real
subprocesses of the console script: which broker a bad URL came from, missing and misspelt
exchanges, the delivery flags of `listen`, `record` surviving a closed connection, commands that
said nothing or succeeded pointlessly, and a summary that reads right."""
import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

import kombu
import pytest

from tcpulse import Listener, QueueEvents
from conftest import rabbitmqctl
from listenerkit import Publisher, delete_listener_topology, running, task_key, wait_for
from test_cli import ENV, GROUP_FILE, KEY, REPO, TCPULSE, WATCHER, assert_fails, tcpulse

BAD_URL = "amqp//alice:S3cretPw@127.0.0.1:5672"
COMPLETED = QueueEvents.taskCompleted


def tcpulse_with(env, *args, timeout=60):
    return subprocess.run([str(TCPULSE), *args], capture_output=True, text=True, timeout=timeout,
                          env={**ENV, **env}, cwd=REPO)


# -- 13: where a bad broker URL came from ----------------------------------------------------

def test_a_bad_pulse_url_is_reported_as_pulse_url_not_as_the_scripts_load_failure():
    done = tcpulse_with({"PULSE_URL": BAD_URL}, "listen", WATCHER)
    assert_fails(done, 2, "tcpulse: error: PULSE_URL: broker URL must look like amqp://user:password@host:5672//")
    assert "failed to load" not in done.stderr and "S3cretPw" not in done.stderr


def test_the_broker_flag_overrides_a_bad_pulse_url():
    done = tcpulse_with({"PULSE_URL": BAD_URL}, "listen", WATCHER, "--broker", "memory://",
                        "--replay", GROUP_FILE, "--exit-when-idle")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("received 5 messages")


@pytest.mark.parametrize("command", [["listen", WATCHER], ["publish", "QueueEvents.taskCompleted", "--routing-key", KEY]])
def test_a_bad_broker_flag_is_reported_as_the_broker_flag_even_with_pulse_url_set(command):
    done = tcpulse_with({"PULSE_URL": "amqp://u:p@127.0.0.1:1//"}, *command, "--broker", "amqp//bob:Pw9@h")
    assert_fails(done, 2, "tcpulse: error: --broker: broker URL must look like")
    assert "Pw9" not in done.stderr


def test_a_listener_given_a_broker_ignores_a_bad_pulse_url_and_one_without_names_pulse_url(monkeypatch):
    monkeypatch.setenv("PULSE_URL", BAD_URL)
    assert Listener("w", broker="memory://").broker.is_memory
    app = Listener("w")  # built at a script's import: not an error until the broker is needed
    with pytest.raises(ValueError, match=r"^PULSE_URL: broker URL must look like .*\(got 'amqp//alice:\*\*\*@"):
        app.broker
    assert app.configure(broker="memory://").broker.is_memory
    with pytest.raises(ValueError, match=r"^Listener\(broker=\.\.\.\): broker URL must look like"):
        Listener("w", broker="amqp//x:y@h")


# -- 14: a missing or misspelt exchange ------------------------------------------------------

@pytest.mark.rabbitmq
def test_a_missing_exchange_on_the_command_line_names_the_declare_exchanges_flag(rabbitmq, tmp_path):
    exchange = f"exchange/tcpulse-test/{uuid.uuid4().hex}"
    script = tmp_path / "own.py"
    script.write_text("import tcpulse\nfrom tcpulse._api.exchanges import Binding\n\n"
                      f"@tcpulse.on(Binding({exchange!r}, 'primary.#'))\ndef seen(event):\n    pass\n")
    done = tcpulse("listen", str(script), "--broker", rabbitmq)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tcpulse: error: exchange {exchange!r} does not exist on amqp://guest:***@")
    assert last.endswith("(for local development, --declare-exchanges creates it)")
    assert "declare_exchanges=True" not in done.stderr


def test_a_misspelt_exchange_in_a_script_says_which_exchange_was_meant(tmp_path):
    script = tmp_path / "typo.py"
    script.write_text("import tcpulse\nfrom tcpulse import QueueEvents\n\n"
                      "@tcpulse.on(QueueEvents.taskComplete)\ndef done(event):\n    pass\n")
    assert_fails(tcpulse("listen", str(script), "--broker", "memory://"), 2,
                 "failed to load (line 4): AttributeError: 'taskComplete' is not an exchange of QueueEvents. "
                 "Did you mean 'taskCompleted'?")
    with pytest.raises(AttributeError, match="Did you mean 'taskFailed'"):
        QueueEvents().taskFaild


# -- 16: delivery flags of `listen` ----------------------------------------------------------

STUBBORN = '''
from tcpulse import Listener, QueueEvents

app = Listener("stubborn", max_attempts=5, retry_delays=(30,))


@app.on(QueueEvents.taskCompleted)
def always_fails(event):
    print("attempt", event.attempt, flush=True)
    raise ValueError("never works")
'''


def test_listen_flags_override_the_scripts_retry_options(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    one = tmp_path / "one.jsonl"
    one.write_text(Path(GROUP_FILE).read_text().splitlines()[0] + "\n")
    started = time.monotonic()
    done = tcpulse("listen", str(script), "--broker", "memory://", "--replay", str(one), "--exit-when-idle",
                   "--max-attempts", "3", "--retry-delays", "0.1,0.2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("attempt")] == ["attempt 1", "attempt 2", "attempt 3"]
    assert lines[-1] == "received 1 message; handled: none; unmatched 0, retried 2, dead-lettered 1"
    assert time.monotonic() - started < 25  # the script's own 30 s delay was not used


@pytest.mark.parametrize("flag,value,message", [
    ("--retry-delays", "5,soon", "argument --retry-delays: expected seconds separated by commas, such as 5,30,120 "
                                 "(got '5,soon')"),
    ("--max-attempts", "0", "argument --max-attempts: expected a whole number >= 1 (got '0')"),
    ("--max-length", "-3", "argument --max-length: expected a whole number >= 1 (got '-3')"),
])
def test_a_bad_delivery_flag_is_a_usage_error_naming_it(flag, value, message):
    done = tcpulse("listen", WATCHER, "--broker", "memory://", flag, value)
    assert done.returncode == 2 and message in done.stderr, done.stderr


@pytest.mark.rabbitmq
def test_listen_max_length_sets_the_queues_x_max_length(rabbitmq, unique_name):
    try:
        done = tcpulse("listen", WATCHER, "--broker", rabbitmq, "--queue", unique_name, "--max-length", "7",
                       "--concurrency", "2", "--prefetch", "3", "--exit-when-idle", "--idle-seconds", "0.2")
        assert done.returncode == 0, done.stderr
        rows = rabbitmqctl("list_queues", "name", "arguments", "--no-table-headers").splitlines()
        [row] = [r for r in rows if r.startswith(f"queue/guest/{unique_name}\t")]
        assert "x-max-length" in row and "7" in row
        assert "prefetch 3" in done.stderr
    finally:
        delete_listener_topology(rabbitmq, "guest", unique_name)


# -- 17: record survives a closed connection -------------------------------------------------

@pytest.mark.rabbitmq
def test_record_reconnects_when_its_connection_is_closed_and_goes_on(pulse_user, taskcluster_exchanges, tmp_path):
    group = uuid.uuid4().hex[:22]
    out = tmp_path / "recorded.jsonl"
    env = {**ENV, "PULSE_URL": pulse_user.url}
    process = subprocess.Popen([str(TCPULSE), "record", "QueueEvents.taskCompleted", f"taskGroupId={group}",
                                "--out", str(out), "--count", "2", "--timeout", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        assert process.stderr.readline().startswith("recording 1 binding(s)")
        with Publisher() as publisher:
            publisher.publish(COMPLETED.exchange, task_key(taskGroupId=group, taskId="before"), {"n": 1})
            wait_for(lambda: out.exists() and out.read_text().count("\n") == 1, what="the first message recorded")
            assert pulse_user.close_connections() == 1
            publisher.publish(COMPLETED.exchange, task_key(taskGroupId=group, taskId="after"), {"n": 2})
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout == f"recorded 2 messages into {out}\n"
    assert "lost the connection to the broker (ConnectionForced" in stderr and "reconnected" in stderr
    assert [json.loads(line)["body"]["n"] for line in out.read_text().splitlines()] == [1, 2]


@pytest.mark.rabbitmq
def test_a_refusal_is_worded_as_a_refusal_not_a_lost_connection(rabbitmq, tmp_path):
    missing = f"exchange/tcpulse-test/{uuid.uuid4().hex}"
    done = tcpulse("record", missing, "--out", str(tmp_path / "r.jsonl"), "--timeout", "5", "--broker", rabbitmq)
    assert_fails(done, 1, "the broker at amqp://guest:***@127.0.0.1:5672// refused: ")
    assert "NOT_FOUND" in done.stderr and "lost" not in done.stderr


# -- 18: commands that said nothing, or succeeded pointlessly ---------------------------------

@pytest.mark.rabbitmq
def test_dead_letters_with_none_says_so(rabbitmq, unique_name):
    app = Listener(unique_name, broker=rabbitmq)
    app.on(COMPLETED, taskGroupId=unique_name)(lambda event: None)
    try:
        with running(app):
            pass
        done = tcpulse("dead-letters", unique_name, "--broker", rabbitmq)
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == ("", f"0 dead letters in queue/guest/{unique_name}/dead-letter\n")
    finally:
        delete_listener_topology(rabbitmq, "guest", unique_name)


@pytest.mark.parametrize("command", [
    ["publish", "QueueEvents.taskCompleted", "--routing-key", KEY],
    ["replay", GROUP_FILE],
    ["record", "QueueEvents.taskCompleted", "--out", "/dev/null", "--timeout", "1"],
    ["dead-letters", "watcher"],
])
def test_commands_that_need_a_second_process_refuse_the_embedded_broker_in_one_line(command):
    done = tcpulse(*command, "--broker", "memory://")
    assert_fails(done, 2, f"memory://: the embedded broker lives inside one process, so what `tcpulse {command[0]}` "
                          "does there vanishes when it exits; to try handlers on it, use `tcpulse listen SCRIPT "
                          "--broker memory:// --replay FILE`")
    assert done.stdout == ""


# -- 19: the listen summary and log on memory:// ---------------------------------------------

def test_the_listen_summary_and_log_on_memory_read_right(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(Path(GROUP_FILE).read_text().splitlines()[0] + "\n")
    done = tcpulse("listen", WATCHER, "--broker", "memory://", "--replay", str(one), "--exit-when-idle")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ("received 1 message; handled: task_group_watcher.completed 1; "
                                            "unmatched 0, retried 0, dead-lettered 0")
    assert "Transport://" not in done.stderr and "heartbeat None" not in done.stderr
    assert "consuming from memory:// (prefetch 10)\n" in done.stderr


def test_prefetched_messages_returned_after_sigterm_are_not_counted_as_received(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text("import time\nimport tcpulse\n\n@tcpulse.on(tcpulse.QueueEvents.taskCompleted)\n"
                      "def slow(event):\n    print('started', flush=True)\n    time.sleep(1)\n")
    five = tmp_path / "five.jsonl"
    five.write_text((Path(GROUP_FILE).read_text().splitlines()[0] + "\n") * 5)
    process = subprocess.Popen([str(TCPULSE), "listen", str(script), "--broker", "memory://", "--replay", str(five)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO)
    try:
        assert process.stdout.readline() == "started\n"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert stdout.splitlines()[-1] == "received 1 message; handled: slow.slow 1; unmatched 0, retried 0, dead-lettered 0"
