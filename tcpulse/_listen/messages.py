"""A listener run's message path: from a delivered message to its verdict as broker actions.

Owns: turning a broker message into an `Event` (its origin from the delivery headers, its body
checked by `tcpulse._listen.outcome.decode_body`), choosing its handlers from the registry, the pool
that runs them (threads, or an event loop once any handler is `async def`) and running them
through `tcpulse._listen.running`, the rate-limited warning about messages no handler matches, and
`settle`: the ONE place that applies the ack / retry / dead-letter decision of
`tcpulse._listen.outcome` (a retry or dead-letter copy published through `tcpulse._listen.delivery`).

The listener builds one `MessageHandling` per run with what it needs and hands `new_pool` and
`settle` to `tcpulse._listen.consumer`, which acks each message once `settle` returns. Imports the pools
lazily (asyncio only for async handlers); never imports the listener, the consumer, kombu or
requests.

Example (a message as kombu would deliver it, run on the pool's thread):
    >>> from types import SimpleNamespace
    >>> from tcpulse import Listener, QueueEvents
    >>> from tcpulse._listen.delivery import Delivery
    >>> app = Listener("w", broker="memory://")
    >>> @app.on(QueueEvents.taskCompleted)
    ... def completed(event): print("completed", event.fields["taskId"])
    >>> handling = MessageHandling(app.registry, Delivery(app.queue, app.policy), HandlerRuns(app.metrics),
    ...                            app.policy, queue=app.queue, name=app.name, concurrency=1)
    >>> finished = threading.Event(); pool = handling.new_pool(finished.set)
    >>> message = SimpleNamespace(body=b"{}", headers={}, delivery_info={
    ...     "exchange": "exchange/taskcluster-queue/v1/task-completed", "routing_key": "primary.t1.0.w.w.p.t.s.g._"})
    >>> pool.submit(pool.epoch, [message]); finished.wait(10)
    completed t1
    True
    >>> epoch, message, (event, failures) = pool.done.popleft(); failures   # nothing to publish: an ack
    {}
    >>> pool.close()
"""
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from tcpulse._listen.bodycheck import BodyValidation
from tcpulse._listen.dispatch import Event, Handler, Registry
from tcpulse._ops.metrics import readable
from tcpulse._listen.outcome import (DEFAULT_MAX_BODY, UNREADABLE, DeadLetter, Origin, Outcome, Poison, Retry,
                                     RetryPolicy, decide, decode_body, returns_of)
from tcpulse._listen.running import Failures, HandlerRuns
from tcpulse._listen.topology import ISOLATION_KEY, RETURN_KEY

log = logging.getLogger("tcpulse.listener")

UNMATCHED_LOG_EVERY = 60.0  # seconds between warnings about unmatched messages, per exchange
BODY_FAILURE = "tcpulse.body"  # the failures key for a body that is not a JSON object
NO_HANDLER = "tcpulse.no-handler"  # the failures key for a retry or requeued letter no handler takes


class MessageHandling:
    """Runs one listener's messages for one `run()`: `new_pool(notify)` makes the pool that
    processes them, `settle(message, event, failures)` publishes what their outcome asks for.

    `delivery` is the run's `tcpulse._listen.delivery.Delivery`; `runs` records handler runs (its
    metrics are the listener's); `queue` and `name` only word log lines; `loop`: the running
    event loop async handlers go to (`Listener.serve`), else the pool makes its own.
    """

    def __init__(self, registry: Registry, delivery: Any, runs: HandlerRuns, policy: RetryPolicy, *,
                 queue: str, name: Optional[str], concurrency: int,
                 validation: Optional[BodyValidation] = None, max_body_bytes: int = DEFAULT_MAX_BODY,
                 loop: Any = None) -> None:
        self._registry = registry
        self._delivery = delivery
        self._runs = runs
        self.metrics = runs.metrics
        self._policy = policy
        self._queue, self._name = queue, name
        self._concurrency = concurrency
        self._loop = loop  # the event loop async handlers run on (None: one of the pool's own)
        self._validation = validation or BodyValidation()
        self._max_body = max_body_bytes
        self._pool: Any = None
        self._unmatched_logged: Dict[str, float] = {}  # exchange -> when we last warned
        self._unmatched_lock = threading.Lock()
        self._taken_over_logged: Set[Tuple[Tuple[str, ...], Tuple[str, ...]]] = set()

    def new_pool(self, notify: Callable[[], None]) -> Any:
        """Threads for a listener of sync handlers; an event loop once any handler is async."""
        if any(handler.is_async for handler in self._registry.handlers):
            from tcpulse._listen.looppool import LoopPool
            self._pool = LoopPool(self._concurrency, self._process_async, notify, loop=self._loop)
        else:
            from tcpulse._listen.pool import WorkerPool
            self._pool = WorkerPool(self._concurrency, self._process, notify)
        return self._pool

    def _process(self, message: Any) -> tuple:
        """Run on a handler thread: the message's Event and {handler name: exception} for
        every matching handler that raised ({} when all succeeded or none matched)."""
        event, handlers = self._prepare(message)
        if event is None:
            return None, handlers
        return event, self._runs.run_sync(handlers, event)

    async def _process_async(self, message: Any) -> tuple:
        """`_process` on the pool's event loop (`tcpulse._listen.looppool`)."""
        event, handlers = self._prepare(message)
        if event is None:
            return None, handlers
        pool = self._pool
        return event, await self._runs.run_async(handlers, event, pool.offload, lambda: pool.closing)

    def _prepare(self, message: Any) -> tuple:
        """(Event, the handlers it goes to), or (None, failures) for an unreadable message."""
        unread = getattr(message, "properties", {}).get(UNREADABLE)
        if unread is not None:  # a part py-amqp could not decode, or a compressed body (tcpulse.wire)
            self.metrics.inc("received")
            return None, {BODY_FAILURE: Poison(f"unreadable delivery: {unread}")}
        try:
            origin = self._delivery.origin(message)
        except Exception as exc:  # unreadable headers: a verdict, never a dead thread
            self.metrics.inc("received")
            return None, {BODY_FAILURE: exc}
        if origin.attempt == 1:  # a retry is the same message again (counted here, not at delivery:
            self.metrics.inc("received")  # what is returned unstarted at shutdown was never taken on)
        try:
            event = self._event_for(message, origin)
        except Exception as exc:  # unreadable body
            return None, {BODY_FAILURE: exc}
        handlers = self._registry.select(event.exchange, event.routing_key, origin.cc, only=origin.handlers)
        gone = self._registry.unknown(origin.handlers or ())
        if gone and handlers:
            self._taken_over(gone, handlers, event)
        if not handlers:
            if origin.handlers is not None or (_requeued(message, self._delivery.names)
                                               and not self._redelivered(message)):
                # A retry or a requeued dead letter: acking it would drop work a handler never did.
                return None, {NO_HANDLER: LookupError(_no_handler(origin.handlers or (), gone))}
            self._unmatched(event)
        last = self._delivery.last_delivery(message)
        if last is not None:
            log.warning("last delivery (%d of delivery_limit %d) of a message from %s %r: it came back unacked "
                        "each time before (did its process die on it?); it runs alone, and if this process dies "
                        "on it too, it is dead-lettered", last, self._delivery.delivery_limit,
                        event.exchange, event.routing_key)
        return event, handlers

    def _unmatched(self, event: Event) -> None:
        self.metrics.inc("unmatched")
        now = time.monotonic()
        with self._unmatched_lock:  # a stale binding on a busy exchange must not flood the log
            if now - self._unmatched_logged.get(event.exchange, -UNMATCHED_LOG_EVERY) < UNMATCHED_LOG_EVERY:
                return
            self._unmatched_logged[event.exchange] = now
        log.warning("message from %s with key %r matched no handler; acked without action (a binding "
                    "left on %s by a version of this listener that kept no binding record? delete the "
                    "queue to drop it); "
                    "more from this exchange are counted in the metric 'unmatched' and logged at most "
                    "once every %g s", event.exchange, event.routing_key, self._queue, UNMATCHED_LOG_EVERY)

    def _redelivered(self, message: Any) -> bool:
        """Whether `message` came back unacked before: the broker says so, or it is the copy the
        crash-loop guard made of one (`tcpulse._listen.isolation`), which the broker delivers as new."""
        info = message.delivery_info
        if info.get("redelivered") or info.get("routing_key") == ISOLATION_KEY:
            return True
        return self._delivery.names.owns(info.get("exchange", "")) and returns_of(self._delivery.trusted(message)) > 0

    def _taken_over(self, gone: List[str], handlers: List[Handler], event: Event) -> None:
        key = (tuple(gone), tuple(h.name for h in handlers))
        with self._unmatched_lock:
            if key in self._taken_over_logged:
                return
            self._taken_over_logged.add(key)
        log.warning("a retried or requeued message from %s %r was for %s, which no longer exist%s (renamed, or "
                    "its script renamed?); it goes to every handler that matches it now: %s (logged once per "
                    "run for these handlers)", event.exchange, event.routing_key, readable(", ".join(gone)),
                    "s" if len(gone) == 1 else "", ", ".join(h.display for h in handlers))

    def _event_for(self, message: Any, origin: Origin) -> Event:
        body = decode_body(message.body, self._max_body)
        source = self._registry.source(origin.exchange)
        self._validation.check(body, source)  # raises InvalidBody (a dead letter) in "dead-letter" mode
        return Event(body, origin.exchange, origin.routing_key, origin.cc,
                     redelivered=self._redelivered(message), attempt=origin.attempt,
                     headers=self._delivery.public_headers(message.headers), source=source)

    def settle(self, message: Any, event: Optional[Event], failures: Failures) -> None:
        """Turn a message's result into broker actions, on the connection's thread, before the
        consumer acks it: the one place that applies the ack / retry / dead-letter decision of
        `tcpulse._listen.outcome`. A copy (retry or dead letter) is published before the original is
        acked on the same channel, so a lost connection can duplicate a message but never lose it."""
        if not failures:  # every handler succeeded or none matched: `decide` says Ack, whatever the attempt
            return
        origin = _raw_origin(self._delivery, message)
        if event is None:  # unreadable, or no handler takes it: no handler ran
            verdict: Outcome = DeadLetter(str(next(iter(failures.values()))))
        else:
            verdict = decide(failures, origin.attempt, self._policy)
        if isinstance(verdict, Retry):
            self._delivery.retry(message, origin, verdict)
            self.metrics.inc("retried")
            log.warning("%s failed on %s %r (%s); retrying in %.1f s, attempt %d of %d",
                        readable(", ".join(verdict.handlers)), origin.exchange, origin.routing_key,
                        readable(_summary(failures)), verdict.delay, verdict.attempt, self._policy.max_attempts)
        elif isinstance(verdict, DeadLetter):
            self._delivery.dead_letter(message, origin, verdict)
            self.metrics.inc("dead_lettered")
            log.error("dead-lettered a message from %s %r: %s; it waits in %s (tcpulse dead-letters "
                      "%s --list / --requeue)", origin.exchange, origin.routing_key, readable(verdict.reason),
                      self._delivery.dead_letter_queue, self._name or "NAME")


def _raw_origin(delivery: Any, message: Any) -> Origin:
    """Where a message came from, even when its headers cannot be read."""
    try:
        return delivery.origin(message)
    except Exception:
        return Origin.of(None, message.delivery_info["exchange"], message.delivery_info["routing_key"])


def _requeued(message: Any, names: Any) -> bool:
    """Whether `message` came back through a delivery exchange of the listener (`names`, its
    `ListenerNames`): a requeued dead letter, a retry; work a handler took on, unlike a message
    from a stale binding."""
    info = message.delivery_info
    return info.get("routing_key") == RETURN_KEY and names.owns(info.get("exchange", ""))


def _no_handler(recorded: Sequence[str], gone: Sequence[str]) -> str:
    """Why a retried or requeued message goes (back) to the dead-letter queue instead of being acked.

    Example:
        >>> _no_handler(["app.boom"], ["app.boom"])
        'no handler matches it now: it was for app.boom (app.boom no longer exists: renamed?); requeue it once a handler takes it'
    """
    if not recorded:
        was = "it came back to the listener (a requeued dead letter?)"
    elif gone:
        was = f"it was for {', '.join(recorded)} ({', '.join(gone)} no longer exist{'s' if len(gone) == 1 else ''}: renamed?)"
    else:
        was = f"it was for {', '.join(recorded)}, whose bindings no longer match it"
    return f"no handler matches it now: {was}; requeue it once a handler takes it"


def _summary(failures: Failures) -> str:
    return "; ".join(f"{type(exc).__name__}: {exc}" for exc in failures.values())
