"""Broker selection, credentials with awkward characters, redaction, heartbeats."""
import logging
from urllib.parse import quote

import pytest

from tcpulse import BrokerFailure, Listener, QueueEvents
from tcpulse._broker.connection import parse_url, resolve_broker
from faultkit import free_port
from listenerkit import Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture

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
    assert address.connection().transport_cls == "tcpulse._broker.broker:Transport"


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


def test_several_urls_separated_by_semicolons_are_the_nodes_of_one_broker_in_order():
    address = resolve_broker(f"amqp://alice:{SECRET};x@a:5672//; amqps://alice:{SECRET};x@b//", environ={})
    assert [(n.scheme, n.host, n.port, n.password) for n in address.nodes] == [
        ("amqp", "a", 5672, SECRET + ";x"), ("amqps", "b", 5671, SECRET + ";x")]
    assert (address.user, address.host) == ("alice", "a")
    assert address.redacted == "amqp://alice:***@a:5672//;amqps://alice:***@b:5671//"
    assert SECRET not in repr(Listener("w", broker=f"amqp://alice:{SECRET}@a//;amqp://alice:{SECRET}@b//"))


@pytest.mark.parametrize("url, message", [
    ("amqp://alice:pw@a//;amqp://bob:pw@b//",
     "all broker URLs separated by ';' must name the same user, as queue names depend on it (got 2 different users); "
     "';' followed by 'name://' separates broker URLs, so a password holding that must percent-encode the ';' as %3B"),
    ("amqp://alice:pw@a//;memory://",
     "memory:// is one in-process broker: it cannot be one of several broker URLs (got 2 URLs separated by ';')"),
])
def test_several_urls_must_share_their_user_and_cannot_include_memory(url, message):
    with pytest.raises(ValueError) as caught:
        resolve_broker(url, environ={})
    assert str(caught.value) == message and "pw" not in str(caught.value)


@pytest.mark.rabbitmq
def test_a_listener_whose_first_node_is_down_consumes_from_the_next_one(pulse_user, taskcluster_exchanges, queue_name):
    dead = pulse_user.url.replace("127.0.0.1:5672", f"127.0.0.1:{free_port()}")
    app = Listener(queue_name, broker=f"{dead};{pulse_user.url}", queue_type="quorum")
    seen = []
    app.add_handler(lambda event: seen.append(event.body["n"]), QueueEvents.taskCompleted, taskGroupId=queue_name)
    with running(app), Publisher() as pub:
        pub.publish(QueueEvents.taskCompleted.exchange, task_key(taskGroupId=queue_name), {"n": 1})
        wait_for(lambda: seen == [1], what="the message, through the second node")


def test_a_password_split_by_semicolon_names_no_users_that_may_be_its_tail():
    with pytest.raises(ValueError, match="must name the same user") as caught:
        resolve_broker("amqp://alice:pw@a//;amqp://S3cretTail@b//", environ={})
    assert "S3cretTail" not in str(caught.value) and "%3B" in str(caught.value)


def test_treeherders_pulse_url_with_ssl_1_is_tls_to_the_root_vhost():
    address = resolve_broker("amqp://u:p@pulse.mozilla.org:5671/?ssl=1", environ={})
    assert (address.host, address.port, address.vhost, address.tls) == ("pulse.mozilla.org", 5671, "/", True)
    conn = address.connection()
    assert conn.ssl == {"server_hostname": "pulse.mozilla.org"} and conn.virtual_host == "/"
    assert address.redacted == "amqp://u:***@pulse.mozilla.org:5671//?ssl=1"


@pytest.mark.parametrize("query, ssl, heartbeat, extra", [
    ("ssl=0", False, 30, {}),
    ("ssl=true&heartbeat=10&connect_timeout=3", {"server_hostname": "h"}, 10, {"connect_timeout": 3.0}),
    ("ssl_ca_certs=/ca.pem&ssl_cert_reqs=required", {"server_hostname": "h", "ca_certs": "/ca.pem", "cert_reqs": 2}, 30, {}),
    ("ssl=1&ssl_cert_reqs=CERT_NONE", {"cert_reqs": 0}, 30, {}),
    ("ssl=1&ssl_check_hostname=false", {}, 30, {}),
])
def test_url_query_parameters_are_read_as_kombu_reads_them(query, ssl, heartbeat, extra):
    conn = parse_url(f"amqp://u:p@h/vh?{query}").connection()
    assert (conn.ssl, conn.heartbeat, conn.virtual_host) == (ssl, heartbeat, "vh")
    assert all(getattr(conn, key) == value for key, value in extra.items())


@pytest.mark.parametrize("query, message", [
    ("ssl=maybe", "query parameter 'ssl' must be one of 1, true"),
    ("heartbeat=soon", "query parameter 'heartbeat' must be a number of seconds"),
    ("ssl_cert_reqs=strict", "query parameter 'ssl_cert_reqs' must be one of CERT_REQUIRED"),
    ("sll=1", "query parameter 'sll' is not one tcpulse reads"),
    ("ssl=0&ssl_ca_certs=/ca.pem", "turns TLS off"),
])
def test_a_bad_url_query_parameter_is_one_error_naming_it(query, message):
    with pytest.raises(ValueError, match=message):
        resolve_broker(f"amqp://u:{SECRET}@h/?{query}", environ={})
