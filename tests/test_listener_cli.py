"""`tcpulse listen` as a real subprocess on the real RabbitMQ: graceful SIGTERM, a second
signal, and three processes sharing one queue."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tcpulse import QueueEvents
from listenerkit import Publisher, handled_ids, queue_name, queued, task_key, wait_for  # noqa: F401

pytestmark = pytest.mark.rabbitmq

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "slow_handler.py"
COMPLETED = QueueEvents.taskCompleted
GRACE = 25  # the listener's default shutdown grace period


class ListenProcess:
    """`python -m tcpulse listen examples/slow_handler.py ...`, with its log collected."""

    def __init__(self, url: str, name: str, out: Path, seconds: float, *options: str, url_in_env: bool = False) -> None:
        env = {**os.environ, "SLOW_HANDLER_OUT": str(out), "SLOW_HANDLER_SECONDS": str(seconds),
               "SLOW_HANDLER_SCHEDULER": name}  # other tests publish on the same exchange
        broker = []
        if url_in_env:
            env["PULSE_URL"] = url
        else:
            broker = ["--broker", url]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tcpulse", "listen", str(EXAMPLE), *broker, "--queue", name, *options],
            stderr=subprocess.PIPE, text=True, env=env)
        self.log: list = []
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def wait_ready(self) -> None:
        wait_for(lambda: any("consuming from" in line for line in self.log) or self.proc.poll() is not None,
                 what="the listener to consume")
        assert self.proc.poll() is None, "".join(self.log)

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send `sig`; return the seconds until the process exited."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(GRACE + 10)
        return time.monotonic() - start


def publish(count: int, prefix: str, scheduler: str) -> list:
    ids = [f"{prefix}{i}" for i in range(count)]
    with Publisher(confirm=False) as pub:
        for task_id in ids:
            pub.publish(COMPLETED.exchange, task_key(COMPLETED, taskId=task_id, schedulerId=scheduler), {"status": {}})
    return ids


def test_sigterm_mid_burst_finishes_running_handlers_acks_them_and_exits_0(pulse_user, taskcluster_exchanges, queue_name, tmp_path):
    out = tmp_path / "handled.txt"
    listener = ListenProcess(pulse_user.url, queue_name, out, 0.2, "--concurrency", "4", "--prefetch", "20")
    listener.wait_ready()
    published = publish(300, "t", queue_name)
    wait_for(lambda: len(handled_ids(out)) >= 20, what="some messages handled")
    elapsed = listener.stop(signal.SIGTERM)
    log = "".join(listener.log)
    assert listener.proc.returncode == 0, log
    assert elapsed < GRACE
    handled = handled_ids(out)
    assert len(handled) == len(set(handled)), "a message was handled twice"
    assert set(handled) <= set(published)
    assert len(handled) + queued(pulse_user.url, f"queue/{pulse_user.name}/{queue_name}") == len(published), log
    assert "finishing running handlers" in log and "Traceback" not in log


def test_a_second_signal_exits_at_once_without_waiting_for_handlers_and_pulse_url_picks_the_broker(pulse_user, taskcluster_exchanges, queue_name, tmp_path):
    out = tmp_path / "handled.txt"
    listener = ListenProcess(pulse_user.url, queue_name, out, 20, "--prefetch", "5", url_in_env=True)
    listener.wait_ready()
    publish(3, "slow", queue_name)
    wait_for(lambda: any("consuming from" in line for line in listener.log), what="consumption")
    time.sleep(0.5)  # the first handler is now sleeping for 20 s
    listener.proc.send_signal(signal.SIGINT)
    wait_for(lambda: any("finishing running handlers" in line for line in listener.log), what="the first signal")
    elapsed = listener.stop(signal.SIGINT)
    assert elapsed < 5 and listener.proc.returncode == 1
    assert handled_ids(out) == []
    assert "second SIGINT: exiting now" in "".join(listener.log)
    wait_for(lambda: queued(pulse_user.url, f"queue/{pulse_user.name}/{queue_name}") == 3, what="messages back in the queue")


def test_three_processes_on_one_named_queue_share_3000_messages_without_duplicates(pulse_user, taskcluster_exchanges, queue_name, tmp_path):
    outs = [tmp_path / f"p{i}.txt" for i in range(3)]
    listeners = [ListenProcess(pulse_user.url, queue_name, out, 0, "--prefetch", "20") for out in outs]
    for listener in listeners:
        listener.wait_ready()
    published = publish(3000, "m", queue_name)
    wait_for(lambda: sum(len(handled_ids(o)) for o in outs) >= 3000, timeout=60, what="3000 messages handled")
    for listener in listeners:
        assert listener.stop() < GRACE and listener.proc.returncode == 0, "".join(listener.log)
    per_process = [handled_ids(out) for out in outs]
    everything = [task_id for handled in per_process for task_id in handled]
    assert sorted(everything) == sorted(published)  # the union is everything, and nothing twice
    assert all(per_process), [len(h) for h in per_process]


def test_an_unreachable_broker_is_one_line_on_stderr_and_exit_code_1(rabbitmq):
    done = subprocess.run([sys.executable, "-m", "tcpulse", "listen", str(EXAMPLE), "--broker",
                           "amqp://someone:s3cret/@127.0.0.1:1//"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "tcpulse: error: cannot reach the broker at amqp://someone:***@127.0.0.1:1//")
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr



def test_an_unnamed_listener_asked_for_a_quorum_queue_is_one_line_and_exit_code_2():
    done = subprocess.run([sys.executable, "-m", "tcpulse", "listen", str(EXAMPLE), "--broker", "memory://",
                           "--queue-type", "quorum"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (
        "tcpulse: error: an unnamed Listener cannot use queue_type='quorum': its queue is exclusive and goes "
        "away with its connection, and quorum queues are durable; give the listener a name (Listener("
        "'my-listener', queue_type='quorum'), or tcpulse listen --queue NAME)\n")
