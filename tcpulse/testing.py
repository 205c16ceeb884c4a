"""Test handlers without a broker: deliver a message to a listener's handlers and see what happened.

Owns: `deliver` (one message: dict body, exchange, routing key, CC routes) and `deliver_file`
(a JSON Lines recording), `load` (a handler script, on a fresh default listener), the
`Delivered` report (which handlers ran, and whether the message was acked, retried or
dead-lettered), and the `tcpulse_harness` pytest fixture, registered through the `pytest11`
entry point so any project that installs tcpulse can use it.

Delivery follows the live path's rules exactly, through the same pure pieces: handler selection
by `tcpulse._listen.dispatch` (primary key and every CC'd route, each handler once, in registration
order), the body check of `tcpulse._listen.outcome.decode_body`, and the ack / retry / dead-letter verdict
of `tcpulse._listen.outcome.decide` with the listener's own retry policy; a retry re-runs only the
handlers that failed, as attempt 2, 3, ... without waiting. An `async def` handler is awaited
(on a fresh event loop; from an async test, in a thread of its own), so a plain sync test can
deliver to it.

Imports neither kombu nor requests; pytest only if it is installed (for the fixture).

Example:
    >>> from tcpulse import Listener, QueueEvents
    >>> app = Listener("doc")
    >>> @app.on(QueueEvents.taskCompleted, route="index.project.#")
    ... def indexed(event):
    ...     print("indexed", event.routes)
    >>> result = deliver(app, QueueEvents.taskCompleted, "primary.t.0.wg.w.p.wt.s.g._",
    ...                  {"status": {}}, routes=["index.project.a"])
    indexed ['index.project.a']
    >>> result.ran, result.acked
    (['tcpulse.testing.indexed'], True)
"""
import json
import os
import random
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

try:
    import pytest
except ImportError:  # the plain functions work without pytest; only the fixture needs it
    pytest = None

from tcpulse._listen.bodycheck import BodyValidation
from tcpulse._listen.dispatch import ROUTE_PREFIX, Event
from tcpulse._listen.outcome import TOO_DEEP, Ack, DeadLetter, Outcome, Poison, Retry, decide, decode_body

if TYPE_CHECKING:
    from tcpulse._api.exchanges import Exchange

Body = Union[Mapping[str, Any], bytes, str]
T = TypeVar("T")


@dataclass
class Attempt:
    """One delivery of the message: which handlers ran, which raised, and the verdict.

    Example:
        >>> Attempt(1, ("m.h",), {}, Ack()).outcome
        Ack()
    """
    number: int
    ran: Tuple[str, ...]
    failures: Dict[str, BaseException]
    outcome: Outcome


@dataclass
class Delivered:
    """What happened to one delivered message, over all its attempts.

    Example:
        >>> Delivered("exchange/x", "k", (), [Attempt(1, ("m.h",), {}, Ack())]).acked
        True
    """
    exchange: str
    routing_key: str
    routes: Tuple[str, ...]
    attempts: List[Attempt] = field(default_factory=list)
    events: List[Event] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return self.attempts[-1].outcome

    @property
    def ran(self) -> List[str]:
        """Every handler that ran at least once, in the order it first ran."""
        return list(dict.fromkeys(name for a in self.attempts for name in a.ran))

    @property
    def calls(self) -> List[Tuple[int, str]]:
        """(attempt, handler) for every handler run."""
        return [(a.number, name) for a in self.attempts for name in a.ran]

    @property
    def acked(self) -> bool:
        return isinstance(self.outcome, Ack)

    @property
    def retried(self) -> List[str]:
        """Handlers that were scheduled for another attempt at least once."""
        return list(dict.fromkeys(n for a in self.attempts if isinstance(a.outcome, Retry)
                                  for n in a.outcome.handlers))

    @property
    def by_handler(self) -> Dict[str, str]:
        """Each handler that ran -> 'succeeded', 'retrying' (its retry was not followed) or
        'dead-lettered', from the last attempt it ran in."""
        states = {}
        for attempt in self.attempts:
            for name in attempt.ran:
                failed = name in attempt.failures
                states[name] = "succeeded" if not failed else (
                    "retrying" if isinstance(attempt.outcome, Retry) else "dead-lettered")
        return states

    @property
    def dead_lettered(self) -> bool:
        return isinstance(self.outcome, DeadLetter)

    @property
    def reason(self) -> Optional[str]:
        """Why the message was dead-lettered (None when it was not)."""
        return self.outcome.reason if isinstance(self.outcome, DeadLetter) else None

    def __repr__(self) -> str:
        verdict = type(self.outcome).__name__ if self.attempts else "not delivered"
        return (f"<Delivered {self.routing_key!r} on {self.exchange}: ran {self.ran}, "
                f"{len(self.attempts)} attempt(s), {verdict}>")


def deliver(listener: Any, exchange: Any, routing_key: str, body: Body, routes: Sequence[str] = (),
            *, follow_retries: bool = True, redelivered: bool = False,
            rand: Callable[[], float] = random.random) -> Delivered:
    """Deliver one message to `listener`'s handlers as the live listener would.

    `listener` is a Listener, a handler module you imported, or the path of a handler script.

    `exchange` is an Exchange (`QueueEvents.taskCompleted`), 'QueueEvents.taskCompleted' or a
    full exchange name; `routes` are CC'd routes without 'route.' (as in `event.routes`); `body`
    a dict, or raw bytes/str to see how a bad body is treated. With `follow_retries` every
    retry is delivered at once until the message is acked or dead-lettered.
    """
    listener = listener_of(listener)
    report = Delivered(_exchange_name(exchange), routing_key, tuple(routes))
    try:
        decoded = decode_body(body if isinstance(body, (bytes, str)) else json.dumps(body))
        # As live: a body its exchange's schema rejects is dead-lettered (validate="dead-letter") or logged ("warn").
        BodyValidation(getattr(listener, "validate", "off")).check(decoded, listener.registry.source(report.exchange))
    except (Poison, RecursionError) as exc:  # the live listener dead-letters it with the same reason
        # (a dict too deep for json.dumps is too deep to send at all)
        report.attempts.append(Attempt(1, (), {}, DeadLetter(str(exc) if isinstance(exc, Poison) else TOO_DEEP)))
        return report
    _attempts(listener, report, decoded, follow_retries, redelivered, rand)
    return report


def _attempts(listener: Any, report: Delivered, body: Dict[str, Any], follow_retries: bool,
              redelivered: bool, rand: Callable[[], float]) -> None:
    # The very registry and retry policy the live listener uses.
    registry, policy = listener.registry, listener.policy
    cc = tuple(ROUTE_PREFIX + r for r in report.routes)
    number, only = 1, None
    runs = _runs()
    while True:
        event = Event(body, report.exchange, report.routing_key, cc, redelivered=redelivered, attempt=number,
                      headers={"CC": list(cc)} if cc else {}, source=registry.source(report.exchange))
        handlers = registry.select(report.exchange, report.routing_key, cc, only=only)
        failures = runs.run_sync(handlers, event)
        verdict = decide(failures, number, policy, rand)
        report.events.append(event)
        report.attempts.append(Attempt(number, tuple(h.name for h in handlers), failures, verdict))
        if not (follow_retries and isinstance(verdict, Retry)):
            return
        number, only = verdict.attempt, verdict.handlers


def listener_of(target: Any) -> Any:
    """The Listener behind `target`: a Listener, a module (the Listener it defines, else the
    default listener of `tcpulse.on`), or a script path (loaded afresh).

    Example:
        >>> import tcpulse.testing as me
        >>> from tcpulse._listen.listener import default_listener
        >>> listener_of(me) is default_listener()
        True
    """
    from tcpulse._listen.listener import Listener, default_listener

    if isinstance(target, Listener):
        return target
    if isinstance(target, (str, os.PathLike)):
        return load(str(target))
    if isinstance(target, types.ModuleType):
        found = [v for v in vars(target).values() if isinstance(v, Listener)]
        return found[0] if found else default_listener()
    raise TypeError(f"expected a Listener, a handler module or a script path (got {type(target).__name__} {target!r})")


def _runs() -> Any:
    """Handler runs as live, except that what a test must be able to stop with (KeyboardInterrupt,
    pytest.fail, sys.exit) is not taken as a handler's failure."""
    from asyncio import CancelledError

    from tcpulse._ops.metrics import Metrics
    from tcpulse._listen.running import HandlerRuns

    return HandlerRuns(Metrics(), catching=(Exception, CancelledError))


def _exchange_name(exchange: Any) -> str:
    from tcpulse._api.exchanges import exchange_name_of

    return exchange_name_of(exchange) if isinstance(exchange, str) else exchange.exchange


def deliver_file(listener: Any, path: str, **options: Any) -> List[Delivered]:
    """Deliver every message of a JSON Lines recording (see `tcpulse._ops.recording`), in order.

    A message reaches the listener only if one of its queue's bindings matches, as on a broker;
    `Delivered.ran` is then empty for the others.

    Example:
        >>> from tcpulse import Listener, QueueEvents
        >>> app = Listener("doc-file")
        >>> app.on(QueueEvents.taskException)(lambda event: None) and None
        >>> [r.ran for r in deliver_file(app, "examples/messages/task-group.jsonl")][3:5]
        [[], ['tcpulse.testing.<lambda>']]
    """
    from tcpulse._ops.recording import read

    return [deliver(listener, m.exchange, m.routing_key, m.body, m.routes, **options) for m in read(path)]


def load(path: str) -> Any:
    """The listener of the handler script at `path`, imported afresh (as `tcpulse listen` does).

    Example:
        >>> [h.name for h in load("examples/task_group_watcher.py").handlers]
        ['task_group_watcher.completed', 'task_group_watcher.failed']
    """
    from tcpulse._listen.scripts import load_listener

    return load_listener(path)


class Harness:
    """What the `tcpulse_harness` fixture gives a test: `load`, `deliver` and `deliver_file`.

    Example:
        >>> Harness().deliver  # doctest: +ELLIPSIS
        <function deliver at ...>
    """

    load = staticmethod(load)
    deliver = staticmethod(deliver)
    deliver_file = staticmethod(deliver_file)


if pytest is not None:
    @pytest.fixture
    def tcpulse_harness() -> Harness:
        """Deliver messages to your handlers the way a live tcpulse listener would."""
        return Harness()


def sample(exchange: "Exchange[T]", /, **fields: Any) -> "Event[T]":
    """A message of `exchange` as a handler would get it: an `Event` whose body its exchange's
    schema (from the active reference set) accepts, whose routing key carries `fields` (the other
    required fields filled in, the same values the body holds where it names them) and whose
    exchange is the entry's.

    Example:
        >>> from tcpulse import QueueEvents
        >>> event = sample(QueueEvents.taskCompleted, taskGroupId="g1")
        >>> event.fields["taskGroupId"], event.body["status"]["taskId"] == event.fields["taskId"]
        ('g1', True)
    """
    return _sample(exchange, fields, None)


def samples(exchange: "Exchange[T]", /, **fields: Any) -> Any:
    """A Hypothesis strategy of `sample(exchange, **fields)` whose bodies vary (enum members,
    optional properties, oneOf branches, array lengths, numbers): `@given(samples(QueueEvents.taskCompleted))`.
    Needs the `hypothesis` package (`pip install 'tcpulse[hypothesis]'`).

    Example:
        >>> from hypothesis import given, settings
        >>> from tcpulse import QueueEvents
        >>> @settings(max_examples=20)
        ... @given(samples(QueueEvents.taskFailed, taskGroupId="g1"))
        ... def test_failed(event):
        ...     assert event.fields["taskGroupId"] == "g1"
        >>> test_failed()
    """
    try:
        from hypothesis import strategies
    except ImportError:
        raise ImportError("tcpulse.testing.samples needs Hypothesis: pip install 'tcpulse[hypothesis]'") from None
    return strategies.randoms(use_true_random=False).map(lambda rnd: _sample(exchange, fields, rnd))


def _sample(exchange: Any, fields: Mapping[str, Any], rnd: Optional[random.Random]) -> Event:
    from tcpulse.references import active_set
    from tcpulse._api.samples import sample_fields, sample_value
    from tcpulse._api.schemas import exchange_schema, store

    refset = active_set()
    sid = exchange_schema(refset, exchange.service, exchange.name)
    if sid is None:
        raise ValueError(f"{exchange.service}.{exchange.name} names no message schema in the {refset.label} "
                         f"reference set, so there is nothing to sample")
    schemas = store(refset)
    schema, resolve = schemas.document(sid), schemas.resolver(sid)
    exchange(**fields)  # a misspelt field or a bad value is an error naming it, before any sampling
    values = sample_fields(exchange.fields, fields, schema, resolve, rnd)
    body = sample_value(schema, resolve, values, rnd)
    return Event(body, exchange.exchange, exchange.routing_key(**values), source=exchange)
