"""The event loop a listener with `async def` handlers runs its messages on.

Owns: one asyncio event loop in a daemon thread of its own, or the application's running loop
that `await listener.serve()` was called on (then its tasks are the pool's only: closing cancels
those and leaves the loop running); at most `size` messages in flight
on it (each one a task awaiting `work(message)`, in delivery order); the same interface and
epoch rule as `tcpulse._listen.pool.WorkerPool` (results land in `done` for the connection thread to
settle; a message whose connection is gone, or that would start while stopping, is skipped,
never started); daemon threads for the sync handlers of such a listener; `lag()`, how long the loop has
been kept from running (`tcpulse._listen.running.Watchdog` warns about a handler blocking it).

Why a loop of its own in its own thread: acks and heartbeats stay on the connection thread
(kombu channels are not thread-safe), and one loop can keep hundreds of awaiting handlers in
flight where threads would need one each.

Imports asyncio and the standard library; never kombu or requests.

Example:
    >>> async def work(message): return message, {}
    >>> pool = LoopPool(2, work)
    >>> pool.submit(pool.epoch, ["m"])
    >>> import time; time.sleep(0.2); pool.done.popleft()
    (0, 'm', ('m', {}))
    >>> pool.close()
"""
import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
import time
from typing import Any, Awaitable, Callable, Deque, Optional, Set, Tuple

from tcpulse._listen.pool import PoolState, daemon_thread, internal_error

log = logging.getLogger("tcpulse.listener")

AsyncWork = Callable[[Any], Awaitable[Any]]
BEAT = 0.1  # seconds between the loop's heartbeats; a late beat is loop lag
CLOSE_WAIT = 1.0  # seconds cancelled tasks get to unwind when the pool closes


class LoopPool(PoolState):
    """Runs `work(message)` coroutines on a private event loop (or on `loop`, a running loop the
    pool does not own), at most `size` at a time.

    `done`, `running`, `pending`, `epoch`, `submit`, `set_epoch`, `busy` and `close` mean what
    they mean on `WorkerPool`. `threads` runs the sync handlers of the same listener. `closed`
    completes once `close()` has cancelled and waited for what still ran.
    """

    def __init__(self, size: int, work: AsyncWork, notify: Callable[[], None] = lambda: None,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        super().__init__(notify)
        self._size = size
        self._work = work
        self.closing = False
        self._waiting: Deque[Tuple[int, Any]] = collections.deque()
        self._tasks: Set["asyncio.Task[None]"] = set()
        self.threads = DaemonThreads(size)
        self.beat = time.monotonic()
        self._beat: Optional[asyncio.TimerHandle] = None
        self.closed: "concurrent.futures.Future[None]" = concurrent.futures.Future()
        self._owned = loop is None
        self.loop = asyncio.new_event_loop() if loop is None else loop
        if self._owned:
            daemon_thread(self._serve, "tcpulse-event-loop").start()
        else:
            self.loop.call_soon_threadsafe(self._heartbeat)

    def submit(self, epoch: int, messages: list) -> None:
        with self._lock:
            self.pending += len(messages)
        self.loop.call_soon_threadsafe(self._take, epoch, messages)

    def set_epoch(self, epoch: Optional[int]) -> None:
        super().set_epoch(epoch)
        if not self.loop.is_closed():  # skip what waits for a connection that is gone
            self.loop.call_soon_threadsafe(self._start_more)

    def close(self) -> None:
        """Cancel what still runs (its message stays unacked) and stop the loop."""
        self.set_epoch(None)
        self.closing = True
        self.threads.close()
        if self.loop.is_closed():
            self.closed.set_result(None)
        else:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)

    def offload(self, func: Callable[[Any], Any], event: Any) -> Awaitable[Any]:
        """Run a sync handler on one of `threads`, awaitable from the loop."""
        return self.loop.run_in_executor(self.threads, func, event)

    def lag(self, now: Optional[float] = None) -> float:
        """How late the loop's heartbeat is: how long it has been kept from running."""
        return max(0.0, (time.monotonic() if now is None else now) - self.beat - BEAT)

    # -- on the loop's thread -------------------------------------------------------------
    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._heartbeat)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def _heartbeat(self) -> None:
        self.beat = time.monotonic()
        self._beat = self.loop.call_later(BEAT, self._heartbeat)

    def _take(self, epoch: int, messages: list) -> None:
        self._waiting.extend((epoch, message) for message in messages)
        self._start_more()

    def _start_more(self) -> None:
        """Start waiting messages, in order, while fewer than `size` are in flight."""
        while self._waiting and self.running < self._size:
            epoch, message = self._waiting.popleft()
            with self._lock:
                if epoch != self.epoch or self.closing:
                    self.pending -= 1
                    continue
                self.running += 1
            task = self.loop.create_task(self._one(epoch, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, epoch: int, message: Any) -> None:
        try:
            self.done.append((epoch, message, await self._work(message)))
        except asyncio.CancelledError:
            if not self.closing:
                log.error("internal error: a message's work was cancelled; it stays unacked until "
                          "the next reconnect")
            raise
        except BaseException:  # a bug in `work`: keep the loop; the broker keeps the message
            internal_error()
        finally:
            self._finished()
            if not self.closing:
                self._start_more()

    async def _shutdown(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:  # a handler that swallows its cancellation is not waited for
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        self.closed.set_result(None)
        if self._owned:
            self.loop.stop()


class DaemonThreads(concurrent.futures.Executor):
    """An executor of up to `size` daemon threads, started as work needs them.

    Not `ThreadPoolExecutor`: its threads are joined at interpreter exit, so a sync handler that
    never returns would keep the process alive after the shutdown grace.

    Example:
        >>> DaemonThreads(2).submit(len, "abc").result()
        3
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._threads: list = []
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        future: "concurrent.futures.Future[Any]" = concurrent.futures.Future()
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = daemon_thread(self._loop, f"tcpulse-handler-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        self._jobs.put((future, fn, args, kwargs))
        return future

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # the handler's failure, for the loop to record
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            threads = len(self._threads)
        for _ in range(threads):
            self._jobs.put(None)
