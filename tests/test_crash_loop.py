"""The crash-loop guard (issue 18 item 6): a handler that kills its process on one message, under a
supervisor that restarts `tcpulse listen` whenever it exits. With `--delivery-limit N` and a
prefetch of 20, the message is dead-lettered after N deliveries, with a reason that says so, and
it is the only dead letter: the other messages of each crashed prefetch window (which the old
guard dead-lettered with it, as innocent casualties) are all handled. On quorum and on classic
queues (which count no deliveries: tcpulse does). The supervisor stops restarting because nothing
kills the process any more."""
import threading
from typing import List

import pytest

import faultkit
from faultkit import Ledger, ListenerProcess, wait_for
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.deadletters import list_dead_letters

pytestmark = pytest.mark.rabbitmq

LIMIT = 3
POISON = 17
COUNT = 60
PREFETCH = 20

CRASHING_SCRIPT = faultkit.LISTENER_SCRIPT.replace(
    "    os.write(FD,", f"    if mid == {POISON}:\n        os._exit(1)  # a segfault, an OOM kill...\n    os.write(FD,")


class Supervisor:
    """Starts the listener again each time it exits, as systemd or Kubernetes would."""

    def __init__(self, start) -> None:
        self.start = start
        self.exits: List[int] = []
        self.current: ListenerProcess = start(0)
        self.stopping = False
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            code = self.current.proc.wait()
            if self.stopping:
                return
            self.exits.append(code)
            self.current = self.start(len(self.exits))

    def stop(self) -> int:
        self.stopping = True
        code = self.current.terminate()
        self._thread.join(30)
        return code


@pytest.mark.parametrize("queue_type, concurrency", [("quorum", 1), ("classic", 1), ("classic", 4)])
def test_only_the_message_that_kills_its_process_is_dead_lettered_whatever_the_prefetch(
        queue_type, concurrency, pulse_user, taskcluster_exchanges, unique_name, tmp_path, capsys):
    script = tmp_path / "crashing.py"
    script.write_text(CRASHING_SCRIPT)
    ledger = Ledger(tmp_path)

    def start(run: int) -> ListenerProcess:
        return ListenerProcess(script, pulse_user.url, unique_name, ledger, f"run{run}",
                               ("--queue-type", queue_type, "--delivery-limit", str(LIMIT), "--prefetch", str(PREFETCH),
                                "--concurrency", str(concurrency)))

    supervisor = Supervisor(start)
    try:
        supervisor.current.wait_ready(30)
        publisher = faultkit.BurstPublisher("amqp://guest:guest@127.0.0.1:5672//", ledger, batch=COUNT)
        publisher.publish(range(COUNT))
        others = set(range(COUNT)) - {POISON}
        wait_for(lambda: others <= set(ledger.handled()), 120, "every other message handled", supervisor.current)
        with resolve_broker(pulse_user.url, environ={}).connection() as conn:
            wait_for(lambda: list_dead_letters(conn, f"queue/{pulse_user.name}/{unique_name}"), 30,
                     "the dead letter", supervisor.current)
            letters = list_dead_letters(conn, f"queue/{pulse_user.name}/{unique_name}")
        assert supervisor.exits == [1] * LIMIT, "the process died once per delivery of the killer, then no more"
        assert supervisor.current.proc.poll() is None, "the last listener keeps running"
    finally:
        code = supervisor.stop()
    assert code == 0
    assert [letter["body"]["id"] for letter in letters] == [POISON], "the killer, and only the killer, is parked"
    assert letters[0]["reason"] == (
        f"delivered {LIMIT} times without an ack (delivery_limit {LIMIT}), the last time alone: the process "
        f"handling it exited or lost its connection each time")
    assert POISON not in ledger.handled()
    faultkit.show(capsys, f"[crash loop, {queue_type}, concurrency {concurrency}] {COUNT} messages, prefetch "
                          f"{PREFETCH}, delivery_limit {LIMIT}: {len(others & set(ledger.handled()))} handled, "
                          f"dead letters {[letter['body']['id'] for letter in letters]} (the killer: {POISON}), "
                          f"{len(supervisor.exits)} process deaths")
    logs = "".join(path.read_text() for path in ledger.directory.glob("listener-run*.log"))
    blamed = [line for line in logs.splitlines() if "came back unacked while it ran alone" in line]
    # Its first return runs again alone, or (concurrency above 1) with the others once more; the
    # last death alone dead-letters it: the deaths alone before that are logged, the killer's only.
    alone_before_last = LIMIT - 2 if concurrency == 1 else LIMIT - 3
    assert len(blamed) == alone_before_last and all(faultkit.ROUTING_KEY.format(id=POISON) in line for line in blamed), \
        "only the killer died while it ran alone"
    last = ledger.directory / f"listener-run{LIMIT - 1}.log"
    assert (f"last delivery ({LIMIT} of delivery_limit {LIMIT}) of a message from {faultkit.EXCHANGE} "
            f"'{faultkit.ROUTING_KEY.format(id=POISON)}': it came back unacked each time before") in last.read_text()
