"""Another Pulse user publishes, to an exchange of its own that the victim's listener binds,
deliveries that py-amqp cannot decode, a compression bomb, and headers as large as a frame
(issue 18, items 1 and 2). Each is dead-lettered with a reason naming what could not be read;
the listener never dies, never reconnects, and handles the good messages behind them.

Real RabbitMQ with two Pulse-permission users (victim `pulse_user`, attacker `attacker`, both
made by conftest's `create_pulse_user()`); the compression refusal also on memory://. The
attacker's deliveries come from tests/hostile.py, which writes them as raw AMQP frames.
"""
import json
import resource

import amqp
import kombu
import pytest

import hostile
from listenerkit import queue_name, running, wait_for  # noqa: F401 - queue_name is a fixture
from tcpulse import Binding, Listener
from tcpulse._listen.outcome import DEFAULT_MAX_BODY

MiB = 1024 * 1024


@pytest.fixture
def attack(attacker, unique_name):
    """The attacker's exchange (any listener may bind it) and a confirming py-amqp channel on it."""
    exchange = f"exchange/{attacker.name}/{unique_name}"
    with hostile.exchange_of(attacker, exchange) as channel:
        yield exchange, channel


def victim(queue: str, url: str, exchange: str, **options) -> tuple:
    """The victim's listener binding the attacker's exchange, and the bodies it handled."""
    app = Listener(queue, broker=url, **options)
    handled = []
    app.add_handler(lambda event: handled.append(event.body), Binding(exchange, "#"))
    return app, handled


def good(channel, exchange: str, number: int) -> None:
    channel.basic_publish_confirm(amqp.Message(json.dumps({"good": number}), content_type="application/json"),
                                  exchange=exchange, routing_key="primary.good")


def test_undecodable_deliveries_from_another_pulse_user_are_dead_lettered_and_never_stop_the_listener(
        pulse_user, attack, queue_name):
    # Replays: invalid UTF-8 in content_type, content_encoding, the routing key and a header key;
    # a header timestamp of 2^63 (OverflowError), one nested in arrays (OSError EOVERFLOW: today an
    # endless reconnect loop), an array nested 5,000 deep (RecursionError). Today each stops run().
    exchange, channel = attack
    app, handled = victim(queue_name, pulse_user.url, exchange)
    with running(app):
        for number, (form, delivery) in enumerate(hostile.HOSTILE.items()):
            hostile.publish_raw(channel, exchange, delivery, json.dumps({"form": form}).encode())
            good(channel, exchange, number)
        wait_for(lambda: len(handled) == len(hostile.HOSTILE) and app.metrics.get("dead_lettered") == len(handled),
                 what="every good message handled and every hostile one dead-lettered")
        assert app.metrics.get("reconnects") == 0, "an undecodable delivery cost a connection"
    assert handled == [{"good": number} for number in range(len(hostile.HOSTILE))]
    reasons = {letter["body"]["form"]: letter["reason"] for letter in app.dead_letters()}
    assert set(reasons) == set(hostile.HOSTILE)
    for form, delivery in hostile.HOSTILE.items():
        assert reasons[form].startswith("unreadable delivery: "), reasons[form]
        assert delivery.reason in reasons[form], (form, reasons[form])


def test_a_compression_bomb_is_dead_lettered_as_it_came_never_inflated(pulse_user, attack, queue_name):
    # Replays: 242 bytes of bzip2 with kombu's `compression` header, which kombu inflated to
    # 300 MiB before the size check (1.2 GB peak RSS); its dead-letter copy was then over the
    # broker's message size limit, so the listener reconnected and got it again, forever.
    exchange, channel = attack
    app, handled = victim(queue_name, pulse_user.url, exchange)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with running(app):
        channel.basic_publish_confirm(
            amqp.Message(hostile.BOMB.read_bytes(), content_type="application/json",
                         application_headers=hostile.bomb_headers()), exchange=exchange, routing_key="primary.bomb")
        good(channel, exchange, 1)
        wait_for(lambda: handled and app.metrics.get("dead_lettered") == 1, what="the bomb dead-lettered")
        assert app.metrics.get("reconnects") == 0
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < 2 * DEFAULT_MAX_BODY + 32 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB: the bomb was inflated"
    [letter] = app.dead_letters()
    assert letter["reason"] == ("unreadable delivery: body is compressed ('application/x-bz2'); "
                                "compressed bodies are refused")
    assert "body_text" in letter and len(hostile.BOMB.read_bytes()) == 242  # kept as the 242 bytes it came as


def test_a_dead_letter_copy_of_a_message_with_frame_sized_headers_fits_in_one_frame(pulse_user, attack, queue_name):
    # Replays: valid headers just under the broker's frame size (131,072 bytes) on a body that
    # is not JSON. The dead-letter copy added tcpulse's headers, the broker closed the connection
    # (FRAME_ERROR frame_too_large), the message came back, and the listener looped on it.
    exchange, channel = attack
    app, handled = victim(queue_name, pulse_user.url, exchange)
    with running(app):
        channel.basic_publish_confirm(amqp.Message(b"not json", content_type="application/json",
                                                   application_headers={"pad": "x" * 131_000}),
                                      exchange=exchange, routing_key="primary.big")
        good(channel, exchange, 1)
        wait_for(lambda: handled and app.metrics.get("dead_lettered") == 1, what="the message dead-lettered")
        assert app.metrics.get("reconnects") == 0
    [letter] = app.dead_letters()
    assert letter["reason"].startswith("body is not JSON"), letter
    assert handled == [{"good": 1}]


def test_a_compressed_body_on_memory_is_dead_lettered_without_inflating_it(unique_name):
    # The same bomb through the in-process broker: refused there too, before kombu inflates it.
    exchange = "exchange/guest/bombs"
    app = Listener(unique_name, broker=f"memory:///{unique_name}", declare_exchanges=True)
    handled = []
    app.add_handler(lambda event: handled.append(event.body), Binding(exchange, "#"))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with running(app):
        with kombu.Connection(f"memory:///{unique_name}", transport="tcpulse._broker.broker:Transport") as conn:
            producer = kombu.Producer(conn.channel())
            producer.publish(hostile.BOMB.read_bytes(), exchange=exchange, routing_key="primary.bomb",
                             content_type="application/json", content_encoding="binary",
                             headers=hostile.bomb_headers())
            producer.publish({"good": 1}, exchange=exchange, routing_key="primary.good")
        wait_for(lambda: handled and app.metrics.get("dead_lettered") == 1, what="the bomb dead-lettered")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert grown < 2 * DEFAULT_MAX_BODY + 32 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB: the bomb was inflated"
    assert handled == [{"good": 1}]
    [letter] = app.dead_letters()
    assert "body is compressed ('application/x-bz2')" in letter["reason"]


def test_an_undecodable_message_the_broker_dead_letters_is_listed_not_a_crash(pulse_user, attack, queue_name):
    # Replays: an undecodable delivery dropped by the queue's x-max-length goes to the
    # dead-letter queue as it came (the broker moves it, not tcpulse); listing the dead letters
    # read it with py-amqp and died of the same UnicodeDecodeError.
    exchange, channel = attack
    app, handled = victim(queue_name, pulse_user.url, exchange, max_length=1)
    with running(app):
        pass  # declares the queue (at most 1 message), its binding and the dead-letter queue
    hostile.publish_raw(channel, exchange, hostile.HOSTILE["content_type"], b'{"dropped": true}')
    good(channel, exchange, 1)  # pushes the hostile one out of the full queue
    wait_for(lambda: len(app.dead_letters()) == 1, what="the dropped message in the dead-letter queue")
    [letter] = app.dead_letters()
    assert letter["body"] == {"dropped": True} and letter["reason"].startswith("dropped by the broker"), letter
