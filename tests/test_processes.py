"""`tcpulse listen SCRIPT --processes N` on RabbitMQ as a Pulse-permission user, through the real
console script: N competing consumers on one queue, a child killed with SIGKILL replaced,
every message handled once across the processes, one health port for all, and SIGTERM draining
everything to exit 0 with no child left."""
import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from listenerkit import Publisher, http_get as get, queue_name, task_key, wait_for  # noqa: F401 - queue_name is a fixture
from tcpulse import QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.supervisor import Supervisor, with_label

pytestmark = pytest.mark.rabbitmq

TCPULSE = Path(sys.executable).parent / "tcpulse"
COMPLETED = QueueEvents.taskCompleted
SCRIPT = """\
import os
import tcpulse

@tcpulse.on(tcpulse.QueueEvents.taskCompleted, taskGroupId={group!r})
def record(event):
    with open({out!r}, "a") as f:
        f.write(f"{{event.body['n']}} {{os.getpid()}}\\n")
"""


def children_of(pid: int) -> set:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.add(int(entry))
    return found


def consumers(url: str, queue: str) -> int:
    with resolve_broker(url, environ={}).connection() as conn:
        try:
            return conn.channel().queue_declare(queue=queue, passive=True).consumer_count
        except Exception:
            return 0


def test_three_processes_share_the_queue_survive_a_sigkill_and_drain_on_sigterm(pulse_user, taskcluster_exchanges,
                                                                                queue_name, tmp_path):
    from faultkit import free_port

    out = tmp_path / "handled.txt"
    script = tmp_path / "app.py"
    script.write_text(SCRIPT.format(group=queue_name, out=str(out)))
    port = free_port()
    queue = f"queue/{pulse_user.name}/{queue_name}"
    supervisor = subprocess.Popen([str(TCPULSE), "listen", str(script), "--queue", queue_name, "--processes", "3",
                                   "--health-port", str(port), "--broker", pulse_user.url],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: get(port, "/ready")[0] == 200, 60, 0.2, "all three processes ready")
        assert consumers(pulse_user.url, queue) == 3
        first = children_of(supervisor.pid)
        assert len(first) == 3
        status, metrics = get(port, "/metrics")
        # Every child's series, labelled with its process first (other labels, if any, follow).
        assert status == 200 and all(re.search(f'^tcpulse_received_total{{process="{n}"[,}}].* 0$', metrics, re.M)
                                     for n in range(3)), metrics

        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: get(port, "/ready")[0] != 200, 10, 0.05, "/ready to fall with a child gone")
        wait_for(lambda: len(children_of(supervisor.pid) - first) == 1 and consumers(pulse_user.url, queue) == 3
                 and get(port, "/ready")[0] == 200, 15, 0.1, "the killed child replaced")
        assert time.monotonic() - killed_at < 15
        assert victim not in children_of(supervisor.pid)

        with Publisher() as pub:
            for n in range(300):
                pub.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name, taskId=f"t{n}"), {"n": n})
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 300, 60, 0.2, "300 handled")
        runs = [line.split() for line in out.read_text().splitlines()]
        assert sorted(int(n) for n, _ in runs) == list(range(300))  # each once
        by_process = collections.Counter(pid for _, pid in runs)
        assert len(by_process) >= 3, by_process
        metrics = get(port, "/metrics")[1]
        handled = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("tcpulse_handled_total{process="))
        assert handled == 300
        children = children_of(supervisor.pid)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        stdout, stderr = supervisor.communicate(timeout=90)
    assert supervisor.returncode == 0, stderr[-3000:]
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "a child outlived the supervisor"
    assert stdout.count("received ") == 3  # each child's summary line
    assert "died (killed by SIGKILL); restarting it in 0.5 s" in stderr
    assert all(f"tcpulse.listener[process {n}]: consuming from" in stderr for n in range(3))
    assert consumers(pulse_user.url, queue) == 0


def test_listen_processes_refuses_what_cannot_be_shared(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(SCRIPT.format(group="g", out=str(tmp_path / "x")))
    for extra, text in ((["--broker", "amqp://guest:guest@127.0.0.1:5672//"], "needs a named listener"),
                        (["--queue", "q", "--broker", "memory://"], "the embedded broker (memory://)")):
        done = subprocess.run([str(TCPULSE), "listen", str(script), "--processes", "2", *extra],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and text in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_the_supervisor_gives_up_at_the_crash_rate_it_names(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="tcpulse.supervisor")
    script = tmp_path / "dies.py"
    script.write_text("import os\nos._exit(3)\n")
    started = time.monotonic()
    code = Supervisor(str(script), 2).run()
    assert code == 1
    assert time.monotonic() - started < 20
    err = caplog.text
    assert "giving up: processes died 6 times within 60 s (the limit is 5 per 60 s)" in err
    assert "died (exit code 3); restarting it in 0.5 s" in err and "restarting it in 1.0 s" in err


def test_a_label_goes_first_on_every_sample():
    assert with_label('x_total{handler="a b"} 2', "process", "0") == 'x_total{process="0",handler="a b"} 2'
