"""Exchange classes, bindings, routing keys and parsing, over every exchange of both shipped
reference sets, today's (`bundled`) and `legacy-2018` (the parameters come from the loaded
references, not from a hand-written list; test ids start with the set).

The official 2018 client's patterns are a fixture for the legacy set; after changing it,
regenerate it with `~/.cache/tcpulse-tests/taskcluster-4.0.1/bin/python
tests/fixtures/make_official_patterns.py` (any interpreter with taskcluster==4.0.1; the
`official_python` fixture of tests/conftest.py builds that one). Today's set is compared with
the official client of today in tests/test_official_client.py.
"""
import doctest
import importlib
import json
import re
from pathlib import Path

import pytest

import tcpulse
from tcpulse import Binding, Exchange, TaskclusterTopicExchangeFailure
from tcpulse._api.exchanges import class_exchanges, events_class, exchange_named, exchanges, find_exchange
from tcpulse.references import BUNDLED, LEGACY, SHIPPED, open_set

exchanges_module = importlib.import_module("tcpulse._api.exchanges")

FIXTURE = Path(__file__).parent / "fixtures" / "official_patterns.json"
SETS = {label: open_set(label) for label in SHIPPED}
EXCHANGE_REFERENCES = [ref for refset in SETS.values() for ref in refset.references("exchanges")]
REFERENCE_IDS = [f"{label}:{name}" for label, refset in SETS.items() for name in refset.names("exchanges")]
# Each exchange's generated class and set, by identity: the same names exist in both sets.
CLASS_OF = {id(ex): events_class(ref) for ref in EXCHANGE_REFERENCES for ex in class_exchanges(events_class(ref))}
SET_OF = {id(ex): label for label, refset in SETS.items() for ref in refset.references("exchanges")
          for ex in class_exchanges(events_class(ref))}
ALL = [ex for ref in EXCHANGE_REFERENCES for ex in class_exchanges(events_class(ref))]
IDS = [f"{SET_OF[id(ex)]}:{ex.service}.{ex.name}" for ex in ALL]
FIELDS = [(ex, f) for ex in ALL for f in ex.fields]
FIELD_IDS = [f"{SET_OF[id(ex)]}:{ex.service}.{ex.name}.{f.name}" for ex, f in FIELDS]
SINGLE = [(ex, f) for ex, f in FIELDS if f.constant is None and not f.multiple_words]
SINGLE_IDS = [f"{SET_OF[id(ex)]}:{ex.service}.{ex.name}.{f.name}" for ex, f in SINGLE]
CONSTANT = [(ex, f) for ex, f in FIELDS if f.constant is not None]
CONSTANT_IDS = [f"{SET_OF[id(ex)]}:{ex.service}.{ex.name}.{f.name}" for ex, f in CONSTANT]
over_exchanges = pytest.mark.parametrize("ex", ALL, ids=IDS)
over_fields = pytest.mark.parametrize("ex, field", FIELDS, ids=FIELD_IDS)
over_single_words = pytest.mark.parametrize("ex, field", SINGLE, ids=SINGLE_IDS)
over_constants = pytest.mark.parametrize("ex, field", CONSTANT, ids=CONSTANT_IDS)


def label(ex: Exchange) -> str:
    return f"{ex.service}.{ex.name} ({ex.exchange})"


def default_word(field) -> str:
    return field.constant or ("#" if field.multiple_words else "*")


def sample(field) -> str:
    """A legal concrete value; the multi-word one contains dots on purpose."""
    if field.constant is not None:
        return field.constant
    return "one.two.three" if field.multiple_words else f"{field.name}-v"


def every_value(ex: Exchange) -> dict:
    return {f.name: sample(f) for f in ex.fields}


def error(call, *args, **kwargs) -> str:
    with pytest.raises(TaskclusterTopicExchangeFailure) as info:
        call(*args, **kwargs)
    return str(info.value)


# --- the generated classes -------------------------------------------------------------------

@pytest.mark.parametrize("label, classes", [
    (BUNDLED, {"AuthEvents", "GithubEvents", "HooksEvents", "NotifyEvents", "QueueEvents", "WorkerManagerEvents"}),
    (LEGACY, {"AuthEvents", "AwsProvisionerEvents", "GithubEvents", "PurgeCacheEvents", "QueueEvents", "TreeherderEvents"}),
])
def test_every_exchange_entry_of_every_reference_of_a_set_is_listed_once_in_order(label, classes):
    refset = SETS[label]
    expected = [(ref.name, entry.name) for ref in refset.references("exchanges") for entry in ref.entries]
    assert [(ex.service, ex.name) for ex in exchanges(refset)] == expected
    assert set(refset.names("exchanges")) == classes


def test_the_package_classes_come_from_the_bundled_set():
    for ref in SETS[BUNDLED].references("exchanges"):
        assert getattr(tcpulse, ref.name) is events_class(ref)
    assert exchanges() == exchanges(SETS[BUNDLED])


@over_exchanges
def test_the_class_attribute_is_an_exchange_carrying_the_reference_entry(ex):
    ref = CLASS_OF[id(ex)].reference
    entry = next(e for e in ref.entries if e.name == ex.name)
    attribute = getattr(CLASS_OF[id(ex)], ex.name)
    assert isinstance(attribute, Exchange) and attribute == ex
    assert ex.exchange == ref.exchange_prefix + entry.exchange
    assert (ex.fields, ex.title, ex.description) == (entry.routing_key, entry.title, entry.description)
    assert repr(ex) == f"<Exchange {ex.service}.{ex.name} {ex.exchange}>"


@pytest.mark.parametrize("ref", EXCHANGE_REFERENCES, ids=REFERENCE_IDS)
def test_a_generated_class_is_named_documented_and_built_once(ref):
    cls = events_class(ref)
    assert cls is events_class(ref)
    assert (cls.__name__, cls.__module__, repr(cls)) == (ref.name, "tcpulse", f"<class 'tcpulse.{ref.name}'>")
    assert ref.description and ref.description in cls.__doc__
    assert cls.exchangePrefix == ref.exchange_prefix
    assert repr(cls()) == f"{ref.name}(exchangePrefix={ref.exchange_prefix!r})"


def test_the_shipped_pattern_for_a_task_group_is_the_documented_one():
    binding = tcpulse.QueueEvents.taskCompleted(taskGroupId="g")
    assert binding["routingKeyPattern"] == "primary.*.*.*.*.*.*.*.g.#"
    assert binding["exchange"] == "exchange/taskcluster-queue/v1/task-completed"


# --- binding patterns ------------------------------------------------------------------------

@over_exchanges
def test_no_arguments_give_wildcards_constants_and_a_hash_for_the_multi_word_field(ex):
    binding = ex()
    assert binding.exchange == ex.exchange
    assert binding.routing_key_pattern == ".".join(default_word(f) for f in ex.fields)
    assert binding.source is ex


@over_fields
def test_a_field_given_alone_fills_its_own_word_only(ex, field):
    words = [sample(f) if f is field else default_word(f) for f in ex.fields]
    assert ex(**{field.name: sample(field)}).routing_key_pattern == ".".join(words)


@over_single_words
def test_an_int_value_is_written_as_its_decimal_text(ex, field):
    words = ["42" if f is field else default_word(f) for f in ex.fields]
    assert ex(**{field.name: 42}).routing_key_pattern == ".".join(words)


@over_single_words
def test_a_wildcard_value_is_allowed_in_a_pattern(ex, field):
    assert ex(**{field.name: "*"}) == ex()


@over_constants
def test_a_constant_field_keeps_its_constant_whether_given_or_not(ex, field):
    assert ex(**{field.name: field.constant}) == ex()
    assert ex().routing_key_pattern.split(".")[ex.fields.index(field)] == field.constant


@over_exchanges
def test_every_field_given_as_keywords_or_as_a_dict_gives_the_same_binding(ex):
    values = every_value(ex)
    expected = ".".join(sample(f) for f in ex.fields)
    assert ex(**values).routing_key_pattern == expected
    assert ex(values) == ex(**values)
    assert ex({}) == ex()


@over_exchanges
def test_a_string_passes_through_untouched(ex):
    for pattern in ("primary.#", "anything.at..all.*", ""):
        assert ex(pattern).routing_key_pattern == pattern


@over_exchanges
def test_none_counts_as_not_given(ex):
    nothing = {f.name: None for f in ex.fields}
    assert ex(**nothing) == ex()
    assert ex(nothing) == ex()


# --- the Binding -----------------------------------------------------------------------------

@over_exchanges
def test_a_binding_reads_like_the_official_clients_dict(ex):
    binding = ex(**every_value(ex))
    as_dict = {"exchange": ex.exchange, "routingKeyPattern": binding.routing_key_pattern}
    assert dict(binding) == as_dict and binding == as_dict
    assert (binding["exchange"], binding["routingKeyPattern"]) == (ex.exchange, binding.routing_key_pattern)
    assert list(binding) == ["exchange", "routingKeyPattern"] and len(binding) == 2


def test_a_binding_is_immutable_and_hashable_whatever_its_source():
    from_exchange = tcpulse.QueueEvents.taskCompleted("primary.#")
    raw = Binding("exchange/taskcluster-queue/v1/task-completed", "primary.#")
    assert raw.source is None and from_exchange.source is tcpulse.QueueEvents.taskCompleted
    assert raw == from_exchange and len({raw, from_exchange}) == 1
    with pytest.raises(AttributeError, match="^Binding is immutable: cannot set 'routing_key_pattern'$"):
        raw.routing_key_pattern = "#"
    assert repr(raw) == ("Binding(exchange='exchange/taskcluster-queue/v1/task-completed', "
                         "routing_key_pattern='primary.#')")
    assert raw != Binding(raw.exchange, "primary.*")


def test_a_binding_refuses_a_missing_exchange_or_a_non_string_pattern():
    assert error(Binding, "", "#") == "Binding exchange must be a non-empty string (got '')"
    assert error(Binding, "exchange/x", 5) == "Binding routing_key_pattern for exchange/x must be a string (got int 5)"


# --- errors (CONTRACT §1), message asserted --------------------------------------------------

@over_fields
def test_an_unknown_field_is_refused_with_the_closest_name_and_the_valid_ones(ex, field):
    typo = field.name[:-1] + field.name[-1].swapcase()
    names = ", ".join(f.name for f in ex.fields)
    expected = (f"{typo!r} is not a routing-key field of {label(ex)}. Did you mean {field.name!r}? "
                f"Valid fields: {names}")
    assert error(ex, **{typo: "x"}) == expected
    assert error(ex, {typo: "x"}) == expected
    assert error(ex.routing_key, **{typo: "x"}) == expected


@over_exchanges
def test_an_unknown_field_with_nothing_close_lists_the_valid_names_only(ex):
    names = ", ".join(f.name for f in ex.fields)
    assert error(ex, zzz=1) == f"'zzz' is not a routing-key field of {label(ex)}. Valid fields: {names}"


@over_single_words
def test_a_dot_in_a_single_word_field_is_refused(ex, field):
    expected = f"field {field.name!r} of {label(ex)} is a single routing-key word and cannot contain '.' (got 'a.b')"
    assert error(ex, **{field.name: "a.b"}) == expected
    assert error(ex.routing_key, **{**every_value(ex), field.name: "a.b"}) == expected


@over_fields
def test_an_empty_value_is_refused(ex, field):
    assert error(ex, **{field.name: ""}) == f"field {field.name!r} of {label(ex)} must not be empty (got '')"


@over_fields
def test_a_value_that_is_neither_text_nor_an_int_is_refused(ex, field):
    expected = f"field {field.name!r} of {label(ex)} must be a string or an integer (got list ['a'])"
    assert error(ex, **{field.name: ["a"]}) == expected
    assert "got bool True" in error(ex, **{field.name: True})


@over_constants
def test_a_value_other_than_the_constant_is_refused(ex, field):
    expected = f"field {field.name!r} of {label(ex)} is the constant {field.constant!r} (got 'other')"
    assert error(ex, **{field.name: "other"}) == expected
    assert error(ex.routing_key, **{**every_value(ex), field.name: "other"}) == expected


@over_exchanges
def test_mixing_a_positional_argument_with_keyword_fields_is_refused(ex):
    first = ex.fields[-1].name
    expected = (f"{label(ex)} takes one positional argument (a pattern string or a dict of fields) "
                f"or keyword fields, not both (got 1 positional and {first})")
    assert error(ex, "primary.#", **{first: "x"}) == expected
    assert error(ex, {}, **{first: "x"}) == expected
    assert error(ex, "a", "b") == f"{label(ex)} takes at most one positional argument (got 2)"
    assert error(ex, 5) == f"{label(ex)} expects a pattern string, a dict of fields or keyword fields (got int 5)"


# --- routing_key() and parse() ---------------------------------------------------------------

@over_exchanges
def test_a_routing_key_with_every_field_parses_back_to_the_same_values(ex):
    values = every_value(ex)
    key = ex.routing_key(**values)
    assert key == ".".join(sample(f) for f in ex.fields)
    assert ex.parse(key) == values


@over_exchanges
def test_a_routing_key_with_only_required_fields_writes_an_underscore_for_the_rest(ex):
    required = {f.name: sample(f) for f in ex.fields if f.required and f.constant is None}
    key = ex.routing_key(**required)
    assert key == ".".join(sample(f) if f.required else "_" for f in ex.fields)
    assert ex.parse(key) == {f.name: sample(f) if f.required else None for f in ex.fields}
    assert ex.routing_key(**ex.parse(key)) == key


@over_single_words
def test_an_int_value_round_trips_as_text(ex, field):
    values = {**every_value(ex), field.name: 0}
    assert ex.parse(ex.routing_key(**values))[field.name] == "0"


@over_exchanges
def test_a_concrete_key_matches_the_pattern_built_from_the_same_fields(ex):
    from tcpulse._listen.dispatch import topic_matches

    values = every_value(ex)
    key = ex.routing_key(**values)
    assert topic_matches(ex().routing_key_pattern, key)
    assert topic_matches(ex(**values).routing_key_pattern, key)


@over_exchanges
def test_a_routing_key_lists_every_missing_required_field(ex):
    required = [f.name for f in ex.fields if f.required and f.constant is None]
    if not required:
        assert ex.routing_key() == ".".join(default_word(f).replace("#", "_").replace("*", "_") for f in ex.fields)
        return
    expected = f"{label(ex)} needs every required field for a routing key; missing: {', '.join(required)}"
    assert error(ex.routing_key) == expected
    assert error(ex.routing_key, **{name: None for name in required}) == expected


@over_fields
def test_a_wildcard_in_a_routing_key_value_is_refused(ex, field):
    if field.constant is not None:
        return  # a constant cannot take another value; covered by the constant test
    for wildcard in ("*", "#"):
        expected = f"field {field.name!r} of {label(ex)} cannot contain '*' or '#' in a routing key (got {wildcard!r})"
        assert error(ex.routing_key, **{**every_value(ex), field.name: wildcard}) == expected


@over_exchanges
def test_parse_refuses_a_key_with_too_few_words(ex):
    multi = any(f.multiple_words and not f.required for f in ex.fields)
    least = len(ex.fields) - (1 if multi else 0)
    if least == 0:
        assert ex.parse("") == {f.name: None for f in ex.fields}  # every key fits: nothing to refuse
        return
    key = ".".join(sample(f).split(".")[0] for f in ex.fields)
    short = ".".join(key.split(".")[: least - 1])
    quantity = "at least" if any(f.multiple_words for f in ex.fields) else "exactly"
    message = error(ex.parse, short)
    assert message.startswith(f"routing key {short!r} does not fit {label(ex)}: expected {quantity} {least} words (")
    assert message.endswith(f"), got {least - 1}")


@over_exchanges
def test_parse_refuses_a_key_with_too_many_words_unless_a_field_spans_words(ex):
    key = ex.routing_key(**every_value(ex)) + ".extra"
    if any(f.multiple_words for f in ex.fields):
        assert ex.parse(key)[next(f.name for f in ex.fields if f.multiple_words)].endswith(".extra")
        return
    assert f"does not fit {label(ex)}: expected exactly {len(ex.fields)} words" in error(ex.parse, key)


@over_constants
def test_parse_refuses_a_key_whose_constant_word_differs(ex, field):
    words = ex.routing_key(**every_value(ex)).split(".")
    words[ex.fields.index(field)] = "other"
    key = ".".join(words)
    assert error(ex.parse, key) == (
        f"routing key {key!r} does not fit {label(ex)}: field {field.name!r} must be the constant "
        f"{field.constant!r} (got 'other')")


# --- instances with options -----------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda cls: cls({"exchangePrefix": "exchange/x/v1/"}),
    lambda cls: cls(exchangePrefix="exchange/x/v1/"),
    lambda cls: cls({"exchangePrefix": "exchange/x/v1", "rootUrl": "https://tc.example.com"}),
], ids=["options dict", "keyword option", "prefix without trailing slash"])
@over_exchanges
def test_an_instance_uses_its_exchange_prefix_and_leaves_the_class_alone(ex, make):
    instance = make(CLASS_OF[id(ex)])
    suffix = ex.exchange[len(CLASS_OF[id(ex)].reference.exchange_prefix):]
    on_instance = getattr(instance, ex.name)
    assert on_instance.exchange == "exchange/x/v1/" + suffix
    assert on_instance(**every_value(ex)) == {"exchange": on_instance.exchange,
                                              "routingKeyPattern": ex(**every_value(ex)).routing_key_pattern}
    assert getattr(type(instance), ex.name) is ex


def test_an_instance_refuses_an_unknown_option_and_a_bad_prefix():
    assert error(tcpulse.QueueEvents, exchangePrefx="x") == (
        "unknown QueueEvents option 'exchangePrefx'. Did you mean 'exchangePrefix'? Valid options: "
        "rootUrl, baseUrl, credentials, authorizedScopes, maxRetries, signedUrlExpiration, timeout, exchangePrefix, validate")
    assert error(tcpulse.QueueEvents, {"exchangePrefix": ""}) == (
        "option 'exchangePrefix' of QueueEvents must be a non-empty string such as "
        "'exchange/taskcluster-queue/v1/' (got '')")


def test_an_instances_repr_never_shows_its_credentials():
    secret = "s3cr3t-token"
    events = tcpulse.QueueEvents({"credentials": {"clientId": "me", "accessToken": secret}})
    assert secret not in repr(events) and secret not in repr(events.taskCompleted())


# --- the registry ----------------------------------------------------------------------------

@over_exchanges
def test_an_exchange_is_found_by_class_and_name_or_by_full_name(ex):
    refset = SETS[SET_OF[id(ex)]]
    assert find_exchange(f"{ex.service}.{ex.name}", refset) is ex
    assert find_exchange(ex.exchange, refset) is ex
    assert exchange_named(ex.exchange, refset) is ex


def test_an_unknown_exchange_is_refused_with_the_closest_match():
    assert error(find_exchange, "QueueEvents.taskComplete") == (
        "'QueueEvents.taskComplete' is not a known exchange (give 'Service.name' such as "
        "'QueueEvents.taskCompleted', or a full exchange name). Did you mean 'QueueEvents.taskCompleted'? "
        "Exchange classes: AuthEvents, GithubEvents, HooksEvents, NotifyEvents, QueueEvents, "
        "WorkerManagerEvents")
    assert "Did you mean 'exchange/taskcluster-github/v1/push'?" in error(
        find_exchange, "exchange/taskcluster-github/v1/pushh")
    assert exchange_named("exchange/taskcluster-github/v1/pushh") is None


def test_the_package_level_exchanges_lists_every_exchange_of_the_active_set():
    assert tcpulse.exchanges() == exchanges()
    assert len(exchanges()) == len([ex for ex in ALL if SET_OF[id(ex)] == BUNDLED]) == 36


def test_every_public_example_in_the_module_runs():
    failures, tried = doctest.testmod(exchanges_module)
    assert tried >= 10 and failures == 0


# --- equality with the official 2018 client (the legacy set) ---------------------------------

OFFICIAL = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]


def test_the_official_2018_fixture_covers_every_exchange_of_the_legacy_set():
    legacy = {(ex.service, ex.name) for ex in ALL if SET_OF[id(ex)] == LEGACY}
    assert {(c["service"], c["name"]) for c in OFFICIAL} == legacy


@pytest.mark.parametrize("case", OFFICIAL, ids=[f"{c['service']}.{c['name']}: {c['case']}" for c in OFFICIAL])
def test_the_legacy_sets_pattern_equals_the_official_2018_clients(case):
    cls = events_class(SETS[LEGACY].get(case["service"]))
    owner = cls(case["options"]) if case["options"] is not None else cls
    binding = getattr(owner, case["name"])(*case["args"], **case["kwargs"])
    assert dict(binding) == case["result"]


# --- a new reference file is a new class, with no code change --------------------------------

@pytest.fixture
def middle_events(tmp_path):
    """QueueEvents renamed, re-prefixed, with the multi-word field moved into the middle."""
    doc = json.loads((Path(SETS[LEGACY].get("QueueEvents").path)).read_text(encoding="utf-8"))
    doc["name"] = "MiddleEvents"
    doc["reference"]["exchangePrefix"] = "exchange/middle/v2/"
    for entry in doc["reference"]["entries"]:
        words = entry["routingKey"]
        multi = next(w for w in words if w.get("multipleWords"))
        words.remove(multi)
        words.insert(2, multi)
    (tmp_path / "middle-events.json").write_text(json.dumps(doc), encoding="utf-8")
    return events_class(open_set(str(tmp_path)).get("MiddleEvents"))


def test_a_new_reference_file_becomes_a_class_with_its_own_prefix(middle_events):
    assert middle_events.__name__ == "MiddleEvents"
    assert [ex.name for ex in class_exchanges(middle_events)] == [e.name for e in SETS[LEGACY].get("QueueEvents").entries]
    completed = middle_events.taskCompleted
    assert (completed.service, completed.exchange) == ("MiddleEvents", "exchange/middle/v2/task-completed")
    assert completed(taskGroupId="g").routing_key_pattern == "primary.*.#.*.*.*.*.*.*.g"
    assert completed(reserved="r.s").routing_key_pattern == "primary.*.r.s.*.*.*.*.*.*.*"


def test_the_multi_word_field_in_the_middle_takes_the_words_left_over(middle_events):
    completed = middle_events.taskCompleted
    values = {"taskId": "t", "runId": 0, "workerGroup": "wg", "workerId": "w", "provisionerId": "p",
              "workerType": "wt", "schedulerId": "s", "taskGroupId": "g"}
    key = completed.routing_key(**values, reserved="a.b.c")
    assert key == "primary.t.a.b.c.0.wg.w.p.wt.s.g"
    assert completed.parse(key) == {"routingKeyKind": "primary", **values, "runId": "0", "reserved": "a.b.c"}
    assert completed.parse(completed.routing_key(**values))["reserved"] is None
    assert completed.parse("primary.t.0.wg.w.p.wt.s.g")["reserved"] is None  # zero words for it
    message = error(completed.parse, "primary.t.0.wg.w.p.wt.s")
    assert message == ("routing key 'primary.t.0.wg.w.p.wt.s' does not fit MiddleEvents.taskCompleted "
                       "(exchange/middle/v2/task-completed): expected at least 9 words (primary.taskId."
                       "reserved....runId.workerGroup.workerId.provisionerId.workerType.schedulerId.taskGroupId), got 8")


def test_a_reference_entry_that_shadows_a_class_attribute_is_refused(tmp_path):
    doc = json.loads(Path(SETS[LEGACY].get("PurgeCacheEvents").path).read_text(encoding="utf-8"))
    doc["reference"]["entries"][0]["name"] = "exchangePrefix"
    (tmp_path / "bad-events.json").write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(tcpulse.InvalidReference, match=re.escape(
            "exchange name 'exchangePrefix' clashes with an attribute every events class has")):
        events_class(open_set(str(tmp_path)).get("PurgeCacheEvents"))
