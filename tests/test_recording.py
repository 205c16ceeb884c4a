"""Recordings are JSON Lines that round-trip, name the bad line, and move between a broker and a file."""
import io
import json
import threading
import uuid

import kombu
import pytest

from tcpulse._broker.broker import Transport
from tcpulse._ops.recording import Recorded, RecordingError, read, read_lines, record_from, replay_into, write

COMPLETED = "exchange/taskcluster-queue/v1/task-completed"
KEY = "primary.t1.0.wg.w1.aws.b-linux.sched.g1._"


def line(**overrides):
    data = {"exchange": COMPLETED, "routing_key": KEY, "routes": ["index.a"], "body": {"n": 1}}
    data.update(overrides)
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_a_message_written_and_read_back_is_unchanged_including_metadata(tmp_path):
    message = Recorded(COMPLETED, KEY, ("index.a", "notify.b"), {"status": {"taskId": "t1"}}, {"note": "x"})
    path = tmp_path / "m.jsonl"
    with open(path, "w") as out:
        assert write(out, [message, message]) == 2
    assert list(read(path)) == [message, message]


def test_routes_are_optional_and_blank_lines_are_skipped():
    messages = list(read_lines(io.StringIO("\n" + line(routes=...) + "\n\n")))
    assert messages == [Recorded(COMPLETED, KEY, (), {"n": 1})]


@pytest.mark.parametrize("bad, expected", [
    ("{not json", "m.jsonl line 2: not valid JSON (Expecting property name"),
    ("[1, 2]", "m.jsonl line 2: expected a JSON object with exchange, routing_key, body (got list)"),
    (line(routing_key=...), "m.jsonl line 2: field 'routing_key' is missing (each line needs exchange, routing_key, body)."),
    (line(routing_key=..., routingKey=KEY), "(each line needs exchange, routing_key, body). It has 'routingKey'. Did you mean 'routing_key'?"),
    (line(body="text"), "m.jsonl line 2: 'body' must be a JSON object (got 'text')"),
    (line(routes="index.a"), "m.jsonl line 2: 'routes' must be a list of strings (got 'index.a')"),
    (line(exchange=""), "m.jsonl line 2: 'exchange' must not be empty"),
])
def test_a_malformed_line_is_reported_with_its_file_and_line_number(tmp_path, bad, expected):
    path = tmp_path / "m.jsonl"
    path.write_text(line() + "\n" + bad + "\n" + line() + "\n")
    with pytest.raises(RecordingError) as caught:
        read(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_a_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(RecordingError, match=r"missing\.jsonl: no such file$"):
        read(tmp_path / "missing.jsonl")


def record_in_thread(conn, queue, bindings, out, **kwargs):
    """Start record_from in a thread; return (thread, ready event)."""
    ready = threading.Event()
    thread = threading.Thread(target=record_from, args=(conn, queue, bindings, out),
                              kwargs={"ready": ready.set, **kwargs})
    thread.start()
    assert ready.wait(20), "the recorder never started consuming"
    return thread


def test_replay_then_record_on_the_embedded_broker_gives_back_the_same_messages():
    messages = [Recorded(COMPLETED, KEY.replace("t1", f"t{n}"), ("index.p.x",) if n % 2 else (), {"n": n})
                for n in range(5)]
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as conn:
        out = io.StringIO()
        recorder = record_in_thread(conn.clone(), "queue/guest/rec", [(COMPLETED, "primary.#")], out,
                                    count=5, timeout=10)
        assert replay_into(conn, messages) == 5
        recorder.join()
    got = list(read_lines(io.StringIO(out.getvalue())))
    assert [(m.exchange, m.routing_key, m.routes, m.body) for m in got] == \
        [(m.exchange, m.routing_key, m.routes, m.body) for m in messages]
    assert all("recorded_at" in m.metadata for m in got)


@pytest.mark.rabbitmq
def test_record_from_rabbitmq_as_a_pulse_user_keeps_key_routes_and_body(pulse_user, taskcluster_exchanges, rabbitmq):
    queue = f"queue/{pulse_user.name}/record-{uuid.uuid4().hex[:8]}"
    group = uuid.uuid4().hex[:22]  # other tests publish to this exchange too
    key = KEY.replace("g1", group)
    out = io.StringIO()
    with kombu.Connection(hostname="127.0.0.1", userid=pulse_user.name, password=pulse_user.password) as listen_conn:
        recorder = record_in_thread(listen_conn, queue, [(COMPLETED, f"primary.*.*.*.*.*.*.*.{group}.#")], out,
                                    count=2, timeout=20)
        with kombu.Connection(rabbitmq) as guest:
            replay_into(guest, [Recorded(COMPLETED, key, ("index.p.x",), {"n": 1}),
                                Recorded(COMPLETED, KEY.replace("g1", "other"), (), {"n": 2}),
                                Recorded(COMPLETED, key, (), {"n": 3})])
        recorder.join(30)
    got = list(read_lines(io.StringIO(out.getvalue())))
    assert [(m.routing_key, m.routes, m.body) for m in got] == [(key, ("index.p.x",), {"n": 1}), (key, (), {"n": 3})]


def test_a_message_that_is_not_json_is_skipped_with_a_note_and_recording_goes_on(capsys):
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as conn:
        out = io.StringIO()
        recorder = record_in_thread(conn.clone(), "queue/guest/rec", [(COMPLETED, "#")], out, count=1, timeout=10)
        producer = kombu.Producer(conn.channel())
        producer.publish(b"\x00binary", exchange=COMPLETED, routing_key="a", content_type="application/octet-stream")
        producer.publish({"n": 1}, exchange=COMPLETED, routing_key="b")
        recorder.join()
    assert [m.body for m in read_lines(io.StringIO(out.getvalue()))] == [{"n": 1}]
    assert "skipped a message from exchange/taskcluster-queue/v1/task-completed 'a': body is not JSON (" in \
        capsys.readouterr().err
