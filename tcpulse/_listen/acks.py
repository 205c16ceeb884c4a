"""Which delivery tags to acknowledge, and how: batched acks for one AMQP channel.

Owns: the bookkeeping that lets the listener ack many messages with one
`basic.ack(multiple=True)` without ever acking one that is not finished. Tags are delivered in
increasing order; a contiguous prefix of finished tags is covered by one multiple ack up to its
last tag; acks that finished out of order go out one by one, so
a single slow handler never holds the prefetch window hostage.

Pure module: imports only the standard library. Not thread-safe: used on the connection's
thread only, like the channel it writes to.

Example:
    >>> sent = []
    >>> window = AckWindow(lambda tag, multiple: sent.append((tag, multiple)))
    >>> for tag in (1, 2, 3, 4):
    ...     window.delivered(tag)
    >>> window.ack(2); window.ack(1); window.ack(4)
    >>> window.flush(), sent
    (3, [(2, True), (4, False)])
"""
import collections
import time
from typing import Callable, Deque, Dict, List

PENDING, ACK, SETTLED = 0, 1, 2


class AckWindow:
    """Unsettled delivery tags of one channel, in delivery order, and the acks owed on them.

    `send(tag, multiple)` writes one basic.ack. `flush()` sends what is owed and returns how
    many messages it acknowledged.

    Example:
        >>> w = AckWindow(lambda tag, multiple: None)
        >>> w.delivered(7); w.unsettled
        1
    """

    def __init__(self, send: Callable[[int, bool], None]) -> None:
        self._send = send
        self._order: Deque[int] = collections.deque()
        self._state: Dict[int, int] = {}
        self._owed: List[int] = []
        self.first_owed_at = 0.0

    @property
    def unsettled(self) -> int:
        return len(self._state)

    @property
    def owed(self) -> int:
        return len(self._owed)

    def delivered(self, tag: int) -> None:
        self._order.append(tag)
        self._state[tag] = PENDING

    def ack(self, tag: int) -> None:
        """`tag` is done: acknowledge it at the next flush."""
        if not self._owed:
            self.first_owed_at = time.monotonic()
        self._state[tag] = ACK
        self._owed.append(tag)

    def flush(self) -> int:
        last = None
        while self._order and self._state[self._order[0]] != PENDING:
            tag = self._order.popleft()
            if self._state.pop(tag) == ACK:
                last = tag
        if last is not None:
            self._send(last, True)
        for tag in self._owed:
            if self._state.get(tag) == ACK:  # finished out of order: ack it alone
                self._send(tag, False)
                self._state[tag] = SETTLED
        count, self._owed = len(self._owed), []
        return count

    def reset(self) -> None:
        """Forget everything: the channel is gone, and its tags with it."""
        self._order.clear()
        self._state.clear()
        self._owed.clear()
