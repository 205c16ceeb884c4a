"""Messages whose retry or dead-letter copy the broker would not take: kept unacked, tried again.

Owns: settling a finished message on the connection's thread (`Settling.settle`: publish what its
outcome calls for, then ack) and, when the broker refuses the copy (`tcpulse._listen.delivery.PublishRefused`:
nacked or returned), keeping the original unacked and settling it again later, with a warning
that names the cause each time. The original is never acked before its copy is confirmed, and a
refusal never ends `run()`: whatever the broker refuses (a queue that is full with
`reject-publish`, unavailable, or gone), the message stays on the broker, held by this channel,
and comes back on a reconnect or at the next start if this process never settles it.

Why wait and not requeue at once: a refusal usually lasts (a full queue empties slowly), and a
message requeued at once would come straight back and run its handlers again in a tight loop.
Held messages count against the prefetch window, so a refusal that never ends slows the
listener to a stop instead of losing messages.

Pure of kombu and requests: it calls the `settle` and `ack` it is given, on the connection's thread.

Example:
    >>> from tcpulse._listen.delivery import PublishRefused
    >>> acked, outcomes = [], iter([PublishRefused("retry-5s", "nacked", "full"), None])
    >>> def settle(message, event, failures):
    ...     outcome = next(outcomes)
    ...     if outcome: raise outcome
    >>> s = Settling(settle, acked.append, clock=lambda: 100.0)
    >>> s.settle("m", None, {}); acked, s.held
    ([], 1)
    >>> s.clock = lambda: 200.0; s.poll(); acked, s.held
    (['m'], 0)
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from tcpulse._listen.delivery import PublishRefused

log = logging.getLogger("tcpulse.listener")

FIRST_WAIT = 5.0  # seconds before a refused copy is sent again
LONGEST_WAIT = 60.0  # the wait doubles up to this


@dataclass
class _Held:
    message: Any
    event: Any
    failures: Dict[str, BaseException]
    due: float
    wait: float


class Settling:
    """`settle(message, event, failures)` publishes what a message's outcome calls for and acks
    it; a refused copy keeps the message here, unacked, until `poll()` gets it through."""

    def __init__(self, settle: Callable[[Any, Any, Dict[str, BaseException]], None],
                 ack: Callable[[Any], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._settle, self._ack, self.clock = settle, ack, clock
        self._held: List[_Held] = []

    @property
    def held(self) -> int:
        """How many messages wait, unacked, for the broker to take their copy."""
        return len(self._held)

    def settle(self, message: Any, event: Any, failures: Dict[str, BaseException]) -> None:
        self._try(_Held(message, event, failures, 0.0, FIRST_WAIT))

    def poll(self) -> None:
        """Settle again the held messages whose wait is over."""
        if not self._held:
            return
        now = self.clock()
        due = [h for h in self._held if h.due <= now]
        self._held = [h for h in self._held if h.due > now]
        for held in due:
            self._try(held)

    def forget(self) -> None:
        """The channel is gone: the broker gives the held messages back to a consumer itself."""
        if self._held:
            log.warning("%d message(s) whose retry or dead-letter copy the broker refused go back to the "
                        "queue unacked; they run again when delivered again", len(self._held))
        self._held.clear()

    def _try(self, held: _Held) -> None:
        try:
            self._settle(held.message, held.event, held.failures)
        except PublishRefused as exc:
            log.warning("%s; the message stays unacked and its copy is sent again in %g s (a queue of this "
                        "listener that is full or unavailable? see its dead-letter and retry queues)",
                        exc, held.wait)
            held.due, held.wait = self.clock() + held.wait, min(held.wait * 2, LONGEST_WAIT)
            self._held.append(held)
            return
        self._ack(held.message)
