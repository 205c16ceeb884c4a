"""The official Taskcluster client's helpers: relative dates, slugIds, scope matching, JSON and
base64 the way Taskcluster wants them, and the retry backoff.

Owns: `fromNow`, `fromNowJSON`, `stringDate`, `slugId`, `stableSlugId`, `scopeMatch` (and its
deprecated twin `scope_match`), `dumpJson`, `toStr`, `isExpired`, `encodeStringForB64Header`,
`makeB64UrlSafe`, `makeB64UrlUnsafe`, `calculateSleepTime`, `createSession`, and the faces of
`makeHttpRequest` and `putFile` (plain HTTP with the official retries, in `tcpulse._rest.plainhttp`).

Pure module: imports only the standard library and slugid (never kombu or mohawk; requests only
inside `createSession`, `makeHttpRequest` and `putFile`, when they are called).

Example:
    >>> from tcpulse.utils import scopeMatch
    >>> scopeMatch(["queue:create-task:*"], [["queue:create-task:aws/x"]])
    True
"""
import base64
import datetime
import json
import random
import re
import time
import warnings
from typing import Any, Callable, Dict, Iterable, Optional, Union

import slugid

from tcpulse._api.hints import did_you_mean

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
    """The UTC datetime `offset` away from now (timezone-aware, as the official client's today) or
    from `dateObj` (keeping its timezone or its lack of one).

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
        dateObj = datetime.datetime.now(datetime.timezone.utc)
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
            hint = did_you_mean(unit, list(_SPELLINGS))
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


def scopeMatch(assumedScopes: Iterable[str], requiredScopeSets: Iterable[Iterable[str]]) -> bool:
    """Whether the assumed scopes satisfy at least one of the required scope sets.

    `requiredScopeSets` is in disjunctive normal form: a list of alternatives, each a list of
    scopes that must all be satisfied. An assumed scope ending in '*' satisfies every scope
    that starts with what precedes the '*'. No alternatives means no match; an empty
    alternative is always satisfied. Input of the wrong shape is iterated as it is, exactly as
    the official client does, so ported code gets the same boolean it got before.

    Example:
        >>> scopeMatch(["scopeA", "scopeC:*"], [["scopeA", "scopeB"], ["scopeC:xyz"]])
        True
    """
    assumed = list(assumedScopes)

    def satisfied(required: str) -> bool:
        return any(scope == required or (scope.endswith("*") and required.startswith(scope[:-1]))
                   for scope in assumed)

    return any(all(satisfied(required) for required in scope_set) for scope_set in requiredScopeSets)


def scope_match(assumed_scopes: Iterable[str], required_scope_sets: Iterable[Iterable[str]]) -> bool:
    """The official client's deprecated spelling of `scopeMatch`; warns, then answers the same.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     scope_match(["a:*"], [["a:b"]])
        True
    """
    warnings.warn("scope_match is deprecated; use scopeMatch", DeprecationWarning, stacklevel=2)
    return scopeMatch(assumed_scopes, required_scope_sets)


def dumpJson(obj: Any, **kwargs: Any) -> str:
    """Compact JSON as JavaScript's JSON.stringify writes it; dates become `stringDate` text.

    Example:
        >>> dumpJson({"a": [1, 2], "at": datetime.datetime(2020, 1, 2)})
        '{"a":[1,2],"at":"2020-01-02T00:00:00Z"}'
    """
    def convert(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode()
        if isinstance(value, (datetime.datetime, datetime.date)):
            return stringDate(value)  # type: ignore[arg-type]
        raise TypeError(f"dumpJson: {type(value).__name__} is not JSON serializable")

    return json.dumps(obj, separators=(",", ":"), default=convert, **kwargs)


def toStr(obj: Any, encoding: str = "utf-8") -> str:
    """Bytes decoded, anything else through `str()`.

    Example:
        >>> toStr(b"abc"), toStr(5)
        ('abc', '5')
    """
    return obj.decode(encoding) if isinstance(obj, bytes) else str(obj)


def isExpired(certificate: Union[str, Dict[str, Any]]) -> bool:
    """Whether a temporary credentials certificate (JSON text or object) has expired.

    Like the official client, it allows 1.2 seconds of margin (its `20 * 60` is milliseconds).

    Example:
        >>> isExpired({"expiry": 0}), isExpired('{"expiry": 32503680000000}')
        (True, False)
    """
    if isinstance(certificate, str):
        certificate = json.loads(certificate)
    return certificate.get("expiry", 0) < int(time.time() * 1000) + 20 * 60


def encodeStringForB64Header(s: Union[str, bytes]) -> bytes:
    """Standard base64 of `s` on one line (HTTP headers cannot hold newlines).

    Example:
        >>> encodeStringForB64Header("{}")
        b'e30='
    """
    return base64.b64encode(s.encode() if isinstance(s, str) else s)


def makeB64UrlSafe(b64str: Union[str, bytes]) -> bytes:
    """Standard base64 turned into base64url (RFC 4648 section 5): '+' -> '-', '/' -> '_'.

    Example:
        >>> makeB64UrlSafe("a+b/c=")
        b'a-b_c='
    """
    return _translate(b64str, b"+/", b"-_")


def makeB64UrlUnsafe(b64str: Union[str, bytes]) -> bytes:
    """base64url turned back into standard base64: '-' -> '+', '_' -> '/'.

    Example:
        >>> makeB64UrlUnsafe("a-b_c=")
        b'a+b/c='
    """
    return _translate(b64str, b"-_", b"+/")


def _translate(text: Union[str, bytes], old: bytes, new: bytes) -> bytes:
    return (text.encode() if isinstance(text, str) else text).translate(bytes.maketrans(old, new))


def calculateSleepTime(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry; <= 0 waits 0):
    0.1 s * 2^(attempt-1), +-25 % jitter, at most 30 s.

    Example:
        >>> calculateSleepTime(3, rand=lambda: 0.5)
        0.4
    """
    if attempt <= 0:
        return 0
    delay = 0.1 * 2 ** (attempt - 1)
    return min(delay * (1 + 0.25 * (2 * rand() - 1)), 30.0)


def createSession(*args: Any, **kwargs: Any) -> Any:
    """A new `requests.Session(*args, **kwargs)`, to share between clients (`Queue(options, session)`).

    Example:
        >>> createSession().close()
    """
    import requests  # here, not at the top: `import tcpulse.utils` must not load requests

    return requests.Session(*args, **kwargs)


def makeHttpRequest(method: str, url: str, payload: Any, headers: Any, retries: int = 5,
                    session: Any = None) -> Any:
    """Send one HTTP request, retried after a connection error or a 5xx answer (up to `retries`
    more times, a seekable payload sent again from its start); the final `requests.Response`,
    whatever its status. Redirects are not followed; after the last try a connection error is
    raised as requests raised it.

    Example:
        >>> makeHttpRequest("get", "https://example.com/", None, {})  # doctest: +SKIP
        <Response [200]>
    """
    from tcpulse._rest.plainhttp import make_http_request

    return make_http_request(method, url, payload, headers, retries, session)


def putFile(filename: str, url: str, contentType: str) -> Any:
    """PUT the file at `filename` to `url` (e.g. a signed storage URL), streamed from disk with its
    Content-Length and `contentType`, retried as `makeHttpRequest`; the final response.

    Example:
        >>> putFile("build.log", signed_url, "text/plain").raise_for_status()  # doctest: +SKIP
    """
    from tcpulse._rest.plainhttp import put_file

    return put_file(filename, url, contentType)
