"""The queue backlog warning: notice a listener's queue filling up before Pulse deletes it.

Pulse watches every queue and deletes one that holds too many messages (after warning its
owner by e-mail); a listener that cannot keep up, or that stopped consuming, loses its queue and
every message in it. `BacklogWatch` polls the queue's message count (a passive queue_declare on
the connection's thread, every `interval` seconds), publishes it as the `queue_messages` gauge,
and logs a warning when it passes `threshold`, again while it keeps growing, and an info line
when it drains.

Must not import kombu or requests: the channel is anything with `queue_declare(queue=...,
passive=True)` returning (name, message_count, consumer_count), as kombu's channels do.

Example:
    >>> from tcpulse._ops.metrics import Metrics
    >>> watch = BacklogWatch("queue/me/app", threshold=100, metrics=Metrics())
    >>> watch.observe(250)
    True
    >>> watch.metrics.gauge("queue_messages")
    250
"""
import logging
import time
from typing import Any, Callable, Optional

log = logging.getLogger("tcpulse.backlog")

DEFAULT_THRESHOLD = 5000  # messages; below the queue sizes at which Pulse acts
DEFAULT_INTERVAL = 30.0


class BacklogWatch:
    """Warn when `queue`'s message count passes `threshold` (0 or None: only the gauge).

    Example:
        >>> watch = BacklogWatch("queue/me/app", threshold=10)
        >>> watch.observe(5), watch.observe(11), watch.observe(12), watch.observe(25)
        (False, True, False, True)
    """

    def __init__(self, queue: str, threshold: Optional[int] = DEFAULT_THRESHOLD,
                 interval: Optional[float] = None, metrics: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold is not None and threshold < 0:
            raise ValueError(f"backlog threshold must be a message count >= 0 (got {threshold!r})")
        interval = DEFAULT_INTERVAL if interval is None else interval
        if interval <= 0:
            raise ValueError(f"backlog interval must be a positive number of seconds (got {interval!r})")
        self.queue = queue
        self.threshold = threshold or None
        self.interval = interval
        self.metrics = metrics
        self._clock = clock
        self._next_poll = clock()
        self._warned_at: Optional[int] = None

    def due(self) -> bool:
        """Whether `interval` has passed since the last poll."""
        return self._clock() >= self._next_poll

    def poll(self, channel: Any) -> Optional[int]:
        """Read the message count with a passive declare when due; return it (None if not due)."""
        if not self.due():
            return None
        self._next_poll = self._clock() + self.interval
        _, count, _ = channel.queue_declare(queue=self.queue, passive=True)
        self.observe(count)
        return count

    def observe(self, count: int) -> bool:
        """Record one reading; return True when it logged a warning."""
        if self.metrics is not None:
            self.metrics.set_gauge("queue_messages", count)
        if self.threshold is None or count <= self.threshold:
            if self._warned_at is not None:
                log.info("queue %s is back to %d messages (warning threshold %d)", self.queue, count, self.threshold)
            self._warned_at = None
            return False
        # Warn on crossing, then again each time the backlog doubles, not at every poll.
        if self._warned_at is not None and count < 2 * self._warned_at:
            return False
        self._warned_at = count
        log.warning("queue %s holds %d messages, over the warning threshold of %d: the listener is not "
                    "keeping up; Pulse deletes queues that grow too large (and their messages with them). "
                    "Add consumers (--concurrency, more processes on the same --queue) or fix slow handlers.",
                    self.queue, count, self.threshold)
        return True
