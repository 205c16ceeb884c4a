"""Dispatch: the topic matcher (pure, and against RabbitMQ itself), handler selection,
the arguments of `Listener.on`, and `Event`."""
import json
import random
import subprocess
import sys

import pytest

from tcpulse import QueueEvents, TaskclusterTopicExchangeFailure
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen import dispatch
from tcpulse._listen.dispatch import Event, Registry, bindings_for, topic_matches
from tcpulse._api.exchanges import Binding
from topic_cases import TOPIC_CASES

COMPLETED = "exchange/taskcluster-queue/v1/task-completed"
FAILED = "exchange/taskcluster-queue/v1/task-failed"


@pytest.mark.parametrize("pattern,key,expected", TOPIC_CASES)
def test_the_matcher_follows_amqp_topic_rules(pattern, key, expected):
    assert topic_matches(pattern, key) is expected


def _reference_match(pattern_words, key_words):
    """AMQP topic matching by its recursive definition (independent of the matcher under test)."""
    if not pattern_words:
        return not key_words
    head, rest = pattern_words[0], pattern_words[1:]
    if head == "#":
        return any(_reference_match(rest, key_words[i:]) for i in range(len(key_words) + 1))
    return bool(key_words) and head in ("*", key_words[0]) and _reference_match(rest, key_words[1:])


def test_the_matcher_agrees_with_the_recursive_definition_on_5000_random_patterns_and_keys():
    rng = random.Random(20240501)
    for _ in range(5000):
        pattern = [rng.choice(["a", "b", "*", "#", "#", ""]) for _ in range(rng.randint(0, 5))]
        key = [rng.choice(["a", "b", ""]) for _ in range(rng.randint(0, 5))]
        pattern_text, key_text = ".".join(pattern), ".".join(key)
        # The text is what travels: '' is zero words, and 'a.' is two words ('a' and '').
        expected = _reference_match(pattern_text.split(".") if pattern_text else [],
                                    key_text.split(".") if key_text else [])
        assert topic_matches(pattern_text, key_text) is expected, (pattern_text, key_text)


def _random_words(rng, choices, most):
    return ".".join(rng.choice(choices) for _ in range(rng.randint(0, most)))


@pytest.mark.parametrize("few_patterns", [16, 0], ids=["regex-per-pattern-where-it-applies", "word-tree-only"])
def test_select_agrees_with_the_matcher_for_many_handlers_keys_and_routes_at_once(few_patterns, monkeypatch):
    # select matches an exchange with few patterns by one regex each, others by one word tree
    # of all their patterns; both must pick exactly the handlers that matching each pattern on
    # its own would pick, in registration order.
    monkeypatch.setattr(dispatch, "FEW_PATTERNS", few_patterns)
    rng = random.Random(20261125)
    for _ in range(300):
        handlers = []
        registry = Registry()
        for n in range(rng.randint(1, 12)):
            patterns = [_random_words(rng, ["a", "b", "*", "#", "#", ""], 5) for _ in range(rng.randint(1, 3))]
            exchange = rng.choice(["exchange/x", "exchange/y"])
            func = lambda event: None  # noqa: E731 - distinct functions, named apart by the registry
            registry.add(func, [Binding(exchange, p) for p in patterns])
            handlers.append((exchange, patterns))
        key = _random_words(rng, ["a", "b", ""], 5)
        cc = [_random_words(rng, ["a", "b", ""], 4) for _ in range(rng.randint(0, 2))]
        expected = [registry.handlers[i] for i, (exchange, patterns) in enumerate(handlers)
                    if exchange == "exchange/x" and any(topic_matches(p, k) for p in patterns for k in (key, *cc))]
        assert registry.select("exchange/x", key, cc) == expected, (handlers, key, cc)


def test_the_table_has_sixty_cases_and_hash_matching_zero_words_at_start_middle_and_end():
    assert len(TOPIC_CASES) >= 60
    zero_word_hash = {(p, k) for p, k, ok in TOPIC_CASES if ok and "#" in p
                      and len(k.split(".") if k else []) < len([w for w in p.split(".") if w != "#"]) + 1}
    assert ("#.a", "a") in zero_word_hash and ("a.#.b", "a.b") in zero_word_hash
    assert ("a.#", "a") in zero_word_hash and ("#", "") in zero_word_hash


@pytest.mark.rabbitmq
def test_rabbitmq_routes_every_pattern_and_key_of_the_table_as_the_matcher_does(pulse_user, unique_name):
    import kombu

    patterns = sorted({p for p, _, _ in TOPIC_CASES})
    keys = sorted({k for _, k, _ in TOPIC_CASES})
    exchange = f"exchange/{pulse_user.name}/{unique_name}"
    address = resolve_broker(pulse_user.url)
    with address.connection(transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        channel.exchange_declare(exchange=exchange, type="topic", durable=False, auto_delete=True)
        queues = {}
        for i, pattern in enumerate(patterns):
            queues[pattern] = f"queue/{pulse_user.name}/{unique_name}-{i}"
            channel.queue_declare(queue=queues[pattern], exclusive=True, auto_delete=True)
            channel.queue_bind(queue=queues[pattern], exchange=exchange, routing_key=pattern)
        producer = kombu.Producer(channel, exchange=kombu.Exchange(exchange, type="topic"), auto_declare=False)
        for key in keys:
            producer.publish(json.dumps(key), routing_key=key, content_type="application/json")
        routed = {(p, json.loads(m.body)) for p in patterns for m in _drain(channel, queues[p])}
    expected = {(p, k) for p in patterns for k in keys if topic_matches(p, k)}
    assert routed == expected
    assert {(p, k) for p, k, ok in TOPIC_CASES if ok} <= routed
    assert not {(p, k) for p, k, ok in TOPIC_CASES if not ok} & routed


def _drain(channel, queue):
    messages = []
    while True:
        message = channel.basic_get(queue=queue, no_ack=True)
        if message is None:
            return messages
        messages.append(message)


def _registry(*entries):
    registry = Registry()
    for func, bindings in entries:
        registry.add(func, bindings)
    return registry


def first(event): ...
def second(event): ...
def third(event): ...


def test_a_handler_bound_on_the_primary_key_and_a_route_is_selected_once():
    registry = _registry((first, [Binding(COMPLETED, "primary.#"), Binding(COMPLETED, "route.index.#")]))
    chosen = registry.select(COMPLETED, "primary.t.0", ["route.index.a", "route.index.b"])
    assert [h.name for h in chosen] == [f"{__name__}.first"]


def test_handlers_are_selected_in_registration_order_and_only_on_their_exchange():
    registry = _registry((third, [Binding(COMPLETED, "#")]), (first, [Binding(FAILED, "#")]),
                         (second, [Binding(COMPLETED, "route.x")]))
    assert [h.func for h in registry.select(COMPLETED, "primary.a", ["route.x"])] == [third, second]
    assert [h.func for h in registry.select(FAILED, "primary.a", ["route.x"])] == [first]
    assert registry.select("exchange/other", "primary.a", ["route.x"]) == []


def test_select_with_only_keeps_the_named_handlers_for_a_retry():
    registry = _registry((first, [Binding(COMPLETED, "#")]), (second, [Binding(COMPLETED, "#")]))
    chosen = registry.select(COMPLETED, "k", (), only=[f"{__name__}.second"])
    assert [h.func for h in chosen] == [second]


def test_the_same_function_registered_twice_keeps_one_place_and_both_bindings():
    registry = _registry((first, [Binding(COMPLETED, "a")]), (second, [Binding(COMPLETED, "#")]),
                         (first, [Binding(COMPLETED, "b")]))
    assert [h.func for h in registry.handlers] == [first, second]
    assert [h.func for h in registry.select(COMPLETED, "b")] == [first, second]
    assert registry.bindings() == [Binding(COMPLETED, "a"), Binding(COMPLETED, "b"), Binding(COMPLETED, "#")]


def test_different_functions_with_one_qualified_name_get_distinct_handler_names():
    def make():
        def handler(event): ...
        return handler
    registry = _registry((make(), [Binding(COMPLETED, "#")]), (make(), [Binding(COMPLETED, "#")]))
    names = [h.name for h in registry.handlers]
    assert names[0].endswith("make.<locals>.handler") and names[1] == names[0] + "[2]"


def test_a_handler_that_takes_no_event_is_refused_naming_it():
    def no_args(): ...
    with pytest.raises(TypeError, match=r"handler '.*no_args' must accept exactly one positional argument"):
        Registry().add(no_args, [Binding(COMPLETED, "#")])


def test_on_arguments_cover_exchange_with_fields_binding_several_and_routes():
    ex = QueueEvents.taskCompleted
    assert bindings_for([ex], fields={"taskId": "t"}) == [ex(taskId="t")]
    assert bindings_for([ex(taskGroupId="g"), QueueEvents.taskFailed]) == [ex(taskGroupId="g"), QueueEvents.taskFailed()]
    assert bindings_for([ex, QueueEvents.taskFailed], route=["index.a.#", "notify.*"]) == [
        Binding(COMPLETED, "route.index.a.#"), Binding(COMPLETED, "route.notify.*"),
        Binding(FAILED, "route.index.a.#"), Binding(FAILED, "route.notify.*")]
    official = {"exchange": COMPLETED, "routingKeyPattern": "primary.#"}
    assert bindings_for([official]) == [Binding(COMPLETED, "primary.#")]


@pytest.mark.parametrize("targets,route,fields,message", [
    ((), None, {}, r"on\(\) needs at least one exchange or binding"),
    ((QueueEvents.taskCompleted,), "index.#", {"taskId": "t"}, "either route= .* or routing-key fields, not both"),
    ((QueueEvents.taskCompleted(),), None, {"taskId": "t"}, "taskId apply only to an Exchange"),
    (("exchange/taskcluster-queue/v1/task-completed",), None, {}, "on\\(\\) takes Exchange or Binding objects .* got str"),
])
def test_bad_on_arguments_are_refused_with_a_message_saying_why(targets, route, fields, message):
    with pytest.raises(TypeError, match=message):
        bindings_for(targets, route, fields)


def test_an_unknown_field_is_refused_by_the_exchange_with_a_suggestion():
    with pytest.raises(TaskclusterTopicExchangeFailure, match="Did you mean 'taskGroupId'"):
        bindings_for([QueueEvents.taskCompleted], fields={"taskGroupID": "g"})


def test_an_empty_route_is_refused_naming_the_exchange():
    with pytest.raises(TaskclusterTopicExchangeFailure, match=r"route for QueueEvents.taskCompleted .* \(got ''\)"):
        bindings_for([QueueEvents.taskCompleted], route="")


def test_an_event_strips_route_prefixes_and_parses_fields_from_the_reference():
    event = Event({}, COMPLETED, "primary.t1.0.wg.w.p.wt.s.g._", cc=["route.index.a.b", "other"])
    assert event.routes == ["index.a.b"]
    assert (event.fields["taskId"], event.fields["runId"], event.fields["taskGroupId"]) == ("t1", "0", "g")
    assert Event({}, "exchange/nobody/knows", "a.b").fields == {}


def test_the_pure_modules_import_neither_kombu_nor_requests():
    code = "import sys, tcpulse._listen.dispatch, tcpulse._listen.acks, tcpulse._listen.pool, tcpulse._listen.listener, tcpulse._listen.topology, tcpulse._broker.connection, tcpulse.cli; " \
           "print(sorted(m for m in ('kombu', 'requests', 'amqp') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
