"""Running one message's handlers and recording each run.

Owns: calling a message's matching handlers in registration order and collecting
{handler name: exception} for those that raised, both from a plain thread (`run_sync`) and
from the listener's event loop (`run_async`, which awaits `async def` handlers there and hands
sync ones to threads); completing an awaitable a sync caller got back (`run_awaitable`); the
per-run record (counters `handled` / `handler_errors`, the `handler_seconds` histogram, the
failure's traceback: at ERROR once per handler and exception type, else at DEBUG, as the line
saying what happens to the message, a retry or a dead letter, follows each failure anyway; a
`PermanentFailure` says all in its text, so its traceback is at DEBUG only); and the slow-handler watch: a handler still running after
`slow_after` seconds is warned about once per handler and message, with its name, the
message's key and how long it has run.

Imports only the standard library, `tcpulse.errors`, `tcpulse._ops.metrics` and `tcpulse._listen.pool`; asyncio only when an awaitable is
met (a listener with sync handlers never loads it). Never imports kombu or requests.

Example:
    >>> from tcpulse._listen.dispatch import Event, Handler
    >>> from tcpulse._ops.metrics import Metrics
    >>> runs = HandlerRuns(Metrics())
    >>> async def fetch(event): raise ValueError("down")
    >>> failures = runs.run_sync([Handler(fetch, "app.fetch", ())], Event({}, "exchange/x", "k"))
    >>> failures["app.fetch"]
    ValueError('down')
"""
import inspect
import itertools
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Dict, Iterable, Optional, Tuple, Type

from tcpulse._ops.metrics import Metrics, readable
from tcpulse._listen.pool import daemon_thread
from tcpulse.errors import PermanentFailure

log = logging.getLogger("tcpulse.listener")

LAG_CHECK = 0.1  # seconds between checks of the event loop's heartbeat
LAG_WARNING = 0.5  # seconds the event loop may be kept from running before a warning names the culprit

Failures = Dict[str, BaseException]
Offload = Callable[[Callable[[Any], Any], Any], Awaitable[Any]]


class HandlerRuns:
    """Runs handlers for a listener and keeps the record of the runs in progress.

    `slow_after`: seconds after which `check_slow()` warns about a run still going (None: never).
    `catching`: what a handler may raise and have it count as its failure; the live listener
    takes everything (even `sys.exit()` in a handler must not kill a handler thread).
    """

    def __init__(self, metrics: Metrics, slow_after: Optional[float] = None,
                 catching: Tuple[Type[BaseException], ...] = (BaseException,)) -> None:
        self.metrics = metrics
        self.slow_after = slow_after
        self._catching = catching
        # token -> (handler name, exchange, routing key, started); written by the threads and
        # the loop that run handlers, read by check_slow (dict operations are atomic).
        self.active: Dict[int, Tuple[str, str, str, float]] = {}
        self._warned: set = set()
        self._tracebacks_shown: set = set()  # (handler name, exception type) logged at ERROR so far
        self.by_task: Dict[Any, int] = {}  # asyncio task -> token of the run it is in
        self._tokens = itertools.count()

    def run_sync(self, handlers: Iterable[Any], event: Any) -> Failures:
        """Run `handlers` on this thread, one after the other; an awaitable a handler returns
        is completed here (`run_awaitable`)."""
        failures: Failures = {}
        for handler in handlers:
            token, started = self._start(handler.name, event)
            try:
                result = handler.func(event)
                if result is not None and inspect.isawaitable(result):
                    run_awaitable(result)
            except self._catching as exc:
                self._finish(token, handler.name, event, started, exc)
                failures[handler.name] = exc
            else:
                self._finish(token, handler.name, event, started, None)
        return failures

    async def run_async(self, handlers: Iterable[Any], event: Any, offload: Offload,
                        closing: Callable[[], bool]) -> Failures:
        """Run `handlers` on the running event loop, one after the other: an `async def`
        handler is awaited here, a sync one runs on a thread through `offload(func, event)`
        (and an awaitable it returns is awaited here). A CancelledError the handler raised is
        its failure; one that comes from the listener cancelling its own work (`closing()`)
        ends the run, so that the message stays unacked."""
        import asyncio

        failures: Failures = {}
        task = asyncio.current_task()
        try:
            for handler in handlers:
                token, started = self._start(handler.name, event)
                self.by_task[task] = token
                error = await self._await_one(handler, event, offload)
                if error is None:
                    self._finish(token, handler.name, event, started, None)
                    continue
                if isinstance(error, asyncio.CancelledError) and closing():
                    self._forget(token)
                    raise error
                self._finish(token, handler.name, event, started, error)
                failures[handler.name] = error
        finally:
            self.by_task.pop(task, None)
        return failures

    async def _await_one(self, handler: Any, event: Any, offload: Offload) -> Optional[BaseException]:
        """Run one handler on the loop; what it raised (CancelledError included), or None."""
        import asyncio

        try:
            result = handler.func(event) if handler.is_async else await offload(handler.func, event)
            if inspect.isawaitable(result):
                await result
        except (asyncio.CancelledError, *self._catching) as exc:
            return exc
        return None

    def _start(self, name: str, event: Any) -> Tuple[int, float]:
        token, started = next(self._tokens), time.monotonic()
        self.active[token] = (name, event.exchange, event.routing_key, started)
        return token, started

    def _forget(self, token: int) -> None:
        self.active.pop(token, None)
        self._warned.discard(token)

    def _finish(self, token: int, name: str, event: Any, started: float, exc: Optional[BaseException]) -> None:
        self._forget(token)
        if exc is None:
            self.metrics.handler_ran(name, time.monotonic() - started, failed=False)
        else:
            self._failed(name, event, started, exc)

    def _failed(self, name: str, event: Any, started: float, exc: BaseException) -> None:
        name = readable(name)
        self.metrics.handler_ran(name, time.monotonic() - started, failed=True)
        seen = (name, type(exc))
        if isinstance(exc, PermanentFailure) or seen in self._tracebacks_shown:
            log.debug("handler %s failed on %r", name, event, exc_info=exc)
            return
        self._tracebacks_shown.add(seen)
        log.error("handler %s failed on %r (the traceback of a %s from this handler is shown once; "
                  "later ones at DEBUG)", name, event, type(exc).__name__, exc_info=exc)

    def check_slow(self, now: Optional[float] = None) -> int:
        """Warn about each run that has gone on for longer than `slow_after`, once per run;
        returns how many warnings it logged."""
        if self.slow_after is None:
            return 0
        now = time.monotonic() if now is None else now
        warned = 0
        for token, (name, exchange, key, started) in list(self.active.items()):
            if now - started > self.slow_after and token not in self._warned:
                self._warned.add(token)
                warned += 1
                log.warning("handler %s has been running for %.1f s on a message from %s with key %r "
                            "(slow_handler_warning=%g s); it is still running and its message stays "
                            "unacked until it returns", readable(name), now - started, exchange, key, self.slow_after)
        return warned


    def on_loop(self, loop: Any) -> str:
        """Which handler run the task now executing on `loop` belongs to, for the loop-lag
        warning (read from another thread while the loop is blocked)."""
        import asyncio

        try:
            task = asyncio.current_task(loop)
        except Exception:  # the loop stopped meanwhile; naming the culprit is best effort
            task = None
        run = self.active.get(self.by_task.get(task, -1))
        if run is None:
            return "code outside any handler"
        name, exchange, key, started = run
        return f"handler {name} (message from {exchange} with key {key!r})"


class Watchdog:
    """A daemon thread that, while a listener runs, warns about handlers running longer than
    `runs.slow_after` and about an event loop kept from running (`pool.lag()`, when the pool
    has an event loop) for longer than LAG_WARNING seconds, once per episode.

    Example:
        >>> from tcpulse._ops.metrics import Metrics
        >>> Watchdog(HandlerRuns(Metrics()), pool=None).start().stop()
    """

    def __init__(self, runs: HandlerRuns, pool: Any) -> None:
        self._runs = runs
        self._pool = pool if hasattr(pool, "lag") else None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._blocked = False

    def start(self) -> "Watchdog":
        if self._pool is None and self._runs.slow_after is None:
            return self
        interval = LAG_CHECK if self._pool is not None else min(1.0, self._runs.slow_after / 4)
        self._thread = daemon_thread(self._watch, "tcpulse-watchdog", interval)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._runs.check_slow()
            if self._pool is not None:
                self.check_loop()

    def check_loop(self) -> None:
        lag = self._pool.lag()
        if lag <= LAG_WARNING:
            self._blocked = False
            return
        if self._blocked:
            return
        self._blocked = True
        self._runs.metrics.inc("loop_blocked")
        log.warning("the event loop of async handlers has been blocked for %.1f s by %s: it runs blocking "
                    "code (time.sleep, a sync HTTP client, heavy CPU work) instead of awaiting, and every "
                    "other async handler waits meanwhile; await instead, or make it a plain def handler "
                    "(those run on threads)", lag, self._runs.on_loop(self._pool.loop))


def run_awaitable(awaitable: Awaitable[Any]) -> Any:
    """Complete `awaitable` from sync code and return its result: on a fresh event loop in this
    thread, or, when a loop already runs in this thread (an async test calling the harness), on
    a fresh loop in a short-lived thread of its own."""
    import asyncio

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    if not in_loop:
        return asyncio.run(wait())
    outcome: Dict[str, Any] = {}

    def in_thread() -> None:
        try:
            outcome["result"] = asyncio.run(wait())
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc
    thread = threading.Thread(target=in_thread, name="tcpulse-await")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
