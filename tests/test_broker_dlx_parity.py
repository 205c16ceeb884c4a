"""Expiry, dead-lettering, max-length and requeue behave the same on the embedded broker as on
the real RabbitMQ: each scenario runs on both and what a consumer can observe (bodies, routing
key, CC header, x-death entries, order, redelivered flag) must be equal."""
import time
import uuid

import kombu
import pytest

from tcpulse._broker.broker import Transport


class Lab:
    """Unique, self-cleaning names on one broker; queue names map back to roles for comparison."""

    def __init__(self, conn):
        self.conn = conn
        self.channel = conn.channel()
        self.tag = uuid.uuid4().hex[:8]
        self.roles = {}

    def exchange(self, role, kind="topic"):
        exchange = kombu.Exchange(f"exchange/tcpulse-test/{self.tag}/{role}", type=kind, auto_delete=True)
        exchange(self.channel).declare()
        return exchange

    def queue(self, role, exchange, patterns, **arguments):
        name = f"tcpulse-dlx-{self.tag}-{role}"
        self.roles[name] = role
        queue = kombu.Queue(name, exchange, bindings=[kombu.binding(exchange, routing_key=p) for p in patterns],
                            exclusive=True, queue_arguments=arguments, channel=self.channel)
        queue.declare()
        return queue

    def publish(self, exchange, key, body, **kwargs):
        kombu.Producer(self.channel).publish(body, exchange=exchange, routing_key=key, **kwargs)

    def observe(self, message):
        headers = message.headers or {}
        deaths = [{k: (self.roles.get(v, v) if k == "queue" else v) for k, v in d.items()
                   if k not in ("time", "exchange")} for d in headers.get("x-death") or ()]
        return {"body": message.payload, "key": message.delivery_info["routing_key"],
                "cc": headers.get("CC"), "deaths": deaths,
                "redelivered": bool(message.delivery_info.get("redelivered")),
                "expiration": message.properties.get("expiration")}

    def take(self, queue, count, timeout=5.0):
        """`count` messages from `queue` (waiting for broker-side expiry), then check it is empty."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            got.append(self.observe(message)) if message else time.sleep(0.02)
        assert queue.get(no_ack=True) is None
        return got


def ttl_and_cc(lab):
    source_x, parked_x = lab.exchange("source"), lab.exchange("parked")
    parked = lab.queue("parked", parked_x, ["#"])
    lab.queue("source", source_x, ["primary.#"], **{"x-message-ttl": 50, "x-dead-letter-exchange": parked_x.name})
    lab.publish(source_x, "primary.a", {"n": 1}, headers={"CC": ["route.r.1", "route.r.2"]})
    lab.publish(source_x, "primary.b", {"n": 2}, expiration=0.01)
    return lab.take(parked, 2)


def dead_letter_routing_key(lab):
    source_x, parked_x = lab.exchange("source"), lab.exchange("parked")
    parked = lab.queue("parked", parked_x, ["parked.#"])
    lab.queue("source", source_x, ["#"], **{"x-message-ttl": 0, "x-dead-letter-exchange": parked_x.name,
                                            "x-dead-letter-routing-key": "parked.here"})
    lab.publish(source_x, "primary.a", {"n": 1}, headers={"CC": ["route.r.1"]})
    return lab.take(parked, 1)


def reject_and_requeue(lab):
    source_x, parked_x = lab.exchange("source"), lab.exchange("parked")
    parked = lab.queue("parked", parked_x, ["#"])
    source = lab.queue("source", source_x, ["#"], **{"x-dead-letter-exchange": parked_x.name})
    for n in range(3):
        lab.publish(source_x, f"k.{n}", {"n": n})
    source.get().reject()
    second = source.get()
    second.requeue()
    return {"parked": lab.take(parked, 1), "source": lab.take(source, 2)}


def max_length_drops_the_oldest(lab):
    source_x, parked_x = lab.exchange("source"), lab.exchange("parked")
    parked = lab.queue("parked", parked_x, ["#"])
    source = lab.queue("source", source_x, ["#"], **{"x-max-length": 2, "x-dead-letter-exchange": parked_x.name})
    for n in range(5):
        lab.publish(source_x, "k", {"n": n})
    return {"parked": lab.take(parked, 3), "source": lab.take(source, 2)}


def a_retry_loop_through_a_holding_queue(lab):
    main_x, retry_x = lab.exchange("main"), lab.exchange("retry")
    main = lab.queue("main", main_x, ["primary.#"], **{"x-dead-letter-exchange": retry_x.name})
    main.bind_to(exchange=retry_x, routing_key="back.#")
    lab.queue("hold", retry_x, ["primary.#"], **{"x-message-ttl": 50, "x-dead-letter-exchange": retry_x.name,
                                                  "x-dead-letter-routing-key": "back.main"})
    lab.publish(main_x, "primary.t", {"n": 1}, headers={"CC": ["route.x"]})
    main.get().reject()  # -> retry exchange -> hold (50 ms) -> back to main
    return lab.take(main, 1)


def a_direct_exchange_routes_by_exact_key_and_cc(lab):
    direct = lab.exchange("direct", kind="direct")
    exact = lab.queue("exact", direct, ["dead-letter"])
    other = lab.queue("other", direct, ["return"])
    lab.publish(direct, "dead-letter", {"n": 1})
    lab.publish(direct, "dead", {"n": 2}, headers={"CC": ["return"]})
    lab.publish(direct, "dead-letter.x", {"n": 3})
    return {"exact": lab.take(exact, 1), "other": lab.take(other, 1)}


@pytest.mark.rabbitmq
@pytest.mark.parametrize("scenario", [ttl_and_cc, dead_letter_routing_key, reject_and_requeue,
                                      max_length_drops_the_oldest, a_retry_loop_through_a_holding_queue,
                                      a_direct_exchange_routes_by_exact_key_and_cc])
def test_the_embedded_broker_behaves_like_rabbitmq(rabbitmq, scenario):
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as memory_conn:
        on_memory = scenario(Lab(memory_conn))
    with kombu.Connection(rabbitmq) as rabbit_conn:
        on_rabbit = scenario(Lab(rabbit_conn))
    assert on_memory == on_rabbit


@pytest.mark.rabbitmq
def test_an_unused_queue_with_x_expires_goes_away_on_both_brokers(rabbitmq):
    for url, options in ((f"memory:///{uuid.uuid4().hex}", {"transport": Transport}), (rabbitmq, {})):
        with kombu.Connection(url, **options) as conn:
            lab = Lab(conn)
            kept = lab.queue("kept", lab.exchange("x"), ["#"], **{"x-expires": 60000})
            lab.queue("brief", lab.exchange("y"), ["#"], **{"x-expires": 100})
            time.sleep(0.6)
            kept.queue_declare(passive=True)
            with pytest.raises(Exception, match="NOT_FOUND - no queue 'tcpulse-dlx-.*-brief'"):
                kombu.Queue(f"tcpulse-dlx-{lab.tag}-brief", channel=conn.channel()).queue_declare(passive=True)


@pytest.mark.rabbitmq
def test_deleting_a_consumed_queue_cancels_its_consumer_on_both_brokers(rabbitmq):
    import amqp.exceptions

    for url, options in ((f"memory:///{uuid.uuid4().hex}", {"transport": Transport}), (rabbitmq, {})):
        with kombu.Connection(url, **options) as conn:
            lab = Lab(conn)
            exchange = lab.exchange("x")
            name = f"tcpulse-dlx-{lab.tag}-consumed"
            queue = kombu.Queue(name, exchange, routing_key="#", channel=conn.channel())  # not exclusive
            queue.declare()
            with kombu.Consumer(conn.channel(), [queue], callbacks=[lambda body, message: message.ack()]):
                with conn.clone() as operator:
                    operator.channel().queue_delete(name)
                with pytest.raises(amqp.exceptions.ConsumerCancelled):
                    conn.drain_events(timeout=5)
