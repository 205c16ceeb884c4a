"""What happens to a message after its handlers ran: ack, retry later, or dead-letter.

This module owns the decision (`decide`), the retry schedule (`RetryPolicy`), the check that a
body is a JSON object (`decode_body`, raising `Poison`) and the header names that carry a retried
message's original delivery (`Origin`). It is pure: it imports neither kombu nor requests, and
it never touches a broker; `tcpulse._listen.delivery` turns its verdicts into broker actions and
`tcpulse._listen.messages.MessageHandling.settle` is the one place that applies them.

Example:
    >>> policy = RetryPolicy(max_attempts=3, retry_delays=(5, 30))
    >>> decide({"app.h": ValueError("db down")}, attempt=1, policy=policy, rand=lambda: 0.0)
    Retry(delay=5.0, handlers=('app.h',), attempt=2)
    >>> decide({}, attempt=1, policy=policy)
    Ack()
"""
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from tcpulse.errors import PermanentFailure, TaskclusterRestFailure

DEFAULT_MAX_BODY = 1024 * 1024  # bytes; Taskcluster's messages are a few kB at most
# Levels of JSON nesting a body may have: far more than any Taskcluster message, far fewer than
# the ~1000 frames at which json, repr and logging die of RecursionError on it later.
MAX_DEPTH = 100
DEFAULT_RETRY_DELAYS = (5, 30, 120, 600)  # seconds; also what names a listener's holding queues
TOO_DEEP = f"body is JSON nested more than {MAX_DEPTH} levels deep"

# Headers a retried or dead-lettered copy carries (never "CC": the broker would route on it).
H_ATTEMPT = "tcpulse-attempt"
H_EXCHANGE = "tcpulse-exchange"
H_ROUTING_KEY = "tcpulse-routing-key"
H_CC = "tcpulse-cc"
H_HANDLERS = "tcpulse-handlers"
H_REASON = "tcpulse-reason"
H_FAILURES = "tcpulse-failures"
H_DEAD_AT = "tcpulse-dead-lettered-at"
# The key under which a delivery's properties say what of it could not be read (set by
# tcpulse.wire as it reads the delivery): no AMQP property has a hyphenated name, so no publisher can set it.
UNREADABLE = "tcpulse-unreadable"
H_RETURNS = "tcpulse-returns"  # times an isolated message came back unacked (`tcpulse._listen.isolation`)
OWN_HEADERS = (H_ATTEMPT, H_EXCHANGE, H_ROUTING_KEY, H_CC, H_HANDLERS, H_REASON, H_FAILURES, H_DEAD_AT, H_RETURNS)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how late a failed message is tried again.

    `retry_delays[i]` is the delay in seconds before attempt i + 2; the last one repeats.
    A delay is stretched by up to `jitter` (a fraction) so that messages which failed together
    do not all come back at the same instant.

    Example:
        >>> RetryPolicy(retry_delays=(5, 30)).delay_before(4, rand=lambda: 0.5)
        33.75
    """

    max_attempts: int = 5
    retry_delays: Tuple[float, ...] = DEFAULT_RETRY_DELAYS
    jitter: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "retry_delays", tuple(self.retry_delays))
        for problem in _policy_problems(self):
            raise ValueError(problem)

    def base_delay(self, attempt: int) -> float:
        """The scheduled delay before `attempt` (>= 2), without jitter."""
        if attempt < 2:
            raise ValueError(f"attempt must be >= 2 to have a delay before it (got {attempt})")
        return float(self.retry_delays[min(attempt - 2, len(self.retry_delays) - 1)])

    def delay_before(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The delay before `attempt` with jitter from `rand()` in [0, 1)."""
        return self.base_delay(attempt) * (1 + self.jitter * rand())

    def longest_delay(self, base: float) -> float:
        """The most a delay scheduled as `base` can become after jitter."""
        return base * (1 + self.jitter)


def _policy_problems(policy: RetryPolicy) -> Sequence[str]:
    problems = []
    if not isinstance(policy.max_attempts, int) or policy.max_attempts < 1:
        problems.append(f"max_attempts must be an integer >= 1 (got {policy.max_attempts!r})")
    if not policy.retry_delays or not all(
            isinstance(d, (int, float)) and not isinstance(d, bool) and d > 0 for d in policy.retry_delays):
        problems.append(f"retry_delays must be a non-empty sequence of seconds > 0 (got {policy.retry_delays!r})")
    if not isinstance(policy.jitter, (int, float)) or not 0 <= policy.jitter <= 1:
        problems.append(f"jitter must be a fraction between 0 and 1 (got {policy.jitter!r})")
    return problems


@dataclass(frozen=True)
class Ack:
    """Every handler succeeded (or none matched): acknowledge the message.

    Example:
        >>> decide({}, attempt=1, policy=RetryPolicy()) == Ack()
        True
    """


@dataclass(frozen=True)
class Retry:
    """Try `handlers` again in `delay` seconds, as attempt number `attempt`.

    Example:
        >>> decide({"app.h": OSError("reset")}, 2, RetryPolicy(retry_delays=(5, 30)), rand=lambda: 0).delay
        30.0
    """

    delay: float
    handlers: Tuple[str, ...]
    attempt: int


@dataclass(frozen=True)
class DeadLetter:
    """Park the message in the dead-letter queue; `failures` maps handler -> {type, message}.

    Example:
        >>> decide({"app.h": OSError("reset")}, 5, RetryPolicy(max_attempts=5)).failures
        {'app.h': {'type': 'OSError', 'message': 'reset'}}
    """

    reason: str
    failures: Dict[str, Dict[str, str]] = field(default_factory=dict)


Outcome = Union[Ack, Retry, DeadLetter]


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying cannot help: PermanentFailure, or a REST 4xx other than 429.

    Example:
        >>> is_permanent(TaskclusterRestFailure("no such task", status_code=404))
        True
    """
    if isinstance(exc, PermanentFailure):
        return True
    status = getattr(exc, "status_code", None) if isinstance(exc, TaskclusterRestFailure) else None
    return isinstance(status, int) and 400 <= status < 500 and status != 429


def describe(failures: Mapping[str, BaseException]) -> Dict[str, Dict[str, str]]:
    """Failures as plain data for a dead letter's headers.

    Example:
        >>> describe({"app.h": KeyError("taskId")})
        {'app.h': {'type': 'KeyError', 'message': "'taskId'"}}
    """
    return {name: {"type": type(exc).__name__, "message": str(exc)} for name, exc in failures.items()}


def decide(failures: Mapping[str, BaseException], attempt: int, policy: RetryPolicy,
           rand: Callable[[], float] = random.random) -> Outcome:
    """The fate of a message whose handlers raised `failures` (handler name -> exception)
    on delivery number `attempt` (1 for the first).

    Example:
        >>> decide({"app.h": PermanentFailure("bad task")}, attempt=1, policy=RetryPolicy()).reason
        'permanent failure in app.h: PermanentFailure: bad task'
    """
    if not failures:
        return Ack()
    permanent = [name for name, exc in failures.items() if is_permanent(exc)]
    if permanent:
        exc = failures[permanent[0]]
        reason = f"permanent failure in {permanent[0]}: {type(exc).__name__}: {exc}"
        return DeadLetter(reason, describe(failures))
    if attempt >= policy.max_attempts:
        return DeadLetter(f"failed {attempt} of {policy.max_attempts} attempts", describe(failures))
    return Retry(policy.delay_before(attempt + 1, rand), tuple(failures), attempt + 1)


class Poison(ValueError):
    """A body that can never be handled; `reason` says why, without echoing the body.

    Example:
        >>> try:
        ...     decode_body(b"\\xff")
        ... except Poison as exc:
        ...     exc.reason
        'body is not valid UTF-8 (byte 0)'
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_body(raw: Union[bytes, str], max_bytes: int = DEFAULT_MAX_BODY) -> Dict[str, Any]:
    """The body as a JSON object, or `Poison` saying why it is not one.

    Example:
        >>> decode_body(b'{"status": {}}')
        {'status': {}}
        >>> decode_body(b'[1]')
        Traceback (most recent call last):
        ...
        tcpulse._listen.outcome.Poison: body is JSON but not an object (got list)
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise Poison(f"body is {len(raw)} bytes, more than the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Poison(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise Poison(f"body is not JSON ({exc})") from None
    except RecursionError:
        raise Poison(TOO_DEEP) from None
    if not isinstance(value, dict):
        raise Poison(f"body is JSON but not an object (got {type(value).__name__})")
    if too_deep(text, value):
        raise Poison(TOO_DEEP)
    return value


def too_deep(text: str, value: Any) -> bool:
    """Whether `value`, parsed from the JSON `text`, nests deeper than MAX_DEPTH.

    Example:
        >>> too_deep("[[1]]", [[1]]), too_deep("[" * 101 + "]" * 101, json.loads("[" * 101 + "]" * 101))
        (False, True)
    """
    if text.count("{") + text.count("[") <= MAX_DEPTH:  # no room for that many levels: skip the walk
        return False
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
    return False


@dataclass(frozen=True)
class Origin:
    """Where a message first came from, and how far it got: read from its headers, so that a
    retried copy dispatches exactly as the first delivery did. `of` believes what it is given:
    pass it `trusted_headers(...)` of a message from the broker.

    Example:
        >>> o = Origin.of({"CC": ["route.a"]}, "exchange/x", "primary.k")
        >>> o.attempt, o.cc, o.handlers
        (1, ('route.a',), None)
    """

    exchange: str
    routing_key: str
    cc: Tuple[str, ...]
    attempt: int = 1
    handlers: Optional[Tuple[str, ...]] = None  # None: every matching handler

    @classmethod
    def of(cls, headers: Optional[Mapping[str, Any]], exchange: str, routing_key: str) -> "Origin":
        headers = headers or {}
        if H_EXCHANGE not in headers:
            return cls(exchange, routing_key, header_strings(headers.get("CC")))
        handlers = headers.get(H_HANDLERS)
        return cls(header_text(headers[H_EXCHANGE]), header_text(headers.get(H_ROUTING_KEY, "")),
                   header_strings(headers.get(H_CC)), _attempt(headers.get(H_ATTEMPT)),
                   None if handlers is None else header_strings(handlers))

    def retry_headers(self, headers: Optional[Mapping[str, Any]], retry: Retry) -> Dict[str, Any]:
        """Headers for the copy that will come back as `retry.attempt`."""
        return {**_foreign(headers), H_EXCHANGE: self.exchange, H_ROUTING_KEY: self.routing_key,
                H_CC: list(self.cc), H_ATTEMPT: retry.attempt, H_HANDLERS: list(retry.handlers)}

    def dead_letter_headers(self, headers: Optional[Mapping[str, Any]], verdict: DeadLetter,
                            at: str) -> Dict[str, Any]:
        """Headers for the dead-letter copy: why, when, after how many attempts, from where."""
        return {**_foreign(headers), H_EXCHANGE: self.exchange, H_ROUTING_KEY: self.routing_key,
                H_CC: list(self.cc), H_ATTEMPT: self.attempt, H_REASON: verdict.reason,
                H_FAILURES: json.dumps(verdict.failures), H_DEAD_AT: at}

    def moved_headers(self, headers: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        """Headers for a copy moved to another queue as it is (a queue migration): it dispatches
        as this delivery would, same attempt, same handlers.

        Example:
            >>> Origin("exchange/x", "primary.k", ("route.a",), 2).moved_headers({"trace": 1})[H_ATTEMPT]
            2
        """
        moved = {**_foreign(headers), H_EXCHANGE: self.exchange, H_ROUTING_KEY: self.routing_key,
                 H_CC: list(self.cc), H_ATTEMPT: self.attempt}
        return moved if self.handlers is None else {**moved, H_HANDLERS: list(self.handlers)}

    def requeue_headers(self, headers: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        """Headers that send a dead letter back as a fresh attempt 1 of the handlers that
        failed (of every matching handler when none had run, as for a poison body)."""
        failed = list(json.loads(header_text((headers or {}).get(H_FAILURES) or "{}")))
        requeued = {**_foreign(headers), H_EXCHANGE: self.exchange, H_ROUTING_KEY: self.routing_key,
                    H_CC: list(self.cc), H_ATTEMPT: 1}
        return {**requeued, H_HANDLERS: failed} if failed else requeued


def trusted_headers(headers: Optional[Mapping[str, Any]], delivered_by: str,
                    own_exchange: Union[str, Sequence[str]]) -> Dict[str, Any]:
    """`headers` as far as they can be believed: tcpulse's own headers only on a message the
    broker delivered through `own_exchange` (the listener's delivery exchange, or any of several,
    where only its Pulse user may publish). Anyone who may publish to a bound exchange can set them, and would
    otherwise pick the exchange and key a message dispatches as, skip handlers or jump attempts.

    Example:
        >>> forged = {H_EXCHANGE: "exchange/other", H_ATTEMPT: 5, "CC": ["route.a"]}
        >>> trusted_headers(forged, "exchange/taskcluster-queue/v1/task-completed", "exchange/u/w/delivery")
        {'CC': ['route.a']}
        >>> trusted_headers(forged, "exchange/u/w/delivery", "exchange/u/w/delivery") == forged
        True
    """
    if delivered_by in ((own_exchange,) if isinstance(own_exchange, str) else own_exchange):
        return dict(headers or {})
    return {k: v for k, v in (headers or {}).items() if k not in OWN_HEADERS}


def _foreign(headers: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    # Drop our own bookkeeping, the routing headers (the broker would route on CC/BCC again)
    # and the broker's own dead-letter history, which only grows.
    dropped = set(OWN_HEADERS) | {"CC", "BCC", "x-death", "x-first-death-exchange",
                                  "x-first-death-queue", "x-first-death-reason",
                                  "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
                                  "x-delivery-count"}
    return {k: v for k, v in (headers or {}).items() if k not in dropped}


def header_text(value: Any) -> str:
    """A header value as text (py-amqp hands over bytes for some).

    Example:
        >>> header_text(b"task-completed"), header_text(3)
        ('task-completed', '3')
    """
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def header_strings(value: Any) -> Tuple[str, ...]:
    """The text items of a header that should be a list of text (CC, routing keys).

    Example:
        >>> header_strings(["route.a", b"route.b", 3]), header_strings("one"), header_strings(None)
        (('route.a', 'route.b'), ('one',), ())
    """
    # Headers come from whoever published: anything that is not text or a list of text is ignored.
    if isinstance(value, (str, bytes)):
        return (header_text(value),)
    if isinstance(value, (list, tuple)):
        return tuple(header_text(v) for v in value if isinstance(v, (str, bytes)))
    return ()


def returns_of(headers: Mapping[str, Any]) -> int:
    """How often a message in the isolation queue came back unacked, from its (trusted) headers.

    Example:
        >>> returns_of({H_RETURNS: 2}), returns_of({H_RETURNS: "x"}), returns_of({})
        (2, 0, 0)
    """
    value = headers.get(H_RETURNS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _attempt(value: Any) -> int:
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1
