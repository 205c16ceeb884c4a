"""The official Taskcluster client's helpers: relative dates, slugIds and scope matching.

Owns: `fromNow`, `fromNowJSON`, `stringDate`, `slugId`, `stableSlugId`, `scopeMatch`.

Pure module: imports only the standard library and slugid (never kombu, requests or mohawk).

Example:
    >>> from tcpulse.utils import scopeMatch
    >>> scopeMatch(["queue:create-task:*"], [["queue:create-task:aws/x"]])
    True
"""
import datetime
import difflib
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import slugid

# Units from the largest to the smallest; an offset must name them in this order.
# Years and months are fixed lengths, as in the official client (365 and 30 days).
_UNITS = (
    ("years", ("y", "yr", "yrs", "year", "years"), datetime.timedelta(days=365)),
    ("months", ("mo", "mos", "month", "months"), datetime.timedelta(days=30)),
    ("weeks", ("w", "wk", "wks", "week", "weeks"), datetime.timedelta(weeks=1)),
    ("days", ("d", "day", "days"), datetime.timedelta(days=1)),
    ("hours", ("h", "hr", "hrs", "hour", "hours"), datetime.timedelta(hours=1)),
    ("minutes", ("m", "min", "mins", "minute", "minutes"), datetime.timedelta(minutes=1)),
    ("seconds", ("s", "sec", "secs", "second", "seconds"), datetime.timedelta(seconds=1)),
)
_SPELLINGS: Dict[str, int] = {spelling: rank for rank, (_, names, _) in enumerate(_UNITS) for spelling in names}
_TERM = re.compile(r"\s*(\d+)\s*([a-z]+)\s*")
_EXPECTED = ("expected '[+|-] <number> <unit> ...' with units from largest to smallest, e.g. "
             "'2 days 3 hours'; units: years/yr/y, months/mo, weeks/w, days/d, hours/h, "
             "minutes/min/m, seconds/sec/s")


def fromNow(offset: str, dateObj: Optional[datetime.datetime] = None) -> datetime.datetime:
    """The naive UTC datetime `offset` away from now (or from `dateObj`).

    Whitespace and case do not matter; a leading '-' goes into the past, '+' is ignored.

    Example:
        >>> start = datetime.datetime(2020, 1, 1)
        >>> fromNow("1 day 2h", start)
        datetime.datetime(2020, 1, 2, 2, 0)
        >>> fromNow("- 1 YEAR", start)
        datetime.datetime(2019, 1, 1, 0, 0)
    """
    if not isinstance(offset, str):
        raise ValueError(f"fromNow: offset must be a string such as '2 days' (got {offset!r})")
    text = offset.strip().lower()
    sign = -1 if text.startswith("-") else 1
    if text[:1] in ("+", "-"):
        text = text[1:]
    delta = _parse_offset(text, offset)
    if dateObj is None:
        dateObj = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return dateObj + sign * delta


def _parse_offset(text: str, original: str) -> datetime.timedelta:
    delta = datetime.timedelta()
    position, last_rank = 0, -1
    for match in _TERM.finditer(text):
        if match.start() != position:
            break
        position = match.end()
        number, unit = int(match.group(1)), match.group(2)
        rank = _SPELLINGS.get(unit)
        if rank is None:
            close = difflib.get_close_matches(unit, list(_SPELLINGS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"fromNow: unknown unit {unit!r} in offset {original!r}.{hint} ({_EXPECTED})")
        if rank <= last_rank:
            raise ValueError(f"fromNow: {unit!r} is out of order or repeated in offset {original!r} ({_EXPECTED})")
        last_rank = rank
        delta += number * _UNITS[rank][2]
    if position != len(text) and text[position:].strip():
        raise ValueError(f"fromNow: cannot parse {text[position:].strip()!r} in offset {original!r} ({_EXPECTED})")
    return delta


def fromNowJSON(offset: str) -> str:
    """`fromNow(offset)` as the JSON date string Taskcluster expects.

    Example:
        >>> fromNowJSON("1 hour").endswith("Z")
        True
    """
    return stringDate(fromNow(offset))


def stringDate(date: datetime.datetime) -> str:
    """ISO 8601 with a 'Z' for UTC; a naive datetime is taken to be UTC.

    Example:
        >>> stringDate(datetime.datetime(2020, 1, 2, 3, 4, 5))
        '2020-01-02T03:04:05Z'
    """
    text = date.isoformat()
    if text.endswith("+00:00"):
        return text[:-6] + "Z"
    if date.utcoffset() is None and not text.endswith("Z"):
        return text + "Z"
    return text


def slugId() -> str:
    """A new random slugId (a v4 UUID in URL-safe base64, no padding, never starting with '-').

    Example:
        >>> len(slugId())
        22
    """
    return slugid.nice()


def stableSlugId() -> Callable[[str], str]:
    """A function that gives the same new slugId each time it is called with the same name.

    Example:
        >>> ids = stableSlugId()
        >>> ids("build") == ids("build") != ids("test")
        True
    """
    cache: Dict[str, str] = {}

    def slug_for(name: str) -> str:
        if name not in cache:
            cache[name] = slugId()
        return cache[name]

    return slug_for


def scopeMatch(assumedScopes: Iterable[str], requiredScopeSets: Sequence[Sequence[str]]) -> bool:
    """Whether the assumed scopes satisfy at least one of the required scope sets.

    `requiredScopeSets` is in disjunctive normal form: a list of alternatives, each a list of
    scopes that must all be satisfied. An assumed scope ending in '*' satisfies every scope
    that starts with what precedes the '*'. No alternatives means no match; an empty
    alternative is always satisfied.

    Example:
        >>> scopeMatch(["scopeA", "scopeC:*"], [["scopeA", "scopeB"], ["scopeC:xyz"]])
        True
    """
    assumed = _scope_list(assumedScopes, "assumedScopes")
    scope_sets = _scope_sets(requiredScopeSets)
    exact = set(assumed)
    prefixes = [scope[:-1] for scope in assumed if scope.endswith("*")]

    def satisfied(required: str) -> bool:
        return required in exact or any(required.startswith(prefix) for prefix in prefixes)

    return any(all(satisfied(required) for required in scope_set) for scope_set in scope_sets)


def _scope_list(scopes: Iterable[str], name: str) -> List[str]:
    if isinstance(scopes, str):
        raise TypeError(f"scopeMatch: {name} must be a list of scope strings, not a string (got {scopes!r})")
    listed = list(scopes)
    for scope in listed:
        if not isinstance(scope, str):
            raise TypeError(f"scopeMatch: every scope in {name} must be a string (got {scope!r})")
    return listed


def _scope_sets(scope_sets: Sequence[Sequence[str]]) -> List[List[str]]:
    if isinstance(scope_sets, str) or any(isinstance(s, str) for s in scope_sets):
        raise TypeError("scopeMatch: requiredScopeSets must be a list of lists of scopes, "
                        f"e.g. [['scopeA', 'scopeB'], ['scopeC']] (got {scope_sets!r})")
    return [_scope_list(scope_set, "requiredScopeSets") for scope_set in scope_sets]
