"""Queue maintenance for a listener that is not running: deleting what it declared, and moving
its queues to the other queue type (classic <-> quorum) without losing a message.

Owns: `delete_listener` (`tcpulse delete NAME`: the listener's queue, its retry holding queues,
its binding record and delivery exchange; the dead-letter queue only when asked), `migrate`
(`tcpulse migrate NAME --to quorum|classic`), `adopt` (a listener started with `adopt=True`
taking over a queue of its name that another tool declared: the same move, of that one queue,
bound as the listener binds) and the remedy a listener's queue conflict names. Both work within Pulse's permissions (a user's own
`queue/<user>/...` and `exchange/<user>/...`, no management API) and refuse while anything
consumes the listener's queue.

How a migration goes, each step safe to repeat, so a run interrupted anywhere (even kill -9)
is finished by running it again:
1. parking queues of the new type (`queue/<user>/<name>/migrating`, `.../parked-dl`,
   `.../parked-rec`) take what the old queues hold; the main one is bound like the listener's
   queue (bindings from the listener's record, `tcpulse._listen.stale`), so what is published meanwhile
   waits there too;
2. each old queue (listener's, holding, dead-letter, record) is unbound, emptied into its parking
   queue (every copy publisher-confirmed before its original is acked), deleted and declared
   again with the new type: a queue of the new type already is left alone;
3. the parking queues are emptied back (confirmed copies again) and deleted.
A message may be copied twice when a run is cut between a copy and its ack (at least once, as
everywhere else); none is lost. Retries waiting in holding queues come back at once.

Imports kombu through `tcpulse._listen.delivery`; never requests or the listener.
"""
import contextlib
import itertools
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

import kombu
from amqp.exceptions import NotFound, PreconditionFailed

from tcpulse._broker.connection import BrokerAddress
from tcpulse._listen.delivery import Delivery, await_count, copy_of
from tcpulse.errors import BrokerFailure
from tcpulse._api.exchanges import Binding
from tcpulse._listen.outcome import DEFAULT_RETRY_DELAYS, Origin, RetryPolicy, trusted_headers
from tcpulse._listen.stale import RECORD_KEY, read_records, record_queue
from tcpulse._listen.topology import DEAD_LETTER_KEY, QUEUE_TYPES, RETURN_KEY, ListenerNames, queue_arguments

Report = Callable[[str], None]
BATCH = 500  # copies published before waiting for the broker's confirms
CONFIRM_TIMEOUT = 30.0  # seconds without a confirm before a move gives up (socket.timeout)
_Pair = Tuple[str, str]


def delete_listener(connection: kombu.Connection, address: BrokerAddress, name: str,
                    include_dead_letters: bool = False, retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
                    report: Report = print) -> List[str]:
    """Delete listener `name`'s queue, holding queues (of `retry_delays` and any its binding
    record names), binding record, parking queues of a migration, and delivery exchange; its
    dead-letter queue too when `include_dead_letters`. Reports each thing removed (and a kept
    dead-letter queue) and returns the names removed; refuses while the queue has consumers."""
    delivery = Delivery(ListenerNames.of(address.user, name).queue, RetryPolicy(retry_delays=tuple(retry_delays)))
    _refuse_consumers(connection, delivery.queue, "delete it")
    _, recorded_holding = _record(connection, delivery)
    queues = [delivery.queue, *sorted(set(delivery.holding_queues()) | set(recorded_holding)),
              record_queue(delivery.queue), *_parking(delivery).values()]
    removed = []
    with _channel(connection) as channel:
        for queue in queues + ([delivery.dead_letter_queue] if include_dead_letters else []):
            held = _count(connection, queue)
            if held is not None:
                channel.queue_delete(queue)
                removed.append(queue)
                report(f"deleted queue {queue} ({held} message(s))")
        if _exchange_exists(connection, delivery.exchange):
            channel.exchange_delete(delivery.exchange)
            removed.append(delivery.exchange)
            report(f"deleted exchange {delivery.exchange}")
    kept = None if include_dead_letters else _count(connection, delivery.dead_letter_queue)
    if kept is not None:
        report(f"kept {delivery.dead_letter_queue} ({kept} dead letter(s)); --include-dead-letters deletes it")
    if not removed and kept is None:
        raise BrokerFailure(f"nothing to delete: user {address.user!r} has no queue {delivery.queue!r} nor "
                            f"anything else listener {name!r} declares on {address}")
    return removed


def migrate(connection: kombu.Connection, address: BrokerAddress, name: str, to: str, *,
            max_length: Optional[int] = None, delivery_limit: Optional[int] = None,
            retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS, report: Report = print) -> int:
    """Move listener `name`'s queues to queue type `to`; the options must be the listener's
    (they decide the queues' arguments). Returns how many messages were moved back into the
    listener's queue. See the module docstring for the steps."""
    if to not in QUEUE_TYPES:
        raise ValueError(f"--to must be one of {', '.join(QUEUE_TYPES)} (got {to!r})")
    queue = ListenerNames.of(address.user, name).queue
    policy = RetryPolicy(retry_delays=tuple(retry_delays))
    old_type = next(t for t in QUEUE_TYPES if t != to)
    old, new = (Delivery(queue, policy, max_length, queue_type=kind,
                         delivery_limit=delivery_limit if kind == "quorum" else None) for kind in (old_type, to))
    _refuse_consumers(connection, queue, "migrate it")
    parking = _parking(new)
    if _count(connection, queue) is None and _count(connection, parking["migrating"]) is None:
        raise BrokerFailure(f"nothing to migrate: user {address.user!r} has no queue {queue!r} on {address} "
                            f"(has listener {name!r} run there?)")
    pairs, _ = _record(connection, new)
    if not pairs and _count(connection, queue) is not None:
        raise BrokerFailure(f"no record of what {queue} is bound to (tcpulse._listen.stale keeps one): run the listener "
                            "once with this version of tcpulse, stop it, then migrate")
    bindings = [Binding(exchange, pattern) for exchange, pattern in sorted(pairs)]
    moves = ((source, key) for source, old_args, new_args, key in _units(old, new)
             if _state(connection, source, old_args, new_args) == "old")
    back = _relayout(connection, new, bindings, moves, old_type, report)
    report(f"{queue} is a {to} queue now, with its {len(bindings)} binding(s), holding and dead-letter queues")
    return back


def adopt(connection: kombu.Connection, delivery: Delivery, bindings: Sequence[Binding],
          report: Report = print) -> Optional[int]:
    """Take over the listener queue `delivery.queue` when it exists with other arguments than
    `delivery` gives it (another tool declared it), in place: what it holds and what is
    published meanwhile (to `bindings`, the listener's) waits in the parking queue while the
    queue is declared again in tcpulse's layout, then comes back. Returns how many messages came
    back, or None when there was nothing to adopt (no such queue, or already in this layout).
    Like `migrate`, safe to repeat after an interruption; refuses while the queue has consumers.
    Its message headers are not trusted (`tcpulse.outcome.trusted_headers`): each message
    dispatches by the exchange and routing key it was published with."""
    queue, parking = delivery.queue, _parking(delivery)
    held = _count(connection, queue)
    interrupted = _count(connection, parking["migrating"]) is not None
    fits = held is not None and _fits(connection, queue, delivery.queue_arguments())
    if (held is None or fits) and not interrupted:
        return None
    _refuse_consumers(connection, queue, "adopt it")
    moves = [] if held is None or fits else [(queue, "migrating")]
    back = _relayout(connection, delivery, bindings, moves, "another layout", report)
    report(f"adopted {queue}: {back} message(s) kept, now in tcpulse's layout with {len(bindings)} binding(s)")
    return back


def conflict_remedy(connection: kombu.Connection, delivery: Delivery, name: str) -> str:
    """What to do about the listener queue `delivery.queue` refusing `delivery`'s arguments: move
    tcpulse's queue of the other type with `tcpulse migrate`, or adopt anything else."""
    wanted = delivery.queue_type
    other = next(t for t in QUEUE_TYPES if t != wanted)
    as_other = Delivery(delivery.queue, delivery.policy, delivery.max_length, queue_type=other)
    if _fits(connection, delivery.queue, as_other.queue_arguments()):
        return (f"it is tcpulse's {other} queue: stop its listeners and move it to a {wanted} queue without "
                f"losing a message with `tcpulse migrate {name} --to {wanted}`")
    return ("another tool declared it, or this listener with other options: take it over in place, keeping its "
            "messages, with --adopt (Listener(..., adopt=True)), which moves it to tcpulse's layout")


def _relayout(connection: kombu.Connection, new: Delivery, bindings: Sequence[Binding],
              moves: Iterable[Tuple[str, str]], old_kind: str, report: Report) -> int:
    """Steps 1-3 of the module docstring for `new`'s queues: each (queue, parking key) of
    `moves` is emptied into its parking queue and deleted; then everything is declared in
    `new`'s layout and the parking queues are emptied back. Returns how many messages came back
    into the listener's queue."""
    queue, parking, to = new.queue, _parking(new), new.queue_type
    with _channel(connection) as channel:
        kombu.Exchange(new.exchange, type="direct", durable=True, channel=channel).declare()
        for key, park in parking.items():
            _declare(channel, park, queue_arguments(to), [(new.exchange, key)])
        _bind(channel, parking["migrating"], bindings, new.exchange, unbind=False)
        for source, key in moves:
            if source == queue:  # from now on, what is published waits in the parking queue
                _bind(channel, queue, bindings, new.exchange, unbind=True)
            moved = _empty_into_parking(connection, source, new, key)
            report(f"moved {moved} message(s) from {source} ({old_kind}) to {parking[key]}")
        _declare(channel, queue, new.queue_arguments(), [(b.exchange, b.routing_key_pattern) for b in bindings])
        new.declare(channel)
        _declare(channel, record_queue(queue), queue_arguments(to), [(new.exchange, RECORD_KEY)])
        _bind(channel, parking["migrating"], bindings, new.exchange, unbind=True)
        back = 0
        for key, target_key, target in (("migrating", RETURN_KEY, queue),
                                        ("parked-dl", DEAD_LETTER_KEY, new.dead_letter_queue),
                                        ("parked-rec", RECORD_KEY, record_queue(queue))):
            count = _move(connection, parking[key], new, target_key, moving=key == "migrating")
            channel.queue_delete(parking[key])
            back += count if key == "migrating" else 0
            report(f"moved {count} message(s) from {parking[key]} back to {target} ({to})")
    return back


def _empty_into_parking(connection: kombu.Connection, source: str, new: Delivery, key: str) -> int:
    """Move everything `source` holds to the parking queue of `key`, then delete it once it is
    seen empty. An adopted queue may have bindings we do not know of, still bringing messages in
    until the delete; what they bring and the listener binds goes to the parking queue too, so
    only what no handler would take can be dropped. (`if_empty` is no help: a quorum queue
    answers it by closing the connection.)"""
    moved = 0
    while True:
        moved += _move(connection, source, new, key, moving=key == "migrating")
        if not _count(connection, source):
            with _channel(connection) as channel:
                channel.queue_delete(source)
            return moved


def _fits(connection: kombu.Connection, queue: str, arguments: Dict[str, Any]) -> bool:
    """Whether `queue` exists with exactly `arguments` (RabbitMQ tells only by refusing others)."""
    try:
        with _channel(connection) as channel:
            channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments, passive=False)
        return True
    except PreconditionFailed:
        return False


def _parking(delivery: Delivery) -> Dict[str, str]:
    return delivery.names.parking_queues()


def _units(old: Delivery, new: Delivery) -> Iterator[Tuple[str, Dict[str, Any], Dict[str, Any], str]]:
    """(queue, old arguments, new arguments, parking key) for every queue a migration moves."""
    yield old.queue, old.queue_arguments(), new.queue_arguments(), "migrating"
    new_holding = new.holding_queues()
    for holding, args in old.holding_queues().items():
        yield holding, args, new_holding[holding], "migrating"
    yield old.dead_letter_queue, old.dead_letter_arguments(), new.dead_letter_arguments(), "parked-dl"
    record = record_queue(old.queue)
    yield record, queue_arguments(old.queue_type), queue_arguments(new.queue_type), "parked-rec"


def _state(connection: kombu.Connection, queue: str, old_args: Dict[str, Any], new_args: Dict[str, Any]) -> str:
    """'absent', 'new' or 'old': RabbitMQ tells a queue's type only by refusing a declaration
    that differs from it, so each type's full arguments are tried in turn."""
    if _count(connection, queue) is None:
        return "absent"
    for state, arguments in (("new", new_args), ("old", old_args)):
        if _fits(connection, queue, arguments):  # each try on a channel of its own: a refusal closes it
            return state
    raise BrokerFailure(f"{queue} exists with other arguments than this migration expects: pass the "
                        "--max-length, --delivery-limit and --retry-delays the listener uses")


def _move(connection: kombu.Connection, source: str, delivery: Delivery, key: str, moving: bool) -> int:
    """Copy every message of `source` through the delivery exchange with `key`, then ack it:
    in batches, each acked (one multiple ack) only once the broker confirmed every copy in it.
    `moving`: a listener message, which keeps the exchange, key and attempt it would have
    dispatched as; otherwise (dead letters, records) it is copied unchanged."""
    moved = 0
    with _channel(connection) as channel:
        confirms = _Confirms(channel)
        queue = kombu.Queue(source, channel=channel)
        while True:
            batch = list(itertools.islice(iter(lambda: queue.get(no_ack=False), None), BATCH))
            if not batch:
                break
            for message in batch:
                headers = dict(message.headers or {})
                if moving:
                    info = message.delivery_info
                    trusted = trusted_headers(headers, info["exchange"], delivery.exchange)
                    headers = Origin.of(trusted, info["exchange"], info["routing_key"]).moved_headers(headers)
                confirms.publish(copy_of(message, headers), delivery.exchange, key)
            confirms.wait(connection)
            channel.basic_ack(batch[-1].delivery_tag, multiple=True)
            moved += len(batch)
    return moved


class _Confirms:
    """Publisher confirms on `channel`, waited for a batch at a time (one round trip per copy
    would make a migration of 10,000 messages take minutes). A nack, or a mandatory copy that
    reached no queue, raises before any original is acked."""

    def __init__(self, channel: Any) -> None:
        channel.confirm_select()
        self.channel = channel
        self.published = 0
        self.pending: Set[int] = set()
        channel.events["basic_ack"].add(self._ack)
        channel.events["basic_nack"].add(self._nack)

    def _ack(self, tag: int, multiple: bool) -> None:
        self.pending -= {t for t in self.pending if t <= tag} if multiple else {tag}

    def _nack(self, tag: int, multiple: bool) -> None:
        raise BrokerFailure("the broker refused (nacked) a copy; nothing of this batch was acked: run the "
                            "migration again")

    def publish(self, message: Any, exchange: str, key: str) -> None:
        # Pending before it is sent: its confirm may be read during the next basic.get.
        self.published += 1
        self.pending.add(self.published)
        self.channel.basic_publish(message, exchange=exchange, routing_key=key, mandatory=True)

    def wait(self, connection: kombu.Connection) -> None:
        while self.pending:
            connection.drain_events(timeout=CONFIRM_TIMEOUT)


def _declare(channel: Any, queue: str, arguments: Dict[str, Any], bindings: Sequence[_Pair]) -> None:
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
    for exchange, key in bindings:
        channel.queue_bind(queue, exchange, key)


def _bind(channel: Any, queue: str, bindings: Sequence[Binding], own_exchange: str, unbind: bool) -> None:
    """Bind (or unbind) `queue` like the listener's queue: its bindings and the return key."""
    call = channel.queue_unbind if unbind else channel.queue_bind
    for exchange, key in [(b.exchange, b.routing_key_pattern) for b in bindings] + [(own_exchange, RETURN_KEY)]:
        call(queue, exchange, key)


def _record(connection: kombu.Connection, delivery: Delivery) -> Tuple[Set[_Pair], Dict[str, Dict[str, Any]]]:
    """What the listener's binding record says (read in place, from the record queue and from a
    migration's parking queue for it)."""
    return read_records(peek_records(connection, delivery), "the binding record")


def peek_records(connection: kombu.Connection, delivery: Delivery) -> List[Any]:
    """The listener's binding record messages, read and left in place (from the record queue
    and from a migration's parking queue for it)."""
    held: List[Any] = []
    for queue in (record_queue(delivery.queue), _parking(delivery)["parked-rec"]):
        count = _count(connection, queue)
        if not count:
            continue
        with _channel(connection) as channel:  # closing it puts the record back
            source = kombu.Queue(queue, channel=channel)
            held += list(iter(lambda: source.get(no_ack=False), None))
        await_count(connection, queue, count)
    return held


def _refuse_consumers(connection: kombu.Connection, queue: str, what: str) -> None:
    with _channel(connection) as channel:
        try:
            consumers = channel.queue_declare(queue, passive=True).consumer_count
        except NotFound:
            return
    if consumers:
        raise BrokerFailure(f"{queue} has {consumers} consumer(s): stop every listener on it before you {what}")


def _count(connection: kombu.Connection, queue: str) -> Optional[int]:
    """Messages ready in `queue`, or None when there is no such queue."""
    with _channel(connection) as channel:
        try:
            return channel.queue_declare(queue, passive=True).message_count
        except NotFound:
            return None


def _exchange_exists(connection: kombu.Connection, exchange: str) -> bool:
    with _channel(connection) as channel:
        try:
            channel.exchange_declare(exchange, "direct", passive=True)
            return True
        except NotFound:
            return False


@contextlib.contextmanager
def _channel(connection: kombu.Connection) -> Iterator[Any]:
    """A channel of `connection`, closed on the way out (a connection keeps every channel left
    open until it closes, and a migration opens several per queue)."""
    channel = connection.channel()
    try:
        yield channel
    finally:
        try:
            channel.close()
        except Exception:  # a refused declaration closed it already
            pass
