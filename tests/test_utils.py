"""The official client's helpers: fromNow, fromNowJSON, stringDate, slugIds, scopeMatch."""
import datetime
import random
import re

import pytest

import tcpulse
from tcpulse import fromNow, fromNowJSON, scopeMatch, slugId, stableSlugId, stringDate

BASE = datetime.datetime(2020, 1, 15, 12, 0, 0)
DAY = datetime.timedelta(days=1)
SPELLINGS = {
    365 * DAY: ["y", "yr", "yrs", "year", "years"],
    30 * DAY: ["mo", "mos", "month", "months"],
    7 * DAY: ["w", "wk", "wks", "week", "weeks"],
    DAY: ["d", "day", "days"],
    datetime.timedelta(hours=1): ["h", "hr", "hrs", "hour", "hours"],
    datetime.timedelta(minutes=1): ["m", "min", "mins", "minute", "minutes"],
    datetime.timedelta(seconds=1): ["s", "sec", "secs", "second", "seconds"],
}
CASES = [(unit, spelling) for unit, spellings in SPELLINGS.items() for spelling in spellings]


@pytest.mark.parametrize("unit, spelling", CASES)
@pytest.mark.parametrize("style", [str.lower, str.upper, str.capitalize])
def test_from_now_knows_every_unit_spelling_in_any_case(unit, spelling, style):
    assert fromNow(f"3 {style(spelling)}", BASE) == BASE + 3 * unit
    assert fromNow(f"3{style(spelling)}", BASE) == BASE + 3 * unit


@pytest.mark.parametrize("offset, delta", [
    ("1 day", DAY), ("+1 day", DAY), ("+ 1 day", DAY), ("  +  1 day ", DAY),
    ("-1 day", -DAY), ("- 1 day", -DAY), ("  -  1  DAY  ", -DAY), ("-1d", -DAY),
    ("2 days 3 hours 1 minute", datetime.timedelta(days=2, hours=3, minutes=1)),
    ("- 1 year 2 months 3 weeks 5 seconds", -datetime.timedelta(days=365 + 60 + 21, seconds=5)),
    ("1y1mo1w1d1h1m1s", datetime.timedelta(days=365 + 30 + 7 + 1, hours=1, minutes=1, seconds=1)),
    ("", datetime.timedelta()),
    ("0 seconds", datetime.timedelta()),
])
def test_from_now_handles_signs_spaces_and_combined_units(offset, delta):
    assert fromNow(offset, BASE) == BASE + delta
    assert fromNow(offset, dateObj=BASE) == BASE + delta


def test_from_now_agrees_with_a_direct_sum_on_random_offsets():
    rng = random.Random(11)
    units = list(SPELLINGS.items())
    for _ in range(1000):
        chosen = sorted(rng.sample(range(len(units)), rng.randint(1, len(units))))
        numbers = [rng.randint(0, 99) for _ in chosen]
        words = [f"{n}{' ' * rng.randint(0, 2)}{rng.choice(units[i][1])}" for n, i in zip(numbers, chosen)]
        text = " ".join("".join(c.upper() if rng.random() < 0.3 else c for c in w) for w in words)
        sign = rng.choice(["", "+", "-", " - ", "+ "])
        delta = sum((n * units[i][0] for n, i in zip(numbers, chosen)), datetime.timedelta())
        assert fromNow(sign + text, BASE) == BASE + (-delta if "-" in sign else delta), sign + text


def test_from_now_defaults_to_the_current_time_as_an_aware_utc_datetime_like_the_official_client_today():
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs(fromNow("1 hour") - (now + datetime.timedelta(hours=1))) < datetime.timedelta(seconds=5)
    assert fromNow("1 hour").utcoffset() == datetime.timedelta(0)
    assert fromNow("1 hour") > now  # comparing with an aware datetime works
    assert fromNowJSON("1 hour").endswith("Z") and "+00:00" not in fromNowJSON("1 hour")


def test_from_now_keeps_a_given_naive_date_naive():
    assert fromNow("1 day", datetime.datetime(2020, 1, 1)).tzinfo is None


@pytest.mark.parametrize("offset, message", [
    ("2 minuts", r"fromNow: unknown unit 'minuts' in offset '2 minuts'. Did you mean 'minutes'\?"),
    ("1 hour 2 days", r"fromNow: 'days' is out of order or repeated in offset '1 hour 2 days'"),
    ("1 day 1 d", r"'d' is out of order or repeated"),
    ("1 day 3", r"fromNow: cannot parse '3' in offset '1 day 3'"),
    ("tomorrow", r"cannot parse 'tomorrow'"),
    ("--1 day", r"cannot parse '-1 day'"),
    ("1.5 days", r"cannot parse"),
    (5, r"fromNow: offset must be a string such as '2 days' \(got 5\)"),
])
def test_a_malformed_offset_says_what_is_wrong_and_what_is_expected(offset, message):
    with pytest.raises(ValueError, match=message) as caught:
        fromNow(offset, BASE)
    if not isinstance(offset, int):
        assert "expected '[+|-] <number> <unit> ...'" in str(caught.value)


def test_from_now_json_is_a_utc_json_date():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fromNowJSON("1 day"))


@pytest.mark.parametrize("date, text", [
    (datetime.datetime(2020, 1, 2, 3, 4, 5), "2020-01-02T03:04:05Z"),
    (datetime.datetime(2020, 1, 2, 3, 4, 5, 600), "2020-01-02T03:04:05.000600Z"),
    (datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc), "2020-01-02T00:00:00Z"),
    (datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))), "2020-01-02T00:00:00+02:00"),
])
def test_string_date_marks_utc_with_z(date, text):
    assert stringDate(date) == text


def test_slug_ids_are_url_safe_unique_and_stable_by_name():
    ids = {slugId() for _ in range(200)}
    assert len(ids) == 200 and all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)
    stable = stableSlugId()
    assert stable("a") == stable("a") != stable("b")
    assert stableSlugId()("a") != stable("a")


@pytest.mark.parametrize("assumed, required, expected", [
    (["scopeA", "scopeB"], [["scopeA", "scopeB"], ["scopeC:*"]], True),
    (["scopeC:xyz"], [["scopeA", "scopeB"], ["scopeC:*"]], False),
    (["scopeC:*"], [["scopeA", "scopeB"], ["scopeC:xyz"]], True),
    (["scopeA"], [["scopeA", "scopeB"], ["scopeC:*"]], False),
    (["scopeC"], [["scopeC:xyz"]], False),
    (["scopeC*"], [["scopeC:xyz"], ["x"]], True),
    (["scopeC:*"], [["scopeC:*"]], True),
    (["scopeC:*"], [["scopeC"]], False),
    (["*"], [["anything:at:all"]], True),
    (["a*b"], [["aXb"]], False),
    (["a*b"], [["a*b"]], True),
    (["queue:*"], [["queue:"]], True),
    ([], [["a"]], False),
    ([], [[]], True),
    (["a"], [], False),
    ([], [], False),
    (["a"], [[], ["b"]], True),
])
def test_scope_match_follows_star_suffix_rules_and_empty_sets(assumed, required, expected):
    assert scopeMatch(assumed, required) is expected


def test_scope_match_agrees_with_a_brute_force_definition_on_random_scopes():
    rng = random.Random(7)
    words = ["a", "ab", "a:", "a:b", "b", "*", "a*", "a:*", "ab*", ""]
    for _ in range(2000):
        assumed = rng.sample(words, rng.randint(0, 3))
        required = [rng.sample(words[:6], rng.randint(0, 2)) for _ in range(rng.randint(0, 3))]
        brute = any(all(any(s == r or (s.endswith("*") and r.startswith(s[:-1])) for s in assumed)
                        for r in scope_set) for scope_set in required)
        assert scopeMatch(assumed, required) is brute, (assumed, required)


def test_the_utilities_are_exported_at_top_level():
    for name in ("fromNow", "fromNowJSON", "stringDate", "slugId", "stableSlugId", "scopeMatch",
                 "createTemporaryCredentials", "optionsFromEnvironment"):
        assert callable(getattr(tcpulse, name)) and name in tcpulse.__all__
