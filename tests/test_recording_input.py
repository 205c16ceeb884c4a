"""A recording is input like any other: streamed rather than loaded whole, and every bad line, of
whatever kind, is one short error naming the file and the line (through `tcpulse replay` and
`tcpulse listen --replay` too: one line on stderr, exit code 2, no traceback)."""
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from tcpulse._listen.outcome import MAX_DEPTH
from tcpulse._ops.recording import MAX_LINE, RecordingError, read

REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"
UNREACHABLE = "amqp://guest:guest@127.0.0.1:1//"
GOOD = json.dumps({"exchange": "exchange/taskcluster-queue/v1/task-completed", "routing_key": "primary.t",
                   "routes": ["index.a"], "body": {"status": {"taskId": "t"}}})
HUGE = "x" * (10 * 1024 * 1024)


def deep(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


BAD_LINES = [
    (b'{"exchange": "\xff\xfe", "routing_key": "k", "body": {}}', "m.jsonl line 3: not valid UTF-8 (byte 14)"),
    (b"\xc3", "m.jsonl line 3: not valid UTF-8 (byte 0)"),
    (deep(1000).encode(), f"m.jsonl line 3: JSON nested more than {MAX_DEPTH} levels deep"),
    (deep(100_000).encode(), f"m.jsonl line 3: JSON nested more than {MAX_DEPTH} levels deep"),
    (GOOD.replace('{"status"', deep(MAX_DEPTH + 1)[:-1] + ', "status"').encode(),
     f"m.jsonl line 3: 'body' is JSON nested more than {MAX_DEPTH} levels deep"),
    (json.dumps({"exchange": "x", "routing_key": "k", "body": {}, "note": json.loads(deep(200))}).encode(),
     f"m.jsonl line 3: 'note' is JSON nested more than {MAX_DEPTH} levels deep"),
    (json.dumps({"exchange": "x", "routing_key": "k", "body": HUGE}).encode(),
     "m.jsonl line 3: 'body' must be a JSON object (got 'xxxxxxxx"),
    (json.dumps({"exchange": "x", "routing_key": "k", "routes": HUGE, "body": {}}).encode(),
     "m.jsonl line 3: 'routes' must be a list of strings (got 'xxxxxxx"),
    (json.dumps({"exchange": ["x"] * 1_000_000, "routing_key": "k", "body": {}}).encode(),
     "m.jsonl line 3: 'exchange' must be a string (got ['x', 'x', 'x', 'x', 'x', ...])"),
    (b" " * MAX_LINE + b"{}", f"m.jsonl line 3: longer than {MAX_LINE} bytes (a message body is at most 1 MiB)"),
]


def recording(tmp_path: Path, bad: bytes) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_bytes(GOOD.encode() + b"\n\n" + bad + b"\n" + GOOD.encode() + b"\n")
    return path


@pytest.mark.parametrize("bad,expected", BAD_LINES)
def test_every_kind_of_bad_line_is_a_short_error_naming_its_line(tmp_path, bad, expected):
    path = recording(tmp_path, bad)
    with pytest.raises(RecordingError) as caught:
        read(path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}/{expected}"), message[:300]
    assert len(message) < 400


@pytest.mark.parametrize("bad,expected", [BAD_LINES[0], BAD_LINES[3], BAD_LINES[6]])
@pytest.mark.parametrize("command", [["replay", "{path}", "--broker", UNREACHABLE],
                                     ["listen", "examples/task_group_watcher.py", "--replay", "{path}",
                                      "--broker", UNREACHABLE]])
def test_the_commands_reading_a_recording_report_a_bad_line_in_one_short_line(tmp_path, bad, expected, command):
    path = recording(tmp_path, bad)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
    done = subprocess.run([str(TCPULSE), *[a.format(path=path) for a in command]], capture_output=True, text=True,
                          timeout=60, env=env, cwd=REPO)
    assert done.returncode == 2, done.stderr[:500]
    assert done.stderr.startswith(f"tcpulse: error: {tmp_path}/{expected}") and done.stderr.count("\n") == 1
    assert len(done.stderr) < 400 and "Traceback" not in done.stderr


def test_a_recording_is_streamed_not_loaded_whole(tmp_path):
    path = tmp_path / "big.jsonl"
    line = json.dumps({**json.loads(GOOD), "body": {"status": {"taskId": "t"}, "pad": "p" * 1000}})
    with open(path, "w") as out:
        for _ in range(10_000):  # about 10 MB
            out.write(line + "\n")
    tracemalloc.start()
    try:
        messages = read(path)
        assert len(messages) == 10_000 and sum(1 for _ in messages) == 10_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"reading a 10 MB recording held {peak} bytes at once"
