"""The crash-loop guard: a message whose handler kills the process (os._exit, SIGKILL, the OOM
killer) is dead-lettered after `delivery_limit` deliveries, and only that message, whatever the
prefetch, on classic and quorum queues alike.

Owns: spotting a message that came back unacked (the broker's redelivered flag), moving it to the listener's isolation queue
`queue/<user>/<name>/isolation` before any handler runs it again, running that queue one message
at a time with nothing else in flight, counting the returns of what ran there, and dead-lettering
a message at its limit.

Why not the broker's count: a process that dies returns every message it had prefetched, and each
counts a delivery, so after `delivery_limit` crashes a quorum queue dead-letters the innocent
messages of the prefetch window along with the killer (its x-delivery-limit stays declared, as a
backstop: messages now leave the listener's queue at their first return). A message run alone is
the one its process died on. Its count lives in the message itself (header `tcpulse-returns`),
inside a queue only the listener's Pulse user can read: it survives the process, needs nothing of
the queue type, and no publisher can set it (tcpulse's headers count only on messages that came
through the listener's delivery exchange).

How it goes, on the connection's thread (`tcpulse._listen.consumer` calls `hold` for each
delivery and `step` on each turn of its loop):
1. a message of the listener's queue that came back unacked is not run: a copy goes to the
   isolation queue with `tcpulse-returns: 1`, confirmed by the broker, then the original is acked
   (with `concurrency` above 1, a first return goes to the back of the listener's own queue
   instead, counted the same way, and runs with the others; only a second return is isolated);
2. while the isolation queue may hold messages, no message of the listener's queue starts; once
   nothing runs, one is taken from the isolation queue (basic.get) and runs alone;
3. one that comes back unacked from the isolation queue (its process died while running it
   alone, or lost the broker) counts one more return: at `delivery_limit` it is dead-lettered with
   the reason, otherwise it goes to the back of the isolation queue with its new count.
A message that died in the window of another is thus handled, not dead-lettered; the killer dies
`delivery_limit` times (at least once alone). Messages that come back after a clean stop or a lost
connection pay two more broker round trips (and at concurrency 1, where everything runs one at a
time anyway, they run from the isolation queue): the guard's cost falls on them, never on the
normal path.

Imports kombu; never requests or the listener.

Example:
    >>> from types import SimpleNamespace
    >>> came_back(SimpleNamespace(delivery_info={"redelivered": True}, headers={}))
    True
"""
import logging
import time
from typing import Any, List

import kombu

from tcpulse._listen.outcome import DeadLetter, Origin, returns_of

log = logging.getLogger("tcpulse.listener")

POLL_EVERY = 10.0  # seconds between looks at the isolation queue when this process put nothing there


def came_back(message: Any) -> bool:
    """Whether `message` was delivered before and never acked (its process died, lost its
    connection, or stopped before starting it): the broker's redelivered flag, which classic and
    quorum queues set alike. Not a header: a quorum queue's `x-delivery-count` says the same, but
    a publisher can put that header on a fresh message, to have everything it sends run alone."""
    return bool(message.delivery_info.get("redelivered"))


class Isolation:
    """The guard of one listener run, used from the connection's thread only.

    `delivery` is the run's `tcpulse._listen.delivery.Delivery` (its `delivery_limit`, exchange
    and isolation queue). The consumer it serves provides `pool`, `epoch`, `took(message)`
    (a message now unacked on the channel), `ack(message, counted)` and `flush_acks()`.
    """

    def __init__(self, delivery: Any, metrics: Any, concurrency: int = 1) -> None:
        self._delivery = delivery
        # With several messages in flight, a first return goes to the back of the listener's
        # queue and runs with the others: after a restart, the messages the broker returns
        # unstarted keep the listener's concurrency. Only a second return runs alone.
        self._again = concurrency > 1
        self.limit: int = delivery.delivery_limit
        self.queue: str = delivery.names.isolation_queue
        self._metrics = metrics
        self._returned: List[Any] = []  # came back to the listener's queue; moved on the next step
        self.waiting = True  # the isolation queue may hold messages
        self._looked_at = 0.0

    def connected(self) -> None:
        """A new channel: what was held belongs to the old one (the broker returns it), and the
        isolation queue may hold what a process that died left there."""
        self._returned.clear()
        self.waiting = True

    @property
    def busy(self) -> bool:
        """Whether messages of the listener's queue must wait: returned ones are to be moved, or
        the isolation queue may hold messages, which go first and alone."""
        return self.waiting or bool(self._returned)

    def hold(self, message: Any) -> bool:
        """Keep `message` (just delivered from the listener's queue) for the isolation queue if it
        came back unacked; False when it runs as usual."""
        if not came_back(message):
            return False
        self._returned.append(message)
        return True

    def step(self, consumer: Any, channel: Any) -> None:
        """Move what came back; once nothing runs, start the next isolated message alone."""
        for message in self._returned:
            returns = returns_of(self._delivery.trusted(message)) + 1
            alone = returns > 1 or not self._again
            self._delivery.isolate(message, self._origin(message), returns=returns, alone=alone)
            consumer.ack(message, counted=False)
            self.waiting = self.waiting or alone
        self._returned.clear()
        if not self.waiting:
            self._look(channel)
            return
        while not consumer.pool.busy():
            # Acks go out before a message runs alone: one still owed (batched) when the process dies
            # would bring its message back as if it had died with it. basic.get is a round trip,
            # after which the broker has taken every ack sent before it.
            consumer.flush_acks()
            message = kombu.Queue(self.queue, no_declare=True, channel=channel).get(no_ack=False)
            if message is None:
                self.waiting = False
                return
            consumer.took(message)
            if not message.delivery_info.get("redelivered"):
                consumer.pool.submit(consumer.epoch, [message])
                return
            self._returned_again(consumer, message)

    def _returned_again(self, consumer: Any, message: Any) -> None:
        """`message` ran alone and came back unacked: one more return, and at the limit, the end."""
        origin = self._origin(message)
        returns = returns_of(self._delivery.trusted(message)) + 1
        if returns >= self.limit:
            reason = (f"delivered {returns} times without an ack (delivery_limit {self.limit}), the last "
                      f"time alone: the process handling it exited or lost its connection each time")
            self._delivery.dead_letter(message, origin, DeadLetter(reason))
            self._metrics.inc("dead_lettered")
            log.error("dead-lettered a message from %s %r: %s; it waits in %s", origin.exchange,
                      origin.routing_key, reason, self._delivery.dead_letter_queue)
        else:
            self._delivery.isolate(message, origin, returns=returns)
            log.warning("a message from %s %r came back unacked while it ran alone (did its process die on "
                        "it?): %d of delivery_limit %d deliveries", origin.exchange, origin.routing_key,
                        returns, self.limit)
        consumer.ack(message, counted=False)

    def _look(self, channel: Any) -> None:
        """Now and then, whether another process of this listener left messages in the isolation
        queue (its unacked ones are not counted: they are still its own)."""
        now = time.monotonic()
        if now - self._looked_at < POLL_EVERY:
            return
        self._looked_at = now
        self.waiting = channel.queue_declare(queue=self.queue, passive=True)[1] > 0

    def _origin(self, message: Any) -> Origin:
        try:
            return self._delivery.origin(message)
        except Exception:  # unreadable headers: moved as delivered; its handlers' turn decides
            return Origin.of(None, message.delivery_info["exchange"], message.delivery_info["routing_key"])
