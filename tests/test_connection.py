"""Broker selection, credentials with awkward characters, redaction, heartbeats."""
import logging
from urllib.parse import quote

import pytest

from tcpulse import BrokerFailure, Listener, QueueEvents
from tcpulse.connection import parse_url, resolve_broker

SECRET = "p/@%41x"


@pytest.mark.parametrize("broker,environ,expected", [
    ("amqp://a:b@h:1/v", {"PULSE_URL": "amqp://x:y@z//"}, ("amqp", "h", 1, "v", "a", "b")),
    (None, {"PULSE_URL": "amqps://x:y@z//", "PULSE_USERNAME": "u", "PULSE_PASSWORD": "p"},
     ("amqps", "z", 5671, "/", "x", "y")),
    (None, {"PULSE_USERNAME": "u", "PULSE_PASSWORD": "p"}, ("amqps", "pulse.mozilla.org", 5671, "/", "u", "p")),
    (None, {"PULSE_USERNAME": "u", "PULSE_PASSWORD": "p", "PULSE_HOST": "pulse.local"},
     ("amqps", "pulse.local", 5671, "/", "u", "p")),
    (None, {}, ("amqp", "localhost", 5672, "/", "guest", "guest")),
])
def test_the_broker_comes_from_the_argument_then_pulse_url_then_pulse_credentials_then_localhost(broker, environ, expected):
    a = resolve_broker(broker, environ=environ)
    assert (a.scheme, a.host, a.port, a.vhost, a.user, a.password) == expected


@pytest.mark.parametrize("url", [f"amqp://alice:{SECRET}@h:5672//", f"amqp://alice:{quote(SECRET, safe='')}@h:5672//"])
def test_a_password_with_slash_at_and_percent_works_raw_or_percent_encoded(url):
    address = parse_url(url)
    assert (address.user, address.password, address.host, address.vhost) == ("alice", SECRET, "h", "/")


def test_the_password_never_appears_in_reprs():
    address = parse_url(f"amqp://alice:{SECRET}@h:5672//")
    app = Listener("w", broker=f"amqp://alice:{SECRET}@h:5672//")
    for text in (repr(address), str(address), address.redacted, repr(app)):
        assert SECRET not in text and "alice:***@h" in text


def test_only_one_of_pulse_username_and_password_is_an_error_naming_the_missing_one():
    with pytest.raises(ValueError, match="PULSE_PASSWORD is not set but PULSE_USERNAME is"):
        resolve_broker(environ={"PULSE_USERNAME": "u"})


def test_a_url_that_is_not_amqp_is_refused_without_showing_its_password():
    with pytest.raises(ValueError, match=r"broker URL must look like amqp://") as info:
        parse_url(f"http://alice:{SECRET}@h/")
    assert SECRET not in str(info.value)


def test_amqps_connections_verify_the_certificate_against_the_host_name():
    conn = resolve_broker(environ={"PULSE_USERNAME": "u", "PULSE_PASSWORD": "p"}).connection()
    assert conn.ssl == {"server_hostname": "pulse.mozilla.org"} and conn.port == 5671
    assert resolve_broker("amqp://u:p@h//", environ={}).connection().ssl is False


def test_memory_urls_select_the_embedded_broker_transport():
    address = resolve_broker("memory://", environ={})
    assert address.is_memory and address.user == "guest"
    assert address.connection().transport_cls == "tcpulse.broker:Transport"


@pytest.mark.rabbitmq
def test_a_pulse_user_with_an_awkward_password_connects_and_heartbeats_are_negotiated(pulse_user):
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        conn.connect()
        assert conn.connection.heartbeat > 0


@pytest.mark.rabbitmq
def test_a_wrong_password_is_one_clear_error_without_the_password(pulse_user, caplog, unique_name):
    wrong = "wr/ong@%pw"
    app = Listener(unique_name, broker=f"amqp://{pulse_user.name}:{wrong}@127.0.0.1:5672//")
    app.add_handler(lambda event: None, QueueEvents.taskCompleted)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BrokerFailure, match=f"refused user '{pulse_user.name}'") as info:
        app.run()
    assert wrong not in str(info.value) and wrong not in caplog.text


@pytest.mark.rabbitmq
def test_an_unreachable_broker_at_start_is_one_clear_error(rabbitmq, unique_name):
    app = Listener(unique_name, broker="amqp://guest:guest@127.0.0.1:1//")
    app.add_handler(lambda event: None, QueueEvents.taskCompleted)
    with pytest.raises(BrokerFailure, match=r"cannot reach the broker at amqp://guest:\*\*\*@127.0.0.1:1//"):
        app.run()
