"""Declaring a listener's queue and bindings on the broker, as a Pulse user may.

Owns: the names of everything a listener declares (`ListenerNames`: its queue, delivery exchange,
holding and dead-letter queues, the temporary queue of a migration) and the check that each fits
RabbitMQ's 255-byte limit; the queue type (classic or quorum) and the arguments of each of those
queues (`queue_arguments`); declaring the listener's queue (durable `queue/<user>/<name>`, or
exclusive and auto-delete when it has no name), its bindings, the exchanges they name
(passively: the services own them; for real only when asked, for local development), and
turning the broker's refusals into one clear, final error: a declaration refused now is refused
again after a reconnect, so retrying in a loop would only hide it.

Quorum queues on RabbitMQ 3.10 (what this module relies on, measured on 3.10.8):
- a quorum queue is durable, never exclusive nor auto-delete (so an unnamed listener cannot be one);
- `x-message-ttl` and per-message `expiration` work, and so does dead-lettering;
- `x-delivery-limit` L dead-letters a message (x-death reason `delivery_limit`) when it comes back
  unacked for the (L+1)th time, so `delivery_limit=N` deliveries is `x-delivery-limit` N - 1;
  classic queues refuse the argument;
- `x-overflow`: `drop-head` (the oldest goes to the dead-letter exchange) and `reject-publish`;
  `reject-publish-dlx` is accepted but behaves as `reject-publish` (nothing is dead-lettered);
- `x-dead-letter-strategy: at-least-once` (dead letters kept until the target queue confirms
  them) takes effect only with `x-overflow: reject-publish`; with `drop-head` the broker falls
  back to at-most-once. So a queue without `max_length` uses at-least-once (reject-publish never
  triggers without a length limit), and a queue with `max_length` keeps its meaning (oldest to
  the dead-letter queue) with at-most-once dead-lettering.

Imports neither kombu nor requests: it works on the channel it is given.

Example:
    >>> refusal_text(Exception("(403) ACCESS_REFUSED - no"), "ACCESS_REFUSED", "AccessRefused")
    True
    >>> queue_arguments("quorum", dead_letter=("exchange/u/w/delivery", "dead-letter"))["x-dead-letter-strategy"]
    'at-least-once'
"""
import re
import secrets
from typing import Any, Callable, Collection, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from tcpulse._broker.connection import BrokerAddress
from tcpulse.errors import BrokerFailure
from tcpulse._api.exchanges import Binding

QUEUE_TYPES = ("classic", "quorum")
MAX_NAME_BYTES = 255  # RabbitMQ's and py-amqp's limit for queue and exchange names
DEFAULT_DELIVERY_LIMIT = 20  # deliveries without an ack before a quorum queue dead-letters
DEAD_LETTER_KEY = "dead-letter"
RETURN_KEY = "return"
RECORD_KEY = "bindings"  # the delivery exchange's key for the binding record (`tcpulse._listen.stale`), and its queue's suffix
PARKING_KEYS = ("migrating", "parked-dl", "parked-rec")  # no longer than 'dead-letter': same name limit
ISOLATION_KEY = "isolation"  # messages that came back unacked, run one at a time (`tcpulse._listen.isolation`)
OVERFLOW = "drop-head"  # a full listener queue drops its oldest message into the dead-letter queue


class ListenerNames:
    """The names of what a listener queue `queue/<user>/<name>` brings along (pure).

    The delivery exchange, which routes the listener's retries, dead letters and binding record,
    is `exchange/<user>/<name>/delivery-<secret>`: every Pulse user may bind a queue of its own to
    any `exchange/...` it can name, so the name carries a random `secret` that only the binding
    record (in `queue/<user>/<name>/bindings`, which only the user can read) and the listener's
    own queue arguments hold. Without a secret the names are the guessable layout of tcpulse
    before it, `exchange/<user>/<name>/delivery` (`legacy_exchange`), which a listener leaves for
    the private one by itself on start (`tcpulse._listen.layout`).

    Example:
        >>> n = ListenerNames("queue/alice/watcher", secret="s3cr3t")
        >>> n.exchange, n.holding_queue(5), n.dead_letter_queue
        ('exchange/alice/watcher/delivery-s3cr3t', 'queue/alice/watcher/retry-5s', 'queue/alice/watcher/dead-letter')
        >>> n.legacy_exchange, n.record_queue, n.lock_queue
        ('exchange/alice/watcher/delivery', 'queue/alice/watcher/bindings', 'queue/alice/watcher/lock')
        >>> n.parking_queues()["parked-dl"]
        'queue/alice/watcher/parked-dl'

    """

    def __init__(self, queue: str, secret: Optional[str] = None) -> None:
        if not queue.startswith("queue/"):
            raise ValueError(f"the listener queue must be named queue/<user>/<name> (got {_quoted(queue)})")
        self.queue = queue
        self.secret = secret
        self.legacy_exchange = "exchange/" + queue[len("queue/"):] + "/delivery"
        self.exchange = self.legacy_exchange + (f"-{secret}" if secret else "")
        self._secret_prefix = self.legacy_exchange + "-"
        self.dead_letter_queue = queue + "/" + DEAD_LETTER_KEY
        self.record_queue = queue + "/" + RECORD_KEY
        self.lock_queue = queue + "/lock"
        self.isolation_queue = queue + "/" + ISOLATION_KEY

    @classmethod
    def of(cls, user: str, name: str, secret: Optional[str] = None) -> "ListenerNames":
        """The names of listener `name` of Pulse user `user`: its queue is `queue/<user>/<name>`.

        Example:
            >>> ListenerNames.of("alice", "watcher").queue
            'queue/alice/watcher'
        """
        return cls(f"queue/{user}/{name}", secret)

    def with_secret(self, secret: Optional[str]) -> "ListenerNames":
        """The same listener's names with delivery exchange secret `secret` (None: the legacy one)."""
        return ListenerNames(self.queue, secret)

    @property
    def own_exchanges(self) -> Tuple[str, ...]:
        """The delivery exchange and the legacy one (what `tcpulse delete` removes)."""
        return tuple(dict.fromkeys((self.exchange, self.legacy_exchange)))

    def owns(self, exchange: str) -> bool:
        """Whether `exchange` is a delivery exchange of this listener, with any secret or none:
        only its Pulse user may declare or publish to `exchange/<user>/...`, so the `tcpulse-*`
        headers of a message that came through one are its own (`outcome.trusted_headers`).

        Example:
            >>> n = ListenerNames("queue/alice/watcher", secret="s3cr3t")
            >>> n.owns("exchange/alice/watcher/delivery-0ld"), n.owns("exchange/bob/watcher/delivery")
            (True, False)
        """
        return exchange == self.legacy_exchange or exchange.startswith(self._secret_prefix)

    def holding_queue(self, delay: float) -> str:
        """The queue a retried copy waits in for `delay` seconds (the scheduled delay, no jitter)."""
        return f"{self.queue}/{holding_key(delay)}"

    def parking_queues(self) -> Dict[str, str]:
        """A migration's parking queues, by the delivery-exchange key that routes to each: for the
        listener's and holding queues' messages, for dead letters, for the binding record."""
        return {key: f"{self.queue}/{key}" for key in PARKING_KEYS}

    def all(self, retry_delays: Iterable[float]) -> List[str]:
        """Every name the listener may declare with these delays (migration's included; the
        delivery exchange with a secret as long as the ones `new_secret` makes)."""
        holding = [self.holding_queue(d) for d in sorted(set(float(d) for d in retry_delays))]
        exchange = self.with_secret(self.secret or SECRET_SHOWN).exchange
        return [self.queue, exchange, *holding, self.dead_letter_queue, self.isolation_queue, self.record_queue,
                self.lock_queue, *self.parking_queues().values()]

    def check_lengths(self, retry_delays: Iterable[float]) -> None:
        """Raise ValueError naming the longest name over 255 bytes and by how much.

        Example:
            >>> ListenerNames("queue/u/" + "x" * 240).check_lengths((600,))
            Traceback (most recent call last):
            ...
            ValueError: exchange name 'exchange/u/xxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxx/delivery-<22 random characters>' is 283 bytes, 28 over RabbitMQ's limit of 255: shorten the listener name by at least 28 bytes
        """
        name = max(self.all(retry_delays), key=lambda n: len(n.encode()))
        size = len(name.encode())
        if size > MAX_NAME_BYTES:
            kind = "exchange" if name.startswith("exchange/") else "queue"
            over = size - MAX_NAME_BYTES
            raise ValueError(f"{kind} name {_quoted(name)} is {size} bytes, {over} over RabbitMQ's limit of "
                             f"{MAX_NAME_BYTES}: shorten the listener name by at least {over} byte{'s' if over > 1 else ''}")


SECRET_SHOWN = "<22 random characters>"  # stands for a secret in names checked before it exists


def new_secret() -> str:
    """A random delivery-exchange secret: 128 bits, 22 URL-safe characters.

    Example:
        >>> len(new_secret()), new_secret() != new_secret()
        (22, True)
    """
    return secrets.token_urlsafe(16)


def holding_key(delay: float) -> str:
    """The delivery exchange's routing key (and queue suffix) of a holding queue."""
    return f"retry-{delay:g}s"


def limit_key(delivery_limit: int) -> str:
    """The dead-letter routing key of a quorum queue with `delivery_limit`: it carries the limit
    to whoever reads the dead letter (the broker resets the delivery count when dead-lettering)."""
    return f"{DEAD_LETTER_KEY}-after-{delivery_limit}-deliveries"


def limit_of_key(routing_key: str) -> Optional[int]:
    """The delivery limit a dead letter's routing key carries (see `limit_key`), or None.

    Example:
        >>> limit_of_key(limit_key(5)), limit_of_key("dead-letter")
        (5, None)
    """
    found = re.fullmatch(f"{DEAD_LETTER_KEY}-after-([0-9]+)-deliveries", routing_key)
    return int(found.group(1)) if found else None


def check_queue_type(queue_type: str, delivery_limit: Optional[int], named: bool, auto_delete: bool = False) -> None:
    """The one-line errors for a queue type that cannot work as asked.

    Example:
        >>> check_queue_type("quorum", 5, named=False)
        Traceback (most recent call last):
        ...
        ValueError: an unnamed Listener cannot use queue_type='quorum': its queue is exclusive and goes away with its connection, and quorum queues are durable; give the listener a name (Listener('my-listener', queue_type='quorum'), or tcpulse listen --queue NAME)
    """
    if queue_type not in QUEUE_TYPES:
        from tcpulse._api.hints import did_you_mean
        raise ValueError(f"queue_type must be one of {', '.join(QUEUE_TYPES)} (got {queue_type!r})."
                         f"{did_you_mean(str(queue_type), QUEUE_TYPES)}")
    if delivery_limit is not None and (not isinstance(delivery_limit, int) or isinstance(delivery_limit, bool)
                                       or delivery_limit < 1):
        raise ValueError(f"delivery_limit must be an integer >= 1 (got {delivery_limit!r})")
    if queue_type == "quorum" and not named:
        raise ValueError("an unnamed Listener cannot use queue_type='quorum': its queue is exclusive and goes "
                         "away with its connection, and quorum queues are durable; give the listener a name "
                         "(Listener('my-listener', queue_type='quorum'), or tcpulse listen --queue NAME)")
    if queue_type == "quorum" and auto_delete:
        raise ValueError("auto_delete=True needs queue_type='classic': RabbitMQ does not delete quorum queues "
                         "when their last consumer goes")


def queue_arguments(queue_type: str, *, dead_letter: Optional[Tuple[str, str]] = None,
                    max_length: Optional[int] = None, ttl_ms: Optional[int] = None,
                    delivery_limit: Optional[int] = None) -> Dict[str, Any]:
    """The x-arguments of one queue: `dead_letter` is (exchange, routing key) for what the broker
    drops; `max_length` drops the oldest; `delivery_limit` (quorum only) counts deliveries (the
    broker's backstop to the crash-loop guard of `tcpulse._listen.isolation`).
    Classic queues get no `x-queue-type`, so queues declared before it existed stay equivalent.

    Example:
        >>> queue_arguments("classic", max_length=10)
        {'x-max-length': 10, 'x-overflow': 'drop-head'}
    """
    args: Dict[str, Any] = {}
    if queue_type == "quorum":
        args["x-queue-type"] = "quorum"
    if dead_letter is not None:
        exchange, key = dead_letter
        args.update({"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": key})
    if ttl_ms is not None:
        args["x-message-ttl"] = ttl_ms
    if max_length is not None:
        args.update({"x-max-length": max_length, "x-overflow": OVERFLOW})
    elif queue_type == "quorum" and dead_letter is not None:
        args.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    if queue_type == "quorum" and delivery_limit is not None:
        args["x-delivery-limit"] = delivery_limit - 1
    return args


def _quoted(name: str, keep: int = 80) -> str:
    # A name can be anything a user passed; an error quotes its ends, never megabytes of it.
    return repr(name if len(name) <= keep else name[:keep // 2 - 6] + "..." + name[-keep // 2:])


def declare_listener_queue(channel: Any, address: BrokerAddress, queue: str, *, named: bool,
                           bindings: Sequence[Binding], declare_exchanges: Union[bool, Collection[str]],
                           arguments: Dict[str, Any], auto_delete: bool = False) -> None:
    """Declare the exchanges `bindings` name (created when `declare_exchanges` is True or names
    them, else only checked), then `queue` with `arguments` (removed by the broker once its last
    consumer goes when unnamed or `auto_delete`), then each binding."""
    for exchange in dict.fromkeys(b.exchange for b in bindings):
        create = declare_exchanges is True or (not isinstance(declare_exchanges, bool) and exchange in declare_exchanges)
        declare_exchange(channel, address, exchange, passive=not create)
    translating(channel.queue_declare, f"declare queue {queue!r}", address, queue=queue, durable=named,
                exclusive=not named, auto_delete=auto_delete or not named, arguments=arguments)
    for b in bindings:
        translating(channel.queue_bind, f"bind {queue!r} to {b.exchange!r} with {b.routing_key_pattern!r}",
                    address, queue=queue, exchange=b.exchange, routing_key=b.routing_key_pattern)


class MissingExchange(BrokerFailure):
    """An exchange the listener binds to does not exist; `remedy` is how the user creates it for
    local development (the CLI names its flag instead).

    Example:
        >>> str(MissingExchange("exchange/x", "amqp://guest:***@localhost:5672//", remedy="--declare-exchanges"))
        "exchange 'exchange/x' does not exist on amqp://guest:***@localhost:5672//: is the service that publishes it running there? (for local development, --declare-exchanges creates it)"
    """

    def __init__(self, exchange: str, broker: str, remedy: str = "Listener(..., declare_exchanges=True)") -> None:
        self.exchange, self.broker = exchange, broker
        super().__init__(f"exchange {exchange!r} does not exist on {broker}: is the service that publishes it "
                         f"running there? (for local development, {remedy} creates it)")


def declare_exchange(channel: Any, address: BrokerAddress, exchange: str, passive: bool) -> None:
    """Make sure topic `exchange` exists (passive) or create it; a missing one is one error naming it."""
    try:
        channel.exchange_declare(exchange=exchange, type="topic", durable=True, auto_delete=False, passive=passive)
    except Exception as exc:
        if passive and refusal_text(exc, "NOT_FOUND", "NotFound"):
            raise MissingExchange(exchange, str(address)) from None
        raise_refusal(exc, f"declare exchange {exchange!r}", address)
        raise


def translating(call: Callable[..., Any], what: str, address: BrokerAddress, **kwargs: Any) -> Any:
    """`call(**kwargs)`, a permission or argument refusal of it raised as the one-line error
    for `what` (see `raise_refusal`)."""
    try:
        return call(**kwargs)
    except Exception as exc:
        raise_refusal(exc, what, address)
        raise


def raise_refusal(exc: Exception, what: str, address: BrokerAddress) -> None:
    """Raise the one-line error for a permission or argument refusal; return for anything else."""
    if refusal_text(exc, "ACCESS_REFUSED", "AccessRefused"):
        raise BrokerFailure(f"the broker at {address} does not let user {address.user!r} {what} "
                            f"(Pulse users may only create queue/{address.user}/... and "
                            f"exchange/{address.user}/...): {exc}") from None
    if refusal_text(exc, "PRECONDITION_FAILED", "PreconditionFailed"):
        raise QueueConflict(str(exc)) from None


def refusal_text(exc: Exception, code: str, class_name: str) -> bool:
    """Whether `exc` is the broker's refusal `code` (py-amqp's class, or the memory broker's text)."""
    return type(exc).__name__ == class_name or code in str(exc)


class QueueConflict(BrokerFailure):
    """A queue exists with other arguments than the ones we declare (PRECONDITION_FAILED);
    `broker_text` is the broker's complaint, `remedy` what to do (default: delete it, or use
    the options it was created with).

    Example:
        >>> issubclass(QueueConflict, BrokerFailure)
        True
    """

    def __init__(self, broker_text: str, remedy: Optional[str] = None) -> None:
        self.broker_text = broker_text
        super().__init__(conflict_message(broker_text, remedy))


class explain_conflicts:
    """Turn the broker's PRECONDITION_FAILED about a queue into one line naming the queue and
    the remedy.

    Example:
        >>> with explain_conflicts():
        ...     pass
    """

    def __enter__(self) -> "explain_conflicts":
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if exc is not None and refusal_text(exc, "PRECONDITION_FAILED", "PreconditionFailed"):
            raise QueueConflict(str(exc)) from None
        return False


def conflict_message(broker_text: str, remedy: Optional[str] = None) -> str:
    """One line from RabbitMQ's 'inequivalent arg' complaint.

    Example:
        >>> conflict_message("Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg "
        ...     "'x-max-length' for queue 'queue/u/w' in vhost '/': received '10' but current is none")
        "queue 'queue/u/w' already exists with a different 'x-max-length' (received '10' but current is none); delete it (rabbitmqctl delete_queue 'queue/u/w', or from the Pulse web UI; its messages are lost) or start the listener with the options it was created with"
    """
    text = broker_text.split("PRECONDITION_FAILED - ", 1)[-1]
    kind = "exchange" if "for exchange '" in text else "queue"
    name = _between(text, f"for {kind} '", "'") or "?"
    arg = _between(text, "inequivalent arg '", "'")
    detail = text.split(": ", 1)[1] if ": " in text else text
    what = f"a different {arg!r}" if arg else "different arguments"
    if remedy is None:
        tool = f"rabbitmqctl delete_queue {name!r}" if kind == "queue" else f"rabbitmqadmin delete exchange name={name!r}"
        remedy = (f"delete it ({tool}, or from the Pulse web UI; its messages are lost) "
                  "or start the listener with the options it was created with")
    return f"{kind} {name!r} already exists with {what} ({detail}); {remedy}"


def _between(text: str, start: str, end: str) -> Optional[str]:
    if start not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0]
