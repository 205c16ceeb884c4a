"""The handler thread pool of a listener.

Owns: `size` daemon threads that run `work(message)` for each message of a job and put the
result where the connection thread can settle it; the epoch rule (a message whose connection is
gone, or that arrives while stopping, is skipped, never started); counts of queued and running
work. Daemon threads: a handler still running after the shutdown grace must not keep the
process alive. Every thread a listener starts runs in a copy of its starter's context
(`daemon_thread`), so that its log lines name the listener (`tcpulse._ops.logsetup.speaking_for`).

Imports only the standard library.

Example:
    >>> pool = WorkerPool(2, lambda message: (message, {}))
    >>> pool.submit(pool.epoch, ["m"])
    >>> import time; time.sleep(0.1); pool.done.popleft()
    (0, 'm', ('m', {}))
"""
import collections
import contextvars
import logging
import queue
import threading
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

log = logging.getLogger("tcpulse.listener")

Work = Callable[[Any], Tuple[Any, Dict[str, BaseException]]]


def daemon_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """A daemon thread (not started) running `target(*args)` in a copy of the caller's context.

    Example:
        >>> seen = []; t = daemon_thread(seen.append, "example", 1); t.start(); t.join(); seen
        [1]
    """
    return threading.Thread(target=contextvars.copy_context().run, args=(target, *args), name=name, daemon=True)


class PoolState:
    """What the connection thread reads of a pool, whatever runs its messages: results in
    `done` as (epoch, message, result), counts of running and pending messages, and the epoch
    (None: stopping, start nothing new).

    Example:
        >>> PoolState(lambda: None).busy()
        False
    """

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        self._lock = threading.Lock()
        self.done: Deque[Tuple[int, Any, Any]] = collections.deque()
        self.running = 0  # messages running now
        self.pending = 0  # messages submitted and neither finished nor skipped
        self.epoch: Optional[int] = 0

    def set_epoch(self, epoch: Optional[int]) -> None:
        with self._lock:
            self.epoch = epoch

    def busy(self, started_only: bool = False) -> bool:
        """Whether work is queued or running (only running, with `started_only`), or a result
        waits to be settled."""
        with self._lock:
            return (self.running if started_only else self.pending) > 0 or bool(self.done)

    def _finished(self) -> None:
        with self._lock:
            self.running -= 1
            self.pending -= 1
        self._notify()


def internal_error() -> None:
    log.exception("internal error while processing a message; it stays unacked until the next reconnect")


class WorkerPool(PoolState):
    """`size` daemon threads running `work(message)` for each message of a job; results land
    in `done` as (epoch, message, result). A message whose epoch is no longer current (its
    connection is gone, or we are stopping) is skipped, never started.

    Example:
        >>> WorkerPool(1, lambda m: (m, {})).running
        0
    """

    def __init__(self, size: int, work: Work, notify: Callable[[], None] = lambda: None) -> None:
        super().__init__(notify)
        self._work = work
        self._jobs: "queue.SimpleQueue[Optional[Tuple[int, List[Any]]]]" = queue.SimpleQueue()
        self._threads = [daemon_thread(self._loop, f"tcpulse-handler-{i}") for i in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, epoch: int, messages: List[Any]) -> None:
        """Queue `messages`: with one thread, as one job run in order; else each on its own,
        for any free thread to take."""
        with self._lock:
            self.pending += len(messages)
        if len(self._threads) == 1:
            self._jobs.put((epoch, messages))
            return
        for message in messages:
            self._jobs.put((epoch, [message]))

    def close(self) -> None:
        self.set_epoch(None)
        for _ in self._threads:
            self._jobs.put(None)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            epoch, messages = job
            for index, message in enumerate(messages):
                with self._lock:
                    if epoch != self.epoch:
                        self.pending -= len(messages) - index
                        break
                    self.running += 1
                try:
                    self.done.append((epoch, message, self._work(message)))
                except BaseException:  # a bug in `work`: keep the thread; the broker keeps the message
                    internal_error()
                finally:
                    self._finished()
