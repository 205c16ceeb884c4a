"""One corpus of routing cases gives the same queue (handler) selection on the embedded
`memory://` broker and on the real RabbitMQ, and agrees with the pure matcher.

Each distinct binding pattern gets its own queue (one per would-be handler) on one topic
exchange; every case is published once with its primary key and CC routes; then every queue is
drained. A case's selection is the set of patterns whose queues received its message. The whole
cross product (every message against every pattern) must agree, each queue may receive a message
at most once, and each case's own pattern must match its hand-worked `expected`. Then the same
corpus goes through a real `Listener` with one handler per pattern, on both brokers: the handlers
that run for each case must be the same.
"""
import collections
import threading
import time
import uuid

import kombu
import pytest

from tcpulse._broker.broker import Transport
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.dispatch import topic_matches
from topic_cases import TOPIC_CASES

# (binding pattern, primary key, CC routes as sent in the header, expected), the expected
# column worked out by hand from the AMQP topic rules, not computed by the matcher under test.
CASES = [
    # '#' matching zero words: at the end, start, middle, and alone
    ("primary.#", "primary", (), True),
    ("primary.#", "primary.a", (), True),
    ("primary.#", "primary.a.b.c", (), True),
    ("primary.#", "other", (), False),
    ("primary.#", "", (), False),
    ("#", "", (), True),
    ("#", "a", (), True),
    ("#", "a.b.c", (), True),
    ("#.a", "a", (), True),
    ("#.a", "b.a", (), True),
    ("#.a", "a.b", (), False),
    ("a.#.b", "a.b", (), True),
    ("a.#.b", "a.x.y.b", (), True),
    ("a.#.b", "a.x.y", (), False),
    ("a.#.#.b", "a.b", (), True),
    ("#.#", "", (), True),
    ("#.#", "a.b", (), True),
    ("#.*", "a", (), True),
    ("#.*", "", (), False),
    ("*.#", "a", (), True),
    ("*.#", "", (), False),
    ("#.*.#", "a.b", (), True),
    ("a.#.*", "a", (), False),
    ("a.#.*", "a.b", (), True),
    ("a.#", "a.", (), True),
    # '*' exactly one word
    ("*", "a", (), True),
    ("*", "", (), False),
    ("*", "a.b", (), False),
    ("*.*", "a.b", (), True),
    ("*.*", "a", (), False),
    ("a.*", "a", (), False),
    ("a.*", "a.b", (), True),
    ("a.*.c", "a.b.c", (), True),
    ("a.*.c", "a.c", (), False),
    ("a.*.b", "a..b", (), True),
    # literal words
    ("a.b", "a.b", (), True),
    ("a.b", "a.b.c", (), False),
    ("a.b", "a.bb", (), False),
    ("A.b", "a.b", (), False),
    ("a..b", "a..b", (), True),
    ("", "", (), True),
    ("", "a", (), False),
    # Taskcluster-shaped primary keys (taskCompleted: taskId runId workerGroup workerId
    # provisionerId workerType schedulerId taskGroupId reserved...)
    ("primary.*.*.*.*.*.*.*.g1.#", "primary.t1.0.wg.w1.aws.b-linux.sched.g1._", (), True),
    ("primary.*.*.*.*.*.*.*.g1.#", "primary.t1.0.wg.w1.aws.b-linux.sched.g1", (), True),
    ("primary.*.*.*.*.*.*.*.g1.#", "primary.t1.0.wg.w1.aws.b-linux.sched.g2._", (), False),
    ("primary.t1.*.*.*.*.*.*.*.#", "primary.t1.0.wg.w1.aws.b-linux.sched.g1._", (), True),
    ("primary.*.*.*.*.aws.*.*.*.#", "primary.t1.0.wg.w1.gcp.b-linux.sched.g1._", (), False),
    # CC routes
    ("route.index.project.#", "primary.x", ("route.index.project.a.b",), True),
    ("route.index.project.#", "primary.x", ("route.index.project",), True),
    ("route.index.project.#", "primary.x", ("route.index.other.a",), False),
    ("route.index.project.#", "primary.x", (), False),
    ("route.index.*.a", "primary.x", ("route.index.other.b", "route.index.p.a"), True),
    ("primary.x.#", "primary.x", ("route.a",), True),
    ("route.#", "primary.y", ("route.a", "route.b"), True),
    ("#.y", "primary.y", ("route.y",), True),
    ("route.a", "route.a", (), True),
    ("route.a", "primary", ("route.b",), False),
    ("primary.*", "other", ("primary.x",), True),
    ("route.notify.email.*.on-failed", "primary.t", ("route.notify.email.a@b.c.on-failed",), False),
    ("route.notify.email.#", "primary.t", ("route.notify.email.a@b.c.on-failed",), True),
    ("route.tc-treeherder.v2.*.*.*", "primary.t", ("route.tc-treeherder.v2.try.abc.123",), True),
    ("route.*", "primary", ("route",), False),
    ("route.#", "primary", ("route",), True),
    ("#.on-failed", "primary", ("route.notify.x.on-failed",), True),
    ("route.index.gecko.v2.try.#", "p", ("route.index.gecko.v2.try.latest.firefox.linux64",
                                         "route.index.gecko.v2.try.revision.abc.firefox.linux64"), True),
    ("route.index.gecko.v2.try.#", "p", ("route.index.gecko.v2.mozilla-central.latest",), False),
]
# The listener's table of (pattern, key) cases joins the corpus, with no CC routes.
CASES = CASES + [(pattern, key, (), expected) for pattern, key, expected in TOPIC_CASES]
PATTERNS = sorted({case[0] for case in CASES})


def deliver_corpus(connection: kombu.Connection) -> dict:
    """Publish every case and return {case index: Counter(pattern -> copies received)}."""
    channel = connection.channel()
    exchange = kombu.Exchange(f"exchange/tcpulse-test/{uuid.uuid4().hex}", type="topic", auto_delete=True)
    exchange(channel).declare()
    queues = {}
    for n, pattern in enumerate(PATTERNS):
        queue = kombu.Queue(f"tcpulse-parity-{uuid.uuid4().hex[:8]}-{n}", exchange, routing_key=pattern,
                            exclusive=True, channel=channel)
        queue.declare()
        queues[pattern] = queue
    producer = kombu.Producer(channel, exchange=exchange)
    for index, (_, key, routes, _) in enumerate(CASES):
        producer.publish({"case": index}, routing_key=key, headers={"CC": list(routes)} if routes else {})
    received = collections.defaultdict(collections.Counter)
    for pattern, queue in queues.items():
        while (message := queue.get(no_ack=True)) is not None:
            received[message.payload["case"]][pattern] += 1
    return received


def expected_by_matcher(key: str, routes: tuple) -> set:
    return {p for p in PATTERNS if any(topic_matches(p, k) for k in (key, *routes))}


def test_the_corpus_is_large_enough_and_has_cc_cases():
    assert len(CASES) >= 60 + len(TOPIC_CASES)
    assert sum(1 for case in CASES if case[2]) >= 15


@pytest.mark.rabbitmq
def test_memory_and_rabbitmq_select_the_same_queues_for_every_case(rabbitmq):
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as memory_conn:
        on_memory = deliver_corpus(memory_conn)
    with kombu.Connection(rabbitmq, transport_options={"confirm_publish": True}) as rabbit_conn:
        on_rabbit = deliver_corpus(rabbit_conn)
    differences = [(CASES[i], set(on_memory[i]), set(on_rabbit[i]))
                   for i in range(len(CASES)) if set(on_memory[i]) != set(on_rabbit[i])]
    assert differences == []
    assert all(count == 1 for counts in (*on_memory.values(), *on_rabbit.values()) for count in counts.values())
    wrong = [case for i, case in enumerate(CASES) if (case[0] in on_rabbit[i]) != case[3]]
    assert wrong == []


def test_memory_selection_agrees_with_the_hand_worked_column_and_the_pure_matcher():
    with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport=Transport) as memory_conn:
        on_memory = deliver_corpus(memory_conn)
    wrong = [case for i, case in enumerate(CASES) if (case[0] in on_memory[i]) != case[3]]
    assert wrong == []
    assert all(set(on_memory[i]) == expected_by_matcher(key, routes)
               for i, (_, key, routes, _) in enumerate(CASES))


def handler_selection(broker_url: str) -> dict:
    """Run a real Listener with one handler per pattern on `broker_url`, publish every case,
    and return {case index: [patterns of the handlers that ran]}."""
    from tcpulse import Listener
    from tcpulse._api.exchanges import Binding

    exchange = f"exchange/tcpulse-test/{uuid.uuid4().hex}"
    app = Listener(broker=broker_url, declare_exchanges=True)
    ran = collections.defaultdict(list)
    done = threading.Event()
    for pattern in PATTERNS:
        app.add_handler(lambda event, p=pattern: ran[event.body["case"]].append(p), Binding(exchange, pattern))
    app.add_handler(lambda event: done.set(), Binding(exchange, "tcpulse.end.of.corpus"))
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    address = resolve_broker(broker_url)
    with address.connection() as conn:
        _wait_until(app.is_ready)
        producer = kombu.Producer(conn.channel(), exchange=kombu.Exchange(exchange, type="topic"))
        for index, (_, key, routes, _) in enumerate(CASES):
            producer.publish({"case": index}, routing_key=key, headers={"CC": list(routes)} if routes else {})
        producer.publish({"case": -1}, routing_key="tcpulse.end.of.corpus")  # queues keep order
        assert done.wait(30), "the listener never handled the end-of-corpus message"
        app.stop()
        thread.join(30)
        conn.channel().exchange_delete(exchange)
    return {i: sorted(ran[i]) for i in range(len(CASES))}


def _wait_until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the listener never became ready"
        time.sleep(0.02)


@pytest.mark.rabbitmq
def test_a_listener_runs_the_same_handlers_for_every_case_on_memory_and_on_rabbitmq(rabbitmq):
    on_memory = handler_selection("memory://")
    on_rabbit = handler_selection(rabbitmq)
    assert [i for i in on_memory if on_memory[i] != on_rabbit[i]] == []
    assert all(on_memory[i] == sorted(expected_by_matcher(key, routes)) for i, (_, key, routes, _) in enumerate(CASES))
    assert [case for i, case in enumerate(CASES) if (case[0] in on_rabbit[i]) != case[3]] == []
