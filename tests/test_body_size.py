"""The body size limit can be raised (issue 19 item 4): `Listener(max_body_bytes=...)` and
`tcpulse listen --max-body-bytes N`; the default stays 1 MiB. A GitHub push message with 20
commits of 1,000 files is 1.4 MB, and was dead-lettered with no way to raise the limit.

The CLI runs as a real subprocess on RabbitMQ as a Pulse-permission user, the messages published
as a Taskcluster service would (guest, to the real exchange); the defaults also on memory://.
"""
import json
import os
import subprocess
import sys

import kombu
import pytest

from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from listenerkit import Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture

COMPLETED = QueueEvents.taskCompleted
LARGE = 1_500_000  # bytes of padding: a body of about 1.5 MB, over the default 1 MiB

SCRIPT = """
import os, tcpulse

app = tcpulse.Listener()

@app.on(tcpulse.QueueEvents.taskCompleted(taskGroupId=os.environ["GROUP"]))
def sized(event):
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event.body['n']} {len(event.body['pad'])}\\n")
"""


def body(n: int, pad: int) -> dict:
    return {"n": n, "status": {"taskId": f"t{n}"}, "pad": "x" * pad}


@pytest.mark.rabbitmq
def test_listen_with_max_body_bytes_4194304_handles_a_1_5_mb_body(pulse_user, taskcluster_exchanges, queue_name,
                                                                   tmp_path):
    script, out = tmp_path / "sized.py", tmp_path / "handled.txt"
    script.write_text(SCRIPT)
    env = {**os.environ, "GROUP": queue_name, "OUT": str(out)}
    log = tmp_path / "listen.log"
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tcpulse", "listen", str(script), "--broker", pulse_user.url,
                                 "--queue", queue_name, "--max-body-bytes", "4194304"], stderr=stderr, env=env)
    app = Listener(queue_name, broker=pulse_user.url)
    try:
        wait_for(lambda: "consuming from" in log.read_text() or proc.poll() is not None, what="the listener to consume")
        with Publisher() as pub:
            key = task_key(taskGroupId=queue_name)
            pub.publish(COMPLETED.exchange, key, body(1, LARGE))
            pub.publish(COMPLETED.exchange, key, body(2, 5_000_000))  # over the raised limit too
            pub.publish(COMPLETED.exchange, key, body(3, 10))
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2 or proc.poll() is not None,
                 what="the two bodies under the limit handled")
        wait_for(lambda: len(app.dead_letters()) == 1, what="the 5 MB body dead-lettered")
    finally:
        proc.terminate()
        proc.wait(40)
    assert proc.returncode == 0, log.read_text()
    assert out.read_text().splitlines() == [f"1 {LARGE}", "3 10"]
    [letter] = app.dead_letters()
    assert "more than the limit of 4194304" in letter["reason"], letter["reason"]


def test_the_default_limit_stays_1_mib_and_max_body_bytes_raises_it(unique_name):
    for limit, expected in ((None, []), (4 * 1024 * 1024, [1])):
        app = Listener(f"{unique_name}-{limit or 'default'}", broker=f"memory:///{unique_name}", max_body_bytes=limit)
        handled = []
        app.add_handler(lambda event: handled.append(event.body["n"]), COMPLETED)
        with running(app):
            with resolve_broker(f"memory:///{unique_name}", environ={}).connection() as conn:
                kombu.Producer(conn.channel()).publish(json.dumps(body(1, LARGE)), exchange=COMPLETED.exchange,
                                                       routing_key=task_key(), content_type="application/json")
            wait_for(lambda: app.metrics.get("acked") == 1, what="the large body settled")
        assert handled == expected
        size = len(json.dumps(body(1, LARGE)))
        assert [letter["reason"] for letter in app.dead_letters()] == (
            [f"body is {size} bytes, more than the limit of 1048576"] if limit is None else [])


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1MiB", True])
def test_max_body_bytes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"max_body_bytes must be an integer >= 1 \(got "):
        Listener("w", broker="memory://", max_body_bytes=bad)


def test_listen_refuses_max_body_bytes_0_as_a_usage_error(tmp_path):
    script = tmp_path / "sized.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, "-m", "tcpulse", "listen", str(script), "--broker", "memory://",
                           "--max-body-bytes", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--max-body-bytes" in done.stderr, done.stderr
