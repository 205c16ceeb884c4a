"""Fault scenario: another Pulse user mixes undecodable deliveries and a compression bomb into a
stream of 1,000 good messages (issue 18, "Must be shown"). The `tcpulse listen` process handles
all 1,000, dead-letters each hostile message with its reason, never restarts or reconnects, and
its peak RSS stays under its idle footprint plus twice the body size limit.

Victim and attacker are two Pulse-permission users of the shared RabbitMQ (no broker fault is
injected, so no private node is needed). The ledger line and the peak RSS are printed past
pytest's capture, as in tests/test_faults.py.
"""
import json

import amqp
import pytest

import faultkit
import hostile
from faultkit import Ledger, ListenerProcess, counter, quiet_metrics, wait_for
from listenerkit import queue_name  # noqa: F401 - a fixture
from tcpulse import Listener
from tcpulse._listen.outcome import DEFAULT_MAX_BODY

pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq]

GOOD = 1_000
WARM_UP = 200  # good messages handled before the idle footprint is read
MiB = 1024 * 1024

SCRIPT = '''
"""Appends each handled id to $LEDGER_FILE; binds the attacker's exchange."""
import os
import tcpulse

FD = os.open(os.environ["LEDGER_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
app = tcpulse.Listener()


@app.on(tcpulse.Binding(os.environ["HOSTILE_EXCHANGE"], "#"))
def handled(event):
    os.write(FD, f"{event.body['id']}\\n".encode())
'''


def rss_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line.split()[1] for line in status if line.startswith(field + ":")))


@pytest.fixture
def attack(attacker, unique_name):
    """The attacker's exchange (a second Pulse user's, conftest `attacker`) and a confirming
    py-amqp channel on it."""
    exchange = f"exchange/{attacker.name}/{unique_name}"
    with hostile.exchange_of(attacker, exchange) as channel:
        yield exchange, channel


def test_undecodable_deliveries_and_a_compression_bomb_among_1000_good_messages(
        pulse_user, attack, queue_name, tmp_path, capsys):
    exchange, channel = attack
    script = tmp_path / "victim.py"
    script.write_text(SCRIPT)
    ledger = Ledger(tmp_path)
    ledger.show = lambda line: faultkit.show(capsys, "ledger " + line)
    victim = ListenerProcess(script, pulse_user.url, queue_name, ledger, "victim", ("--prefetch", "100"),
                             {"HOSTILE_EXCHANGE": exchange})
    victim.wait_ready()
    hostiles = {**hostile.HOSTILE, "compression_bomb": None}
    every = (GOOD - WARM_UP) // len(hostiles)
    hostile_ids = {}
    for number in range(GOOD):
        if number == WARM_UP:  # the footprint of a listener at work, before any hostile message
            wait_for(lambda: len(ledger.handled()) == WARM_UP, 60, "the warm-up messages to be handled", victim)
            idle = rss_kib(victim.proc.pid, "VmRSS")
        if number >= WARM_UP and (number - WARM_UP) % every == 0 and len(hostile_ids) < len(hostiles):
            form = list(hostiles)[len(hostile_ids)]
            hostile_ids[form] = GOOD + len(hostile_ids)
            publish_hostile(channel, exchange, form, hostiles[form], hostile_ids[form])
        channel.basic_publish(amqp.Message(json.dumps({"id": number}), content_type="application/json"),
                              exchange=exchange, routing_key=f"primary.{number}")
        ledger.published.append(number)
    channel.exchange_declare(exchange, "topic", passive=True)  # a round trip: the broker has them all
    wait_for(lambda: len(ledger.handled()) == GOOD, 120, "the 1,000 good messages to be handled", victim)
    metrics = quiet_metrics(victim)
    peak = rss_kib(victim.proc.pid, "VmHWM")
    letters = Listener(queue_name, broker=pulse_user.url).dead_letters()
    ledger.dead_lettered.update(hostile_ids[form_of(letter)] for letter in letters)
    ledger.report(f"{len(hostiles)} hostile deliveries among {GOOD} good ones")
    faultkit.show(capsys, f"peak RSS {peak / 1024:.1f} MiB (idle {idle / 1024:.1f} MiB, body limit "
                          f"{DEFAULT_MAX_BODY / MiB:.0f} MiB); reconnects {counter(metrics, 'reconnects'):.0f}")
    assert ledger.lost() == [] and ledger.duplicates() == {}
    assert sorted(form_of(letter) for letter in letters) == sorted(hostiles)
    for letter in letters:
        form = form_of(letter)
        expected = "body is compressed" if hostiles[form] is None else hostiles[form].reason
        assert letter["reason"].startswith("unreadable delivery: ") and expected in letter["reason"], letter
    assert counter(metrics, "reconnects") == 0 and counter(metrics, "dead_lettered") == len(hostiles)
    assert counter(metrics, "handled") == GOOD
    assert victim.proc.poll() is None, "the listener stopped"
    assert peak < idle + 2 * DEFAULT_MAX_BODY / 1024, f"peak RSS {peak} KiB, idle {idle} KiB"
    assert victim.terminate() == 0


def publish_hostile(channel, exchange: str, form: str, delivery, number: int) -> None:
    if delivery is None:  # the bomb: its id rides in a header, as its body is bzip2
        channel.basic_publish(amqp.Message(hostile.BOMB.read_bytes(), content_type="application/json",
                                           application_headers={**hostile.bomb_headers(), "form": form}),
                              exchange=exchange, routing_key="primary.bomb")
    else:
        channel.basic_publish(hostile.RawMessage(json.dumps({"id": number, "form": form}).encode(),
                                                 delivery.raw_properties),
                              exchange=exchange, routing_key=delivery.routing_key)


def form_of(letter: dict) -> str:
    """Which hostile form a dead letter is: from its body, or for the bomb from its header."""
    return letter["body"]["form"] if "body" in letter else "compression_bomb"
