"""Whatever a publisher puts in the CC and BCC headers, the embedded `memory://` broker does what
RabbitMQ does: an array routes by its text items (others ignored; BCC removed before delivery),
and any other value refuses the publish with the same PRECONDITION_FAILED."""
import uuid

import kombu
import pytest
from amqp.exceptions import PreconditionFailed

from tcpulse._broker.broker import Transport

KEYS = ["primary", "route.a", "route.b", "route.x", "1", "True"]
HEADERS = [
    {"CC": 123}, {"CC": "route.a"}, {"CC": b"route.a"}, {"CC": None}, {"CC": {"a": "route.a"}}, {"CC": True},
    {"CC": 1.5}, {"CC": []}, {"CC": ["route.a"]}, {"CC": ("route.a", "route.b")}, {"CC": [1, "route.a"]},
    {"CC": [b"route.b"]}, {"CC": [["route.a"], "route.b"]}, {"CC": [None, True, "route.x"]},
    {"CC": ["primary", "primary", "route.a"]},
    {"BCC": 123}, {"BCC": "route.a"}, {"BCC": None}, {"BCC": []}, {"BCC": [1, "route.a"]}, {"BCC": [b"route.b"]},
    {"BCC": ("route.x",)}, {"CC": ["route.a"], "BCC": ["route.b"]}, {"CC": ["route.a"], "BCC": 7},
    {"CC": 7, "BCC": "route.b"},
]


def publish_each(connection: kombu.Connection) -> list:
    """For each headers case: ('refused', the broker's reason), or ('routed', keys whose queues got
    a copy, whether BCC reached the consumer)."""
    setup = connection.channel()
    exchange = kombu.Exchange(f"exchange/tcpulse-test/{uuid.uuid4().hex}", type="topic", auto_delete=True)
    exchange(setup).declare()
    queues = {key: kombu.Queue(f"tcpulse-cc-{uuid.uuid4().hex[:8]}", exchange, routing_key=key, exclusive=True,
                               channel=setup) for key in KEYS}
    for queue in queues.values():
        queue.declare()
    outcomes = []
    for headers in HEADERS:
        channel = connection.channel()
        try:
            kombu.Producer(channel, exchange=exchange).publish({}, routing_key="primary", headers=headers)
        except PreconditionFailed as exc:
            outcomes.append(("refused", str(exc).split("PRECONDITION_FAILED - ", 1)[1]))
            continue
        finally:
            channel.close()
        got = {key: queue.get(no_ack=True) for key, queue in queues.items()}
        copies = {key: message for key, message in got.items() if message is not None}
        outcomes.append(("routed", sorted(copies), any("BCC" in m.headers for m in copies.values())))
    return outcomes


def test_the_embedded_broker_refuses_a_cc_header_that_is_not_a_list_as_rabbitmq_does():
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as conn:
        outcomes = dict(zip([repr(h) for h in HEADERS], publish_each(conn)))
    assert outcomes[repr({"CC": 123})] == ("refused", 'invalid message: {unacceptable_type_in_header,"CC",signedint}')
    assert outcomes[repr({"CC": [1, "route.a"]})] == ("routed", ["primary", "route.a"], False)
    assert outcomes[repr({"BCC": [b"route.b"]})] == ("routed", ["primary", "route.b"], False)


@pytest.mark.rabbitmq
def test_every_cc_and_bcc_value_is_handled_the_same_on_memory_and_on_rabbitmq(rabbitmq):
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as conn:
        on_memory = publish_each(conn)
    with kombu.Connection(rabbitmq, transport_options={"confirm_publish": True}) as conn:
        on_rabbit = publish_each(conn)
    assert [(h, m, r) for h, m, r in zip(HEADERS, on_memory, on_rabbit) if m != r] == []
    assert {kind for kind, *_ in on_rabbit} == {"refused", "routed"}
    assert {"CC": ["route.a"], "BCC": ["route.b"]} in HEADERS, "the publisher's headers are left as they were"
