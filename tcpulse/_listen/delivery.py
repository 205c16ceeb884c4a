"""The broker side of retries and dead letters, inside Pulse's permissions.

For a listener queue `queue/<user>/<name>` this module declares and uses:

- `exchange/<user>/<name>/delivery`, a direct exchange of our own (a Pulse user may not publish
  to the default exchange), routing `retry-<s>s` to a holding queue, `dead-letter` to the
  dead-letter queue and `return` back to the listener's queue;
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
    >>> d = Delivery("queue/alice/watcher", RetryPolicy(retry_delays=(5, 30)))
    >>> d.exchange, d.holding_queue(2), d.dead_letter_queue
    ('exchange/alice/watcher/delivery', 'queue/alice/watcher/retry-5s', 'queue/alice/watcher/dead-letter')
"""
import contextlib
import datetime
import json
import logging
import math
import time
from typing import Any, Dict, Iterator, List, Optional

import kombu
from amqp.exceptions import AMQPError, NotFound

from tcpulse._broker.connection import broker_errors, connect_any
from tcpulse.errors import BrokerFailure
from tcpulse._listen.wire import fit_headers
from tcpulse._listen.topology import (DEAD_LETTER_KEY, DEFAULT_DELIVERY_LIMIT, ISOLATION_KEY, RETURN_KEY,
                                      ListenerNames, check_queue_type, explain_conflicts, holding_key, limit_key,
                                      limit_of_key, queue_arguments)
from tcpulse._listen.outcome import (H_ATTEMPT, H_DEAD_AT, H_FAILURES, H_REASON, H_RETURNS, DeadLetter, Origin, Poison,
                                     Retry, RetryPolicy, decode_body, header_strings, header_text, returns_of,
                                     trusted_headers)

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
                 exclusive: bool = False, queue_type: str = "classic", delivery_limit: Optional[int] = None) -> None:
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be an integer >= 1 or None (got {max_length!r})")
        check_queue_type(queue_type, delivery_limit, named=not exclusive)
        names = ListenerNames(queue)
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
        self.names = names
        self.exchange = names.exchange
        self.dead_letter_queue = names.dead_letter_queue

    def origin(self, message: Any) -> Origin:
        """Where `message` (as delivered to the listener) first came from; its tcpulse headers
        count only when it came back through this exchange (`outcome.trusted_headers`)."""
        info = message.delivery_info
        headers = trusted_headers(message.headers, header_text(info["exchange"]), self.exchange)
        return Origin.of(headers, info["exchange"], info["routing_key"])

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
        info = message.delivery_info
        if info.get("routing_key") != ISOLATION_KEY:
            return None
        number = returns_of(trusted_headers(message.headers, header_text(info.get("exchange", "")), self.exchange)) + 1
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
        channel = message.channel
        copy = copy_of(message, fit_headers(channel, headers), expiration)
        try:
            publish_confirmed(channel, copy, self.exchange, routing_key)
        except AMQPError as exc:
            log.warning("could not hand a message to %s with key %r (%s); reconnecting to redeclare "
                        "the retry and dead-letter queues; the message stays unacked and comes back",
                        self.exchange, routing_key, exc)
            raise


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


def publish_confirmed(channel: Any, message: Any, exchange: str, routing_key: str) -> None:
    """Publish a prepared `message` as mandatory and, on RabbitMQ, wait for the broker's confirm:
    a message that reaches no queue (one deleted under us) fails here instead of vanishing, so
    the caller never acks an original whose copy is lost."""
    publish = getattr(channel, "basic_publish_confirm", None) or channel.basic_publish
    publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)


def list_dead_letters(connection: kombu.Connection, queue: str, limit: int = 100) -> List[Dict[str, Any]]:
    """Up to `limit` dead letters of listener queue `queue`, oldest first, left in place.

    Example:
        >>> with kombu.Connection("memory:///doc-list", transport="tcpulse._broker.broker:Transport") as conn:
        ...     channel = conn.channel()
        ...     _ = channel.queue_declare("queue/alice/watcher")
        ...     Delivery("queue/alice/watcher", RetryPolicy()).declare(channel)
        ...     list_dead_letters(conn, "queue/alice/watcher")
        []
    """
    delivery = Delivery(queue, RetryPolicy())
    with _dead_letter_channel(connection, delivery) as letters:
        # Closing the channel without acking puts every message back where it was.
        records = [dead_letter_record(message, delivery.exchange) for message in letters.take(limit)]
    await_count(connection, letters.name, letters.count)
    return records


def await_count(connection: kombu.Connection, queue: str, count: int, timeout: float = 2.0) -> None:
    """Wait (at most `timeout` seconds) until `queue` holds `count` messages again after a channel
    that held them unacked closed."""
    # A quorum queue takes back a closed channel's unacked messages asynchronously: wait until
    # they are there again, so that whatever looks next (a second listing) sees them.
    deadline = time.monotonic() + timeout
    channel = connection.channel()
    try:
        while channel.queue_declare(queue, passive=True)[1] < count and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        channel.close()


def requeue_dead_letters(connection: kombu.Connection, queue: str, limit: Optional[int] = None) -> int:
    """Send the dead letters of `queue` (at most `limit`) back to it as a fresh first attempt
    of the handlers that failed; return how many were sent. Run it after fixing the cause.

    Example:
        >>> with kombu.Connection("memory:///doc-requeue", transport="tcpulse._broker.broker:Transport") as conn:
        ...     channel = conn.channel()
        ...     _ = channel.queue_declare("queue/alice/watcher")
        ...     Delivery("queue/alice/watcher", RetryPolicy()).declare(channel)
        ...     requeue_dead_letters(conn, "queue/alice/watcher")
        0
    """
    delivery = Delivery(queue, RetryPolicy())
    sent = 0
    with _dead_letter_channel(connection, delivery) as letters:
        for message in letters.take(limit):
            headers = _dead_letter_headers(message, delivery.exchange)
            delivery._publish(message, RETURN_KEY, _origin_of_dead_letter(message, headers).requeue_headers(headers))
            message.ack()
            sent += 1
    return sent


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


class _dead_letter_channel:
    def __init__(self, connection: kombu.Connection, delivery: Delivery) -> None:
        self.connection, self.name = connection, delivery.dead_letter_queue

    def __enter__(self) -> "_dead_letter_channel":
        self.channel = self.connection.channel()
        try:
            _, self.count, _ = self.channel.queue_declare(self.name, passive=True)
        except NotFound:
            raise BrokerFailure(f"there is no dead-letter queue {self.name!r} on this broker for this "
                                "user (has the listener run here under this name?)") from None
        return self

    def take(self, limit: Optional[int]) -> Iterator[Any]:
        """The dead letters, oldest first, at most `limit` (None: all). Only what is there now:
        letters dead-lettered meanwhile wait for the next call."""
        queue = kombu.Queue(self.name, channel=self.channel)
        for _ in range(self.count if limit is None else min(self.count, limit)):
            message = queue.get()
            if message is None:
                return
            yield message

    def __exit__(self, *exc_info: Any) -> None:
        self.channel.close()


def dead_letter_record(message: Any, own_exchange: str) -> Dict[str, Any]:
    """What an operator needs to know about one dead letter, as plain data (see
    `list_dead_letters`, whose records these are); `own_exchange` is the listener's delivery
    exchange."""
    headers = _dead_letter_headers(message, own_exchange)
    origin = _origin_of_dead_letter(message, headers)
    record = {"exchange": origin.exchange, "routing_key": origin.routing_key,
              "routes": [r[len("route."):] for r in origin.cc if r.startswith("route.")],
              "attempts": origin.attempt,
              "reason": _reason(headers, message.delivery_info.get("routing_key") or ""),
              "failures": json.loads(headers.get(H_FAILURES) or "{}"),
              "dead_lettered_at": headers.get(H_DEAD_AT)}
    try:
        record["body"] = decode_body(message.body)
    except Poison:
        body = message.body  # py-amqp hands over text when the declared encoding decodes it
        record["body_text"] = (body if isinstance(body, str) else bytes(body).decode("utf-8", "replace"))[:1000]
    return record


def _dead_letter_headers(message: Any, own_exchange: str) -> Dict[str, Any]:
    # A dead letter we parked came through our exchange and carries no x-death (we drop it);
    # one the broker dropped (overflow, delivery limit) has x-death naming where it was
    # published, and only a retried copy, published by us, had tcpulse headers to believe.
    headers = message.headers or {}
    death = _first_death(headers)
    delivered_by = death.get("exchange") if death else message.delivery_info.get("exchange", "")
    return trusted_headers(headers, header_text(delivered_by or ""), own_exchange)


def _origin_of_dead_letter(message: Any, headers: Dict[str, Any]) -> Origin:
    death = _first_death(headers)
    keys = header_strings(death.get("routing-keys")) or (header_text(message.delivery_info.get("routing_key", "")),)
    # A message the broker dropped (overflow) kept its publish keys only in x-death: key, then CCs.
    return Origin.of({"CC": list(keys[1:]), **headers}, header_text(death.get("exchange", "")), keys[0])


def _reason(headers: Dict[str, Any], routing_key: str) -> str:
    if headers.get(H_REASON):
        return header_text(headers[H_REASON])
    death = _first_death(headers)
    if header_text(death.get("reason", "")) == "delivery_limit":
        # The broker resets the delivery count when it dead-letters; the key carries the limit.
        limit = limit_of_key(routing_key) or "?"
        return (f"delivered {limit} times without an ack (delivery_limit {limit}): the process handling it "
                f"exited or lost its connection each time, so {header_text(death.get('queue', '?'))} dead-lettered it")
    return f"dropped by the broker from {header_text(death.get('queue', '?'))} ({header_text(death.get('reason', '?'))})"


def _first_death(headers: Dict[str, Any]) -> Dict[str, Any]:
    deaths = headers.get("x-death")  # the broker puts the latest first; a publisher may send anything
    first = deaths[0] if isinstance(deaths, list) and deaths else None
    return first if isinstance(first, dict) else {}


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
