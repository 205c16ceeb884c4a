"""Running listeners: several together in one process (`run`), or one inside an application's
asyncio event loop (`serve`).

Owns: what surrounds the consume loops of the listeners run together: a thread per listener,
each in a context of its own whose log lines name it (`tcpulse._ops.logsetup.speaking_for`) and whose
metrics carry its label; one set of signal handlers for all of them (the first SIGTERM or SIGINT
drains every listener, the second exits at once); one stderr log setup; health endpoints that
answer for all of them (`/ready` only when every one is ready); the first failure stopping the
others and being raised once all have stopped. And `serve`: the same run of one listener from a
coroutine, its consume loop on a thread, its async handlers on the caller's loop, cancelling it
draining like SIGTERM, and no signal handler installed (the application owns them).

The labels (`labels_for`): each listener's name (an unnamed one's generated queue name), made
unique among the listeners run together by their Pulse user (`user/name`) where names repeat,
as firefox-ci and community-tc listeners of one application often share a name.

Imports only the standard library and tcpulse's logging, health and signal modules (asyncio when
`serve` runs); the listeners bring kombu along.

Example (needs a broker):
    >>> run(firefox_ci, community_tc)   # doctest: +SKIP
"""
import asyncio
import contextlib
import contextvars
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from tcpulse._ops.logsetup import log_to_stderr_unless_configured, running_listeners, speaking_for
from tcpulse._listen.pool import daemon_thread
from tcpulse._listen.shutdown import install_shutdown_signals

JOIN_EVERY = 0.2  # seconds between checks of the listener threads (signals are handled meanwhile)


def labels_for(listeners: Sequence[Any]) -> List[str]:
    """Each listener's label in its log lines and metrics: its name, or `user/name` where
    several listeners run together share a name (then `user/name#2`, ... if that repeats).

    Example:
        >>> from tcpulse import Listener
        >>> labels_for([Listener("ingest", broker="amqp://fx:p@h//"), Listener("ingest", broker="amqp://tc:p@h//"),
        ...             Listener("other", broker="amqp://tc:p@h//")])
        ['fx/ingest', 'tc/ingest', 'other']
    """
    names = [listener.label for listener in listeners]
    labels = [f"{listener.broker.user}/{name}" if names.count(name) > 1 else name
              for listener, name in zip(listeners, names)]
    seen: Dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return unique


def _check(listeners: Sequence[Any]) -> None:
    if not listeners:
        raise TypeError("run() needs at least one Listener: tcpulse.run(app) or tcpulse.run(firefox_ci, community_tc)")
    for listener in listeners:
        # Told by what it can do: importing the Listener class here would make a cycle with it.
        if not callable(getattr(listener, "_check_startable", None)):
            raise TypeError(f"run() takes Listener objects (got {listener!r})")
    if len({id(listener) for listener in listeners}) < len(listeners):
        raise ValueError("run() got the same Listener twice; pass each once")
    for listener in listeners:  # all of them before any starts
        listener._check_startable()


def run(*listeners: Any) -> None:
    """Run every listener until SIGTERM/SIGINT (or until each was `stop()`ped): one signal
    drains all of them (running handlers finish within each one's grace period), a second exits
    at once (exit code 1). Raises the first `BrokerFailure` (or other error) a listener met,
    after stopping the others. Signal handlers are installed only from the main thread.

    Example (needs a broker):
        >>> import tcpulse
        >>> tcpulse.run(firefox_ci, community_tc)   # doctest: +SKIP
    """
    _check(listeners)
    starts = [_Started(listener, label) for listener, label in zip(listeners, labels_for(listeners))]
    failures: List[BaseException] = []

    def stop_all() -> None:
        for listener in listeners:
            listener.stop()

    def consume(start: "_Started") -> None:
        try:
            start.listener._consume()
        except BaseException as exc:  # raised below, on the caller's thread, once all have stopped
            failures.append(exc)
            stop_all()

    with _surroundings(listeners) as cleanup:
        cleanup.callback(install_shutdown_signals(stop_all, lambda: any(l.stopping for l in listeners),
                                                  max(listener.shutdown_grace for listener in listeners)))
        threads = [start.thread(consume) for start in starts]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(JOIN_EVERY)
    if failures:
        raise failures[0]


class _Started:
    """One listener made ready to run in a context of its own that names it in log lines."""

    def __init__(self, listener: Any, label: str, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self.listener = listener
        self.context = contextvars.copy_context()
        self.context.run(self._prepare, label, loop)

    def _prepare(self, label: str, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        speaking_for(label)
        self.listener._prepare(label, loop)

    def thread(self, target: Callable[["_Started"], None]) -> threading.Thread:
        return daemon_thread(self.context.run, f"tcpulse-{self.listener.label}", target, self)


@contextlib.contextmanager
def _surroundings(listeners: Sequence[Any]) -> Iterator[contextlib.ExitStack]:
    """For the length of a run: stderr logging unless configured, the count of running listeners
    (several prefix log lines), and a health server on each port the listeners ask for, each
    answering for all of them. Yields the stack that undoes it, for more."""
    with contextlib.ExitStack() as stack:
        stack.callback(log_to_stderr_unless_configured())
        running_listeners(+len(listeners))
        stack.callback(running_listeners, -len(listeners))
        ports = sorted({l.health_port for l in listeners if l.health_port is not None})
        if ports:
            from tcpulse._ops.health import HealthServer
            for port in ports:
                stack.callback(HealthServer(list(listeners), port).start().stop)
        yield stack


async def serve(listener: Any) -> None:
    """`Listener.serve()`: run `listener` on the caller's event loop until `stop()` or
    cancellation; see there."""
    _check([listener])
    loop = asyncio.get_running_loop()
    start = _Started(listener, listener.label, loop)
    finished: "asyncio.Future[None]" = loop.create_future()

    def report(outcome: Optional[BaseException]) -> None:
        if outcome is None:
            finished.set_result(None)
        else:
            finished.set_exception(outcome)

    def consume(_: "_Started") -> None:
        outcome: Optional[BaseException] = None
        try:
            listener._consume()
        except BaseException as exc:  # raised by serve(), on the caller's loop
            outcome = exc
        loop.call_soon_threadsafe(report, outcome)

    cancelled = False
    with _surroundings([listener]):
        start.thread(consume).start()
        while not finished.done():
            try:
                await asyncio.shield(finished)
            except asyncio.CancelledError:
                # Drain as SIGTERM would: running handlers finish (within the grace period) on
                # this very loop, so we keep awaiting; a further cancellation changes nothing.
                cancelled = True
                listener.stop()
        closed = getattr(getattr(listener._consumer, "pool", None), "closed", None)
        if closed is not None:  # the pool's own tasks on this loop have unwound
            await asyncio.wrap_future(closed)
        finished.result()
    if cancelled:
        raise asyncio.CancelledError()
