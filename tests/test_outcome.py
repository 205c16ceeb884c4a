"""Pure tests of the ack / retry / dead-letter decision, the backoff schedule, poison detection
and the headers that carry a retried message's origin."""
import json

import pytest

from tcpulse.errors import PermanentFailure, TaskclusterAuthFailure, TaskclusterRestFailure
from tcpulse._listen.outcome import (
    H_ATTEMPT, H_CC, H_EXCHANGE, H_FAILURES, H_HANDLERS, H_REASON, Ack, DeadLetter, Origin,
    Poison, Retry, RetryPolicy, decide, decode_body, is_permanent,
)

POLICY = RetryPolicy(max_attempts=5, retry_delays=(5, 30, 120, 600), jitter=0.25)


def rest(status):
    return TaskclusterRestFailure(f"HTTP {status}", status_code=status)


@pytest.mark.parametrize("exc, permanent", [
    (PermanentFailure("bad task"), True),
    (rest(400), True),
    (rest(404), True),
    (TaskclusterAuthFailure("bad credentials", status_code=401), True),
    (rest(499), True),
    (rest(429), False),
    (rest(500), False),
    (rest(503), False),
    (rest(None), False),
    (TaskclusterRestFailure("no status at all"), False),
    (ConnectionError("refused"), False),
    (ValueError("boom"), False),
    (KeyError("taskId"), False),
])
def test_permanent_failures_are_permanent_failure_and_rest_4xx_except_429(exc, permanent):
    assert is_permanent(exc) is permanent


def test_no_failures_means_ack():
    assert decide({}, attempt=3, policy=POLICY) == Ack()


@pytest.mark.parametrize("attempt, expected_delay", [(1, 5.0), (2, 30.0), (3, 120.0), (4, 600.0)])
def test_a_transient_failure_is_retried_with_the_scheduled_delay(attempt, expected_delay):
    verdict = decide({"app.a": ValueError("db down")}, attempt=attempt, policy=POLICY, rand=lambda: 0.0)
    assert verdict == Retry(delay=expected_delay, handlers=("app.a",), attempt=attempt + 1)


def test_only_the_failed_handlers_are_retried_in_their_order():
    failures = {"app.b": ValueError("x"), "app.a": rest(503)}
    verdict = decide(failures, attempt=1, policy=POLICY, rand=lambda: 0.0)
    assert verdict.handlers == ("app.b", "app.a")


def test_the_last_attempt_failing_dead_letters_with_every_error():
    verdict = decide({"app.a": ValueError("db down")}, attempt=5, policy=POLICY)
    assert verdict == DeadLetter("failed 5 of 5 attempts",
                                 {"app.a": {"type": "ValueError", "message": "db down"}})


@pytest.mark.parametrize("attempt", [1, 2, 4])
def test_a_permanent_failure_dead_letters_at_once_even_beside_transient_ones(attempt):
    failures = {"app.t": ValueError("flaky"), "app.p": rest(404)}
    verdict = decide(failures, attempt=attempt, policy=POLICY)
    assert isinstance(verdict, DeadLetter)
    assert verdict.reason == "permanent failure in app.p: TaskclusterRestFailure: HTTP 404"
    assert set(verdict.failures) == {"app.t", "app.p"}


def test_max_attempts_of_one_never_retries():
    policy = RetryPolicy(max_attempts=1)
    assert isinstance(decide({"app.a": ValueError()}, attempt=1, policy=policy), DeadLetter)


@pytest.mark.parametrize("attempt, rand, expected", [
    (2, 0.0, 5.0), (2, 0.5, 5.625), (2, 0.999, 5 * 1.24975),
    (3, 0.0, 30.0), (5, 0.0, 600.0),
    (6, 0.0, 600.0), (50, 0.0, 600.0),  # the last delay repeats
    (50, 1.0, 750.0),
])
def test_backoff_follows_the_schedule_plus_jitter_from_the_injected_random_source(attempt, rand, expected):
    assert POLICY.delay_before(attempt, rand=lambda: rand) == pytest.approx(expected)


def test_backoff_without_jitter_is_exactly_the_schedule():
    policy = RetryPolicy(retry_delays=(0.2, 0.5), jitter=0)
    assert [policy.delay_before(a, rand=lambda: 0.9) for a in (2, 3, 4)] == [0.2, 0.5, 0.5]


def test_there_is_no_delay_before_the_first_attempt():
    with pytest.raises(ValueError, match=r"attempt must be >= 2 to have a delay before it \(got 1\)"):
        POLICY.delay_before(1)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_attempts": 0}, r"max_attempts must be an integer >= 1 \(got 0\)"),
    ({"max_attempts": "5"}, r"max_attempts must be an integer >= 1 \(got '5'\)"),
    ({"retry_delays": ()}, r"retry_delays must be a non-empty sequence of seconds > 0 \(got \(\)\)"),
    ({"retry_delays": (5, -1)}, r"retry_delays must be .* \(got \(5, -1\)\)"),
    ({"retry_delays": (5, "30")}, r"retry_delays must be .* \(got \(5, '30'\)\)"),
    ({"jitter": 2}, r"jitter must be a fraction between 0 and 1 \(got 2\)"),
])
def test_a_bad_policy_is_refused_naming_the_field_and_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_retry_delays_given_as_a_list_become_a_tuple():
    assert RetryPolicy(retry_delays=[1, 2]).retry_delays == (1, 2)


@pytest.mark.parametrize("raw, reason", [
    (b'{"a": \xff}', "body is not valid UTF-8 (byte 6)"),
    (b"\xc3\x28", "body is not valid UTF-8 (byte 0)"),
    (b"not json", "body is not JSON (Expecting value: line 1 column 1 (char 0))"),
    (b"", "body is not JSON (Expecting value: line 1 column 1 (char 0))"),
    (b'{"a": 1', "body is not JSON (Expecting ',' delimiter: line 1 column 8 (char 7))"),
    (b"[1, 2]", "body is JSON but not an object (got list)"),
    (b'"text"', "body is JSON but not an object (got str)"),
    (b"null", "body is JSON but not an object (got NoneType)"),
    (b"42", "body is JSON but not an object (got int)"),
    (b'{"x": "' + b"a" * 100 + b'"}', "body is 109 bytes, more than the limit of 100"),
])
def test_each_kind_of_poison_is_named(raw, reason):
    with pytest.raises(Poison) as caught:
        decode_body(raw, max_bytes=100)
    assert caught.value.reason == reason


def test_a_json_object_decodes_including_non_ascii_text():
    assert decode_body('{"name": "Gödel"}'.encode()) == {"name": "Gödel"}


def test_a_body_exactly_at_the_limit_is_accepted():
    raw = b'{"x": "' + b"a" * 91 + b'"}'
    assert len(raw) == 100 and decode_body(raw, max_bytes=100)["x"] == "a" * 91


def test_a_first_delivery_takes_its_origin_from_the_delivery_and_the_cc_header():
    origin = Origin.of({"CC": [b"route.index.a", "route.b"]}, "exchange/x", "primary.k")
    assert origin == Origin("exchange/x", "primary.k", ("route.index.a", "route.b"), 1, None)


def test_a_retried_copy_dispatches_as_the_original_and_never_carries_a_cc_header():
    first = Origin.of({"CC": ["route.a"], "custom": "kept"}, "exchange/x", "primary.k")
    headers = first.retry_headers({"CC": ["route.a"], "custom": "kept"}, Retry(4.0, ("app.h",), 2))
    assert "CC" not in headers and headers["custom"] == "kept"
    # The broker hands the copy back through our own exchange with another routing key.
    again = Origin.of(headers, "exchange/u/name/delivery", "return")
    assert again == Origin("exchange/x", "primary.k", ("route.a",), 2, ("app.h",))


def test_a_second_retry_keeps_the_first_origin():
    first = Origin("exchange/x", "primary.k", ("route.a",), 1, None)
    h2 = first.retry_headers({}, Retry(4.0, ("app.h", "app.i"), 2))
    h3 = Origin.of(h2, "exchange/u/n/delivery", "return").retry_headers(h2, Retry(9.0, ("app.i",), 3))
    assert Origin.of(h3, "other", "other") == Origin("exchange/x", "primary.k", ("route.a",), 3, ("app.i",))


def test_dead_letter_headers_say_why_when_and_after_how_many_attempts():
    origin = Origin("exchange/x", "primary.k", ("route.a",), 3, ("app.h",))
    verdict = DeadLetter("failed 3 of 3 attempts", {"app.h": {"type": "ValueError", "message": "no"}})
    headers = origin.dead_letter_headers({"x-death": [{}]}, verdict, at="2026-01-01T00:00:00Z")
    assert headers[H_REASON] == "failed 3 of 3 attempts" and headers[H_ATTEMPT] == 3
    assert json.loads(headers[H_FAILURES]) == verdict.failures
    assert headers[H_EXCHANGE] == "exchange/x" and headers[H_CC] == ["route.a"]
    assert "x-death" not in headers and H_HANDLERS not in headers


def test_requeue_headers_start_over_at_attempt_one_with_the_handlers_that_failed():
    origin = Origin("exchange/x", "primary.k", ("route.a",), 5, ("app.h", "app.i"))
    verdict = DeadLetter("r", {"app.i": {"type": "ValueError", "message": "no"}})
    dead = origin.dead_letter_headers({}, verdict, at="t")
    again = Origin.of(origin.requeue_headers(dead), "exchange/u/n/delivery", "return")
    assert again == Origin("exchange/x", "primary.k", ("route.a",), 1, ("app.i",))


def test_a_requeued_poison_message_goes_to_every_matching_handler():
    origin = Origin("exchange/x", "primary.k", (), 1, None)
    dead = origin.dead_letter_headers({}, DeadLetter("body is not JSON"), at="t")
    assert Origin.of(origin.requeue_headers(dead), "e", "k").handlers is None


@pytest.mark.parametrize("headers, expected", [
    ({H_EXCHANGE: "exchange/x", H_ATTEMPT: "three", H_HANDLERS: 7, H_CC: {"a": 1}},
     Origin("exchange/x", "", (), 1, ())),
    ({H_EXCHANGE: b"exchange/x", H_ATTEMPT: -4, H_HANDLERS: ["app.h", 5], H_CC: "route.a"},
     Origin("exchange/x", "", ("route.a",), 1, ("app.h",))),
    ({"CC": 42}, Origin("exchange/d", "k", (), 1, None)),
])
def test_malformed_origin_headers_never_raise(headers, expected):
    assert Origin.of(headers, "exchange/d", "k") == expected


def test_the_docstring_examples_run():
    import doctest

    import tcpulse._listen.outcome

    failures, tried = doctest.testmod(tcpulse._listen.outcome)
    assert tried > 10 and failures == 0
