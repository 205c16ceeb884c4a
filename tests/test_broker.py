"""The embedded `memory://` broker routes, expires, dead-letters and limits like RabbitMQ.

Each test uses its own virtual host, so the process-wide broker state never leaks between tests.
"""
import threading
import uuid

import amqp.exceptions
import kombu
import pytest

from tcpulse._broker.broker import Transport

COMPLETED = "exchange/taskcluster-queue/v1/task-completed"


@pytest.fixture
def conn():
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as connection:
        yield connection


def topic(name=COMPLETED):
    return kombu.Exchange(name, type="topic", durable=True)


def declare(conn, name, patterns, exchange=COMPLETED, **queue_kwargs):
    queue = kombu.Queue(name, topic(exchange), bindings=[
        kombu.binding(topic(exchange), routing_key=p) for p in patterns], channel=conn.channel(), **queue_kwargs)
    queue.declare()
    return queue


def publish(conn, body, key, exchange=COMPLETED, **kwargs):
    kombu.Producer(conn.channel()).publish(body, exchange=exchange, routing_key=key, **kwargs)


def drain(queue):
    bodies = []
    while (message := queue.get(no_ack=True)) is not None:
        bodies.append(message.payload)
    return bodies


def test_hash_matches_zero_words_where_kombus_stock_memory_transport_does_not(conn):
    queue = declare(conn, "q", ["primary.#"])
    publish(conn, {"n": 1}, "primary")
    assert drain(queue) == [{"n": 1}]
    with kombu.Connection("memory://") as stock:  # kombu's own transport, for contrast
        stock_queue = declare(stock, "stock-" + uuid.uuid4().hex, ["primary.#"])
        publish(stock, {"n": 1}, "primary")
        assert drain(stock_queue) == []


def test_a_cc_route_reaches_a_queue_bound_on_it_and_each_queue_gets_one_copy(conn):
    both = declare(conn, "both", ["primary.t1.#", "route.index.project.#"])
    routes_only = declare(conn, "routes", ["route.notify.*"])
    other = declare(conn, "other", ["primary.t2.#"])
    publish(conn, {"n": 1}, "primary.t1.0", headers={"CC": ["route.index.project.a", "route.notify.x"]})
    assert drain(both) == [{"n": 1}]
    assert drain(routes_only) == [{"n": 1}]
    assert drain(other) == []


def test_cc_stays_on_the_delivered_message_but_bcc_is_removed(conn):
    queue = declare(conn, "q", ["route.#"])
    publish(conn, {}, "primary.x", headers={"CC": ["route.a"], "BCC": ["route.b"]})
    message = queue.get(no_ack=True)
    assert message.headers["CC"] == ["route.a"] and "BCC" not in message.headers
    assert message.delivery_info["routing_key"] == "primary.x"


def test_publishing_to_an_exchange_that_does_not_exist_fails_with_not_found(conn):
    with pytest.raises(amqp.exceptions.NotFound, match="no exchange 'exchange/nope' in vhost"):
        publish(conn, {}, "k", exchange="exchange/nope")


def test_every_reference_exchange_exists_for_a_passive_declare(conn):
    topic()(conn.channel()).declare(passive=True)
    with pytest.raises(amqp.exceptions.NotFound, match="exchange/typo"):
        kombu.Exchange("exchange/typo", type="topic")(conn.channel()).declare(passive=True)


def test_redeclaring_a_queue_with_other_arguments_fails_with_precondition_failed(conn):
    declare(conn, "q", ["#"], max_length=10)
    with pytest.raises(amqp.exceptions.PreconditionFailed, match="inequivalent arg 'x-max-length' for queue 'q'"):
        declare(conn, "q", ["#"], max_length=20)


def dead_letter_setup(conn, **arguments):
    dlx = f"exchange/test/{uuid.uuid4().hex}"
    topic(dlx)(conn.channel()).declare()
    parked = declare(conn, "parked", ["#"], exchange=dlx)
    source = declare(conn, "source", ["primary.#"], queue_arguments={"x-dead-letter-exchange": dlx, **arguments})
    return source, parked


def test_an_expired_message_is_dead_lettered_with_its_keys_cc_and_x_death(conn):
    source, parked = dead_letter_setup(conn, **{"x-message-ttl": 0})
    publish(conn, {"n": 1}, "primary.a", headers={"CC": ["route.r"]})
    assert drain(source) == []
    message = parked.get(no_ack=True)
    assert message.payload == {"n": 1}
    assert message.delivery_info["routing_key"] == "primary.a"
    assert message.headers["CC"] == ["route.r"]
    death = message.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"], death["routing-keys"]) == \
        ("expired", "source", 1, ["primary.a", "route.r"])
    assert message.headers["x-first-death-reason"] == "expired"


def test_a_per_message_expiration_expires_it_and_is_removed_when_dead_lettered(conn):
    source, parked = dead_letter_setup(conn)
    publish(conn, {"n": 1}, "primary.a", expiration=0)
    publish(conn, {"n": 2}, "primary.a")
    assert drain(source) == [{"n": 2}]
    message = parked.get(no_ack=True)
    assert "expiration" not in message.properties
    assert message.headers["x-death"][0]["original-expiration"] == "0"


def test_the_dead_letter_routing_key_replaces_the_keys_and_drops_cc(conn):
    source, parked = dead_letter_setup(conn, **{"x-dead-letter-routing-key": "parked.key", "x-message-ttl": 0})
    publish(conn, {}, "primary.a", headers={"CC": ["route.r"]})
    drain(source)
    message = parked.get(no_ack=True)
    assert message.delivery_info["routing_key"] == "parked.key" and "CC" not in message.headers


def test_a_reject_without_requeue_dead_letters_and_a_requeue_redelivers_first(conn):
    source, parked = dead_letter_setup(conn)
    for n in (1, 2):
        publish(conn, {"n": n}, "primary.a")
    source.get().reject()
    assert parked.get(no_ack=True).headers["x-death"][0]["reason"] == "rejected"
    message = source.get()
    message.requeue()
    again = source.get(no_ack=True)
    assert again.payload == {"n": 2} and again.delivery_info["redelivered"] is True


def test_max_length_drops_the_oldest_into_the_dead_letter_exchange(conn):
    source, parked = dead_letter_setup(conn, **{"x-max-length": 2})
    for n in range(4):
        publish(conn, {"n": n}, "primary.a")
    assert drain(source) == [{"n": 2}, {"n": 3}]
    assert [m["n"] for m in drain(parked)] == [0, 1]


def test_max_length_with_reject_publish_keeps_the_oldest(conn):
    queue = declare(conn, "q", ["#"], queue_arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    publish(conn, {"n": 1}, "a")
    publish(conn, {"n": 2}, "a")
    assert drain(queue) == [{"n": 1}]


def test_a_retry_through_a_holding_queue_comes_back_with_key_and_cc_intact(conn):
    retry_exchange = f"exchange/test/{uuid.uuid4().hex}/retry"
    topic(retry_exchange)(conn.channel()).declare()
    main = declare(conn, "main", ["primary.#", "route.r.#"])
    main.bind_to(exchange=retry_exchange, routing_key="main.#")
    declare(conn, "hold", ["hold.#"], exchange=retry_exchange, queue_arguments={
        "x-message-ttl": 0, "x-dead-letter-exchange": retry_exchange, "x-dead-letter-routing-key": "main.retry"})
    publish(conn, {"n": 1}, "hold.5s", exchange=retry_exchange,
            headers={"CC": ["route.r.x"], "original-key": "primary.a"})
    message = main.get(no_ack=True)
    assert message.payload == {"n": 1} and message.headers["original-key"] == "primary.a"
    assert message.delivery_info["exchange"] == retry_exchange


def test_a_dead_letter_cycle_without_a_rejection_is_dropped(conn):
    loop_exchange = f"exchange/test/{uuid.uuid4().hex}"
    topic(loop_exchange)(conn.channel()).declare()
    queue = declare(conn, "loop", ["#"], exchange=loop_exchange,
                    queue_arguments={"x-message-ttl": 0, "x-dead-letter-exchange": loop_exchange})
    publish(conn, {}, "k", exchange=loop_exchange)
    assert drain(queue) == []


def test_unacked_messages_return_in_order_when_the_channel_closes(conn):
    declare(conn, "q", ["#"])
    for n in range(3):
        publish(conn, {"n": n}, "a")
    channel = conn.channel()
    queue = kombu.Queue("q", channel=channel)
    assert [queue.get().payload["n"] for _ in range(2)] == [0, 1]
    channel.close()
    assert [m["n"] for m in drain(kombu.Queue("q", channel=conn.channel()))] == [0, 1, 2]


def test_an_exclusive_queue_goes_away_with_its_connection():
    vhost = uuid.uuid4().hex
    with kombu.Connection(f"memory:///{vhost}", transport=Transport) as first:
        declare(first, "mine", ["#"], exclusive=True)
    with kombu.Connection(f"memory:///{vhost}", transport=Transport) as second:
        with pytest.raises(amqp.exceptions.NotFound, match="no queue 'mine'"):
            kombu.Queue("mine", channel=second.channel()).queue_declare(passive=True)


def test_a_consumer_waiting_in_drain_events_gets_a_message_published_from_another_thread(conn):
    queue = declare(conn, "q", ["primary.#"])
    received = []
    with kombu.Consumer(conn.channel(), [queue], callbacks=[lambda body, m: (received.append(body), m.ack())]):
        threading.Timer(0.05, publish, (conn.clone(), {"n": 1}, "primary")).start()
        conn.drain_events(timeout=10)
    assert received == [{"n": 1}]


def test_two_connections_on_one_queue_share_its_messages(conn):
    declare(conn, "shared", ["#"])
    for n in range(4):
        publish(conn, {"n": n}, "a")
    with conn.clone() as other:
        got = [kombu.Queue("shared", channel=c.channel()).get(no_ack=True).payload["n"]
               for c in (conn, other, conn, other)]
    assert sorted(got) == [0, 1, 2, 3]


def test_another_connection_may_not_declare_an_exclusive_queue_even_passively():
    vhost = uuid.uuid4().hex
    with kombu.Connection(f"memory:///{vhost}", transport=Transport) as first, \
            kombu.Connection(f"memory:///{vhost}", transport=Transport) as second:
        declare(first, "mine", ["#"], exclusive=True)
        with pytest.raises(amqp.exceptions.ResourceLocked, match="cannot obtain exclusive access to locked queue 'mine'"):
            kombu.Queue("mine", channel=second.channel()).queue_declare(passive=True)
        declare(first, "mine", ["#"], exclusive=True)  # its own connection may


def test_a_consumer_whose_queue_is_deleted_by_another_connection_is_cancelled(conn):
    queue = declare(conn, "doomed", ["#"])
    with kombu.Consumer(conn.channel(), [queue], callbacks=[lambda body, message: message.ack()]):
        with conn.clone() as operator:
            operator.channel().queue_delete("doomed")
        with pytest.raises(amqp.exceptions.ConsumerCancelled, match="queue 'doomed' was deleted"):
            conn.drain_events(timeout=5)


def test_a_listener_whose_queue_is_deleted_redeclares_it_and_goes_on(caplog):
    from tcpulse import Listener, QueueEvents

    vhost_free_name = f"redeclare-{uuid.uuid4().hex[:8]}"
    app = Listener(vhost_free_name, broker="memory://")
    seen = []
    app.on(QueueEvents.taskCompleted)(lambda event: seen.append(event.body["n"]))
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        with kombu.Connection("memory://", transport=Transport) as other:
            _until(app.is_ready)
            publish(other, {"n": 1}, KEY)
            _until(lambda: seen == [1])
            other.channel().queue_delete(app.queue)
            _until(lambda: app.queue in other.transport.broker.queues and app.is_ready())
            publish(other, {"n": 2}, KEY)
            _until(lambda: seen == [1, 2])
    finally:
        app.stop()
        thread.join(10)
    assert any("was deleted" in record.getMessage() for record in caplog.records)


KEY = "primary.t1.0.wg.w1.aws.b-linux.sched.g1._"


def _until(condition, timeout=10.0):
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_memory_vhosts_in_the_path_are_separate_brokers():
    from tcpulse import Listener, QueueEvents

    vhosts = [f"memory:///{uuid.uuid4().hex}" for _ in range(2)]
    apps, seen = [], {url: [] for url in vhosts}
    for url in vhosts:  # the same queue name and binding in each vhost
        app = Listener("same-name", broker=url)
        app.on(QueueEvents.taskCompleted)(lambda event, url=url: seen[url].append(event.body["n"]))
        apps.append(app)
    threads = [threading.Thread(target=app.run, daemon=True) for app in apps]
    for thread in threads:
        thread.start()
    try:
        _until(lambda: all(app.is_ready() for app in apps))
        for n, url in enumerate(vhosts):
            with kombu.Connection(url, transport=Transport) as conn:
                publish(conn, {"n": n}, KEY)
        _until(lambda: seen == {vhosts[0]: [0], vhosts[1]: [1]})
    finally:
        for app in apps:
            app.stop()
        for thread in threads:
            thread.join(10)
    assert [str(app.broker) for app in apps] == vhosts
