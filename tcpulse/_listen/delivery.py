"""The broker side of retries and dead letters, inside Pulse's permissions.

For a listener queue `queue/<user>/<name>` this module declares and uses:

- `exchange/<user>/<name>/delivery-<secret>`, a direct exchange of our own (a Pulse user may not
  publish to the default exchange), routing `retry-<s>s` to a holding queue, `dead-letter` to the
  dead-letter queue and `return` back to the listener's queue; the secret keeps other Pulse users,
  who may bind to any exchange they can name, off it (`tcpulse._listen.topology.ListenerNames`);
- one holding queue `queue/<user>/<name>/retry-<s>s` per scheduled delay: nothing consumes it;
  its `x-message-ttl` (the delay plus the most jitter can add; each copy also carries its own
  jittered `expiration`) sends each copy back through the exchange with key `return`;
- `queue/<user>/<name>/dead-letter`, bounded to 7 days and 5,000 messages (oldest dropped):
  Pulse watches every queue of a user and deletes one that grows too large (after warning its
  owner), so an unbounded dead-letter queue could take its own history down with it.

Held and parked messages count toward a user's queues on Pulse like any other; in a long outage
the messages move between the listener's queue and the holding queues, they do not multiply.

Only standard queue arguments are used (x-message-ttl, x-dead-letter-exchange,
x-dead-letter-routing-key, x-max-length, x-overflow), so the embedded `memory://` broker works too.
The decisions come from `tcpulse._listen.outcome` (pure); this module imports kombu, never requests,
and never the listener.

Example:
    >>> from tcpulse._listen.outcome import RetryPolicy
    >>> d = Delivery("queue/alice/watcher", RetryPolicy(retry_delays=(5, 30)), secret="s3cr3t")
    >>> d.exchange, d.holding_queue(2), d.dead_letter_queue
    ('exchange/alice/watcher/delivery-s3cr3t', 'queue/alice/watcher/retry-5s', 'queue/alice/watcher/dead-letter')

Every publish here is confirmed and mandatory, and a copy the broker refuses raises
`PublishRefused` (never acked, see `tcpulse._listen.unsettled`). Reading dead letters is
`tcpulse._listen.deadletters`.
"""
import contextlib
import datetime
import logging
import math
from typing import Any, Dict, Iterator, List, Optional

import kombu
from amqp.exceptions import MessageNacked

from tcpulse._broker.connection import broker_errors, connect_any
from tcpulse.errors import BrokerFailure
from tcpulse._listen.wire import fit_headers
from tcpulse._listen.topology import (DEAD_LETTER_KEY, DEFAULT_DELIVERY_LIMIT, ISOLATION_KEY, RETURN_KEY,
                                      ListenerNames, check_queue_type, explain_conflicts, holding_key, limit_key,
                                      new_secret, queue_arguments)
from tcpulse._listen.outcome import (H_RETURNS, DeadLetter, Origin, Retry, RetryPolicy, header_strings, header_text,
                                     returns_of, trusted_headers)

log = logging.getLogger("tcpulse.delivery")

DEAD_LETTER_TTL = 7 * 24 * 3600  # seconds a dead letter is kept before the broker drops it
DEAD_LETTER_MAX_LENGTH = 5_000  # beyond this the oldest dead letters are dropped


class Delivery:
    """Retry and dead-letter topology and publishing for one listener queue.

    `max_length` bounds the listener's queue (x-max-length, oldest dropped into the dead-letter
    queue): Pulse deletes a queue that grows too large, losing everything in it, so a bound that
    sheds the oldest messages is the lesser harm for a listener that may fall far behind.

    Example:
        >>> Delivery("queue/alice/w", RetryPolicy(), max_length=1000).queue_arguments()["x-max-length"]
        1000
    """

    def __init__(self, queue: str, policy: RetryPolicy, max_length: Optional[int] = None,
                 exclusive: bool = False, queue_type: str = "classic", delivery_limit: Optional[int] = None,
                 secret: Optional[str] = None) -> None:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be an integer >= 1 or None (got {max_length!r})")
        check_queue_type(queue_type, delivery_limit, named=not exclusive)
        self.queue = queue
        self.policy = policy
        self.max_length = max_length
        # An anonymous listener's queues live as long as its connection, like its own queue.
        self.exclusive = exclusive
        self.queue_type = queue_type
        # Deliveries without an ack before the crash-loop guard (`tcpulse._listen.isolation`)
        # dead-letters a message, on either queue type; a quorum queue's x-delivery-limit is
        # declared from it too (`broker_limit`), as a backstop that existing queues keep.
        self.delivery_limit = delivery_limit or DEFAULT_DELIVERY_LIMIT
        self.broker_limit = self.delivery_limit if queue_type == "quorum" else None
        # A named listener learns its secret from its binding record when it connects (`tcpulse._listen.layout`);
        # an anonymous one, whose queues die with its connection, makes its own.
        self.names = ListenerNames(queue, secret=new_secret() if exclusive else secret)
        self.dead_letter_queue = self.names.dead_letter_queue

    @property
    def exchange(self) -> str:
        """The delivery exchange: retries, dead letters and the binding record go through it."""
        return self.names.exchange

    def use(self, secret: Optional[str]) -> None:
        """Route through the delivery exchange of `secret` (None: the legacy, guessable one)."""
        self.names = self.names.with_secret(secret)

    def origin(self, message: Any) -> Origin:
        """Where `message` (as delivered to the listener) first came from; its tcpulse headers
        count only when it came back through this exchange (`outcome.trusted_headers`)."""
        info = message.delivery_info
        exchange, routing_key = info["exchange"], info["routing_key"]
        if not self.names.owns(header_text(exchange)):  # most messages: nothing of tcpulse's to believe
            return Origin(exchange, routing_key, header_strings((message.headers or {}).get("CC")))
        return Origin.of(self.trusted(message), exchange, routing_key)

    def trusted(self, message: Any) -> Dict[str, Any]:
        """The headers of `message` (as delivered to the listener) that can be believed: its
        `tcpulse-*` headers only when it came through one of this listener's delivery exchanges."""
        delivered_by = header_text(message.delivery_info.get("exchange", ""))
        own = (delivered_by,) if self.names.owns(delivered_by) else ()
        return trusted_headers(message.headers, delivered_by, own)

    def public_headers(self, headers: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """`headers` as a handler sees them (`event.headers`): without what names one of this
        listener's delivery exchanges (the broker's `x-death` entries of its holding queues, and
        `x-first-death-exchange` / `x-last-death-exchange`), whose name is its secret, so a
        handler that logs or forwards its events' headers cannot give it away.

        Example:
            >>> d = Delivery("queue/a/w", RetryPolicy(), secret="s3cr3t")
            >>> d.public_headers({"x-death": [{"exchange": d.exchange}, {"exchange": "exchange/x"}], "k": 1})
            {'x-death': [{'exchange': 'exchange/x'}], 'k': 1}
        """
        public: Dict[str, Any] = {}
        for key, value in (headers or {}).items():
            if key == "x-death" and isinstance(value, list):
                value = [d for d in value if not (isinstance(d, dict) and self._names_own(d.get("exchange")))]
                if not value:
                    continue
            elif key in ("x-first-death-exchange", "x-last-death-exchange") and self._names_own(value):
                continue
            public[key] = value
        return public

    def _names_own(self, exchange: Any) -> bool:
        return isinstance(exchange, (str, bytes)) and self.names.owns(header_text(exchange))

    def holding_queue(self, attempt: int) -> str:
        """The queue a copy waits in before coming back as `attempt`."""
        return self.names.holding_queue(self.policy.base_delay(attempt))

    def holding_queues(self) -> Dict[str, Dict[str, Any]]:
        """Each holding queue the policy schedules retries in -> the arguments it is declared with.

        Example:
            >>> list(Delivery("queue/alice/w", RetryPolicy(retry_delays=(5, 30, 30))).holding_queues())
            ['queue/alice/w/retry-5s', 'queue/alice/w/retry-30s']
        """
        return {self.names.holding_queue(base): queue_arguments(
                    self.queue_type, dead_letter=(self.exchange, RETURN_KEY),
                    ttl_ms=math.ceil(self.policy.longest_delay(base) * 1000))
                for base in sorted(set(float(d) for d in self.policy.retry_delays))}

    def queue_arguments(self) -> Dict[str, Any]:
        """Arguments for the listener's own queue: whatever the broker drops goes to our
        dead-letter queue, `max_length` bounds it, and on quorum queues `delivery_limit` sends a
        message that keeps coming back unacked (its process dies on it) there too."""
        key = limit_key(self.broker_limit) if self.broker_limit else DEAD_LETTER_KEY
        return queue_arguments(self.queue_type, dead_letter=(self.exchange, key), max_length=self.max_length,
                               delivery_limit=self.broker_limit)

    def last_delivery(self, message: Any) -> Optional[int]:
        """This delivery's number when it is the last one the crash-loop guard allows `message`
        (a message run alone from the isolation queue, whose process died on it each time before:
        if this process dies on it too, it is dead-lettered), else None.

        Example:
            >>> class M:
            ...     headers = {"tcpulse-returns": 4}
            ...     delivery_info = {"exchange": "exchange/a/w/delivery", "routing_key": "isolation"}
            >>> Delivery("queue/a/w", RetryPolicy(), delivery_limit=5).last_delivery(M())
            5
        """
        if message.delivery_info.get("routing_key") != ISOLATION_KEY:
            return None
        number = returns_of(self.trusted(message)) + 1
        return number if number >= self.delivery_limit else None

    def dead_letter_arguments(self) -> Dict[str, Any]:
        """Arguments of the dead-letter queue: kept a week, at most 5,000 (oldest dropped)."""
        return queue_arguments(self.queue_type, ttl_ms=DEAD_LETTER_TTL * 1000, max_length=DEAD_LETTER_MAX_LENGTH)

    def declare(self, channel: Any) -> None:
        """Declare the exchange, holding queues and dead-letter queue, and bind the listener's
        queue (already declared) to the exchange's `return` key. Safe to repeat."""
        exchange = kombu.Exchange(self.exchange, type="direct", durable=not self.exclusive,
                                  auto_delete=self.exclusive, channel=channel)
        with explain_conflicts():
            exchange.declare()
            for name, arguments in self.holding_queues().items():
                self._declare_queue(channel, exchange, name, [name[len(self.queue) + 1:]], arguments)
            keys = [DEAD_LETTER_KEY] + ([limit_key(self.broker_limit)] if self.broker_limit else [])
            self._declare_queue(channel, exchange, self.dead_letter_queue, keys, self.dead_letter_arguments())
            self._declare_queue(channel, exchange, self.names.isolation_queue, [ISOLATION_KEY],
                                queue_arguments(self.queue_type))
            channel.queue_bind(self.queue, self.exchange, RETURN_KEY)

    def _declare_queue(self, channel: Any, exchange: kombu.Exchange, name: str, keys: List[str],
                       arguments: Dict[str, Any]) -> None:
        queue = kombu.Queue(name, exchange, routing_key=keys[0], durable=not self.exclusive,
                            exclusive=self.exclusive, queue_arguments=arguments, channel=channel)
        queue.declare()
        for key in keys[1:]:
            channel.queue_bind(name, self.exchange, key)

    def retry(self, message: Any, origin: Origin, verdict: Retry) -> None:
        """Publish a copy of `message` that comes back as `verdict.attempt` after `verdict.delay`
        seconds. The caller acks the original afterwards, on the same channel."""
        self._publish(message, holding_key(self.policy.base_delay(verdict.attempt)),
                      origin.retry_headers(message.headers, verdict), expiration=verdict.delay)

    def isolate(self, message: Any, origin: Origin, returns: int, alone: bool = True) -> None:
        """Publish a copy of `message` that came back unacked, with `returns`: how often it did
        (`tcpulse._listen.isolation`), to the isolation queue where it runs alone, or (not `alone`)
        to the back of the listener's queue. The caller acks the original."""
        self._publish(message, ISOLATION_KEY if alone else RETURN_KEY,
                      {**origin.moved_headers(message.headers), H_RETURNS: returns})

    def dead_letter(self, message: Any, origin: Origin, verdict: DeadLetter) -> None:
        """Publish `message` to the dead-letter queue with why it failed; the caller acks it."""
        headers = origin.dead_letter_headers(message.headers, verdict, at=_utc_now())
        self._publish(message, DEAD_LETTER_KEY, headers)

    def _publish(self, message: Any, routing_key: str, headers: Dict[str, Any],
                 expiration: Optional[float] = None) -> None:
        """Publish a copy of `message` through the delivery exchange, confirmed. A copy returned
        for want of a queue is sent again after declaring the delivery topology (a holding or
        dead-letter queue deleted under us comes back); a copy still refused raises
        `PublishRefused`, and the caller leaves the original unacked (`tcpulse._listen.unsettled`). A
        nacked copy is not sent again here: each key routes to one queue of ours, which refused
        it, and declaring it again would not change its mind."""
        channel = message.channel
        copy = copy_of(message, fit_headers(channel, headers), expiration)
        try:
            publish_confirmed(channel, copy, self.exchange, routing_key)
            return
        except PublishRefused as exc:
            if not exc.returned:
                raise
            log.warning("%s; declaring the retry and dead-letter queues of %s again and resending", exc, self.queue)
        self.declare(channel)
        publish_confirmed(channel, copy, self.exchange, routing_key)


def copy_of(message: Any, headers: Dict[str, Any], expiration: Optional[float] = None) -> Any:
    """A persistent copy of delivered `message` (same bytes and content type) with `headers`,
    prepared on its channel for publishing."""
    body = message.body
    if isinstance(body, str):  # py-amqp decoded it for us; send the same bytes on
        body = body.encode(message.content_encoding or "utf-8")
    properties: Dict[str, Any] = {"delivery_mode": 2}
    if expiration is not None:
        properties["expiration"] = str(math.ceil(expiration * 1000))
    return message.channel.prepare_message(body, content_type=message.content_type or "application/octet-stream",
                                           content_encoding=message.content_encoding or "binary",
                                           headers=headers, properties=properties)


class PublishRefused(Exception):
    """The broker did not take a copy published through a listener's delivery exchange: it
    nacked it (a queue it routes to refused it: full with `reject-publish`, or unavailable) or
    returned it (no queue is bound there for its key). The text names the cause and the key,
    never the exchange (its name is the listener's secret, see `tcpulse._listen.topology`).

    Example:
        >>> str(PublishRefused("retry-5s", "nacked", "a queue bound there refused it"))
        "the broker nacked a copy sent with key 'retry-5s' through the listener's delivery exchange (a queue bound there refused it)"
    """

    def __init__(self, routing_key: str, verb: str, why: str) -> None:
        super().__init__(f"the broker {verb} a copy sent with key {routing_key!r} through the listener's "
                         f"delivery exchange ({why})")
        self.routing_key, self.returned = routing_key, verb == "returned"


def publish_confirmed(channel: Any, message: Any, exchange: str, routing_key: str) -> None:
    """Publish a prepared `message` as mandatory and wait for the broker's confirm: a copy that
    reaches no queue (returned) or that a queue refuses (nacked) raises `PublishRefused`
    instead of vanishing, so the caller never acks an original whose copy is lost.

    A return is caught by a handler of our own rather than py-amqp's default (which raises in the
    middle of waiting for the confirm and leaves that confirm to be taken for the next publish's).
    """
    returned: List[str] = []

    def on_return(exc: Exception, *args: Any) -> None:
        returned.append(str(exc))

    channel.events["basic_return"].add(on_return)
    try:
        channel.basic_publish_confirm(message, exchange=exchange, routing_key=routing_key, mandatory=True)
    except MessageNacked:
        raise PublishRefused(routing_key, "nacked", "a queue bound there refused it: full, or unavailable") from None
    finally:
        channel.events["basic_return"].discard(on_return)
    if returned:
        raise PublishRefused(routing_key, "returned", f"{returned[0]}: no queue is bound there for that key")


@contextlib.contextmanager
def broker_connection(address: Any) -> Iterator[kombu.Connection]:
    """A connection to `address` (a `tcpulse._broker.connection.BrokerAddress`) for a short errand;
    any broker trouble becomes one `BrokerFailure` that never shows the password.

    Example:
        >>> from tcpulse._broker.connection import resolve_broker
        >>> with broker_connection(resolve_broker("amqp://bob:secret@127.0.0.1:9//")) as conn:
        ...     pass
        Traceback (most recent call last):
        ...
        tcpulse.errors.BrokerFailure: cannot use the broker at amqp://bob:***@127.0.0.1:9//: [Errno 111] Connection refused
    """
    try:
        with connect_any(address) as connection:
            yield connection
    except broker_errors() as exc:
        raise BrokerFailure(f"cannot use the broker at {address.redacted}: {exc}") from None


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
