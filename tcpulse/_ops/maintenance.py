"""Moving a listener's queues without losing a message, and deleting what it declared.

Owns: `delete_listener` (`tcpulse delete NAME`: the listener's queue, its retry holding queues,
its binding record and delivery exchange; the dead-letter queue only when asked), `migrate`
(`tcpulse migrate NAME --to quorum|classic`) and `move_to_private` (a listener starting on the
layout of an older tcpulse, whose delivery exchange any Pulse user can bind to, moves to the
private one of `tcpulse._listen.topology.ListenerNames`; `tcpulse._listen.layout.prepare` calls it). All work
within Pulse's permissions (a user's own `queue/<user>/...` and `exchange/<user>/...`, no
management API), under the listener's layout lock, and only while nothing else consumes the
listener's queue (delete and migrate refuse; a listener start waits for another time).

How a move goes (`_relayout`), each step safe to repeat, so a run interrupted anywhere (even
kill -9) is finished by running it again (or, for the automatic move, by starting again):
1. parking queues (`queue/<user>/<name>/migrating`, `.../parked-dl`, `.../parked-rec`) take what
   the old queues hold; the main one is bound like the listener's queue, so what is published
   meanwhile waits there too;
2. each queue whose arguments change (to the other type; or to the new delivery exchange, which
   the listener's and holding queues name as their dead-letter exchange) is unbound, emptied into
   its parking queue (every copy publisher-confirmed before its original is acked), deleted and
   declared again: a queue that has its new arguments already is left alone, and only bound to
   the new delivery exchange;
3. the parking queues are emptied back (confirmed copies again) and deleted.
A message may be copied twice when a run is cut between a copy and its ack (at least once, as
everywhere else); none is lost. Retries waiting in holding queues come back at once.

Imports kombu through `tcpulse._listen.delivery`; never requests or the listener.
"""
import itertools
import json
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import kombu
from amqp.exceptions import PreconditionFailed

from tcpulse._broker.connection import BrokerAddress
from tcpulse._listen.delivery import Delivery, copy_of, publish_confirmed
from tcpulse.errors import BrokerFailure
from tcpulse._api.exchanges import Binding
from tcpulse._listen.layout import channel_on, consumers, count, exchange_exists, layout_lock, peek_record
from tcpulse._listen.outcome import DEFAULT_RETRY_DELAYS, Origin, RetryPolicy, trusted_headers
from tcpulse._listen.stale import Record, record_queue
from tcpulse._listen.topology import DEAD_LETTER_KEY, QUEUE_TYPES, RECORD_KEY, RETURN_KEY, ListenerNames, new_secret, queue_arguments

log = logging.getLogger("tcpulse.listener")

Report = Callable[[str], None]
BATCH = 500  # copies published before waiting for the broker's confirms
CONFIRM_TIMEOUT = 30.0  # seconds without a confirm before a move gives up (socket.timeout)
_Pair = Tuple[str, str]


def delete_listener(connection: kombu.Connection, address: BrokerAddress, name: str,
                    include_dead_letters: bool = False, retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
                    report: Report = print) -> List[str]:
    """Delete listener `name`'s queue, holding queues (of `retry_delays` and any its binding
    record names), binding record, parking queues of a migration, and delivery exchanges (the
    private one its record names, and an older tcpulse's); its dead-letter queue too when
    `include_dead_letters`. Reports each thing removed (and a kept dead-letter queue) and returns
    the names removed; refuses while the queue has consumers."""
    names = ListenerNames.of(address.user, name)
    with layout_lock(connection, names):
        _refuse_consumers(connection, names.queue, "delete it")
        record = peek_record(connection, names)
        delivery = Delivery(names.queue, RetryPolicy(retry_delays=tuple(retry_delays)), secret=record.secret)
        queues = [delivery.queue, *sorted(set(delivery.holding_queues()) | set(record.holding)),
                  names.record_queue, *names.parking_queues().values()]
        removed = []
        with channel_on(connection) as channel:
            for queue in queues + ([delivery.dead_letter_queue] if include_dead_letters else []):
                held = count(connection, queue)
                if held is not None:
                    channel.queue_delete(queue)
                    removed.append(queue)
                    report(f"deleted queue {queue} ({held} message(s))")
            for exchange in delivery.names.own_exchanges:
                if exchange_exists(connection, exchange):
                    channel.exchange_delete(exchange)
                    removed.append(exchange)
                    report("deleted exchange " + ("the delivery exchange" if exchange == delivery.exchange
                                                  and record.secret else exchange))
    kept = None if include_dead_letters else count(connection, delivery.dead_letter_queue)
    if kept is not None:
        report(f"kept {delivery.dead_letter_queue} ({kept} dead letter(s)); --include-dead-letters deletes it")
    if not removed and kept is None:
        raise BrokerFailure(f"nothing to delete: user {address.user!r} has no queue {delivery.queue!r} nor "
                            f"anything else listener {name!r} declares on {address}")
    return removed


def migrate(connection: kombu.Connection, address: BrokerAddress, name: str, to: str, *,
            max_length: Optional[int] = None, delivery_limit: Optional[int] = None,
            retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS, report: Report = print) -> int:
    """Move listener `name`'s queues to queue type `to` (and off an older tcpulse's delivery
    exchange, if it still uses one); the options must be the listener's (they decide the queues'
    arguments). Returns how many messages were moved back into the listener's queue. See the
    module docstring for the steps."""
    if to not in QUEUE_TYPES:
        raise ValueError(f"--to must be one of {', '.join(QUEUE_TYPES)} (got {to!r})")
    names = ListenerNames.of(address.user, name)
    queue = names.queue
    policy = RetryPolicy(retry_delays=tuple(retry_delays))
    old_type = next(t for t in QUEUE_TYPES if t != to)
    with layout_lock(connection, names):
        _refuse_consumers(connection, queue, "migrate it")
        if count(connection, queue) is None and count(connection, names.parking_queues()["migrating"]) is None:
            raise BrokerFailure(f"nothing to migrate: user {address.user!r} has no queue {queue!r} on {address} "
                                f"(has listener {name!r} run there?)")
        record = peek_record(connection, names)
        if not record.pairs and count(connection, queue) is not None:
            raise BrokerFailure(f"no record of what {queue} is bound to (tcpulse._listen.stale keeps one): run the "
                                "listener once with this version of tcpulse, stop it, then migrate")
        old, new = (Delivery(queue, policy, max_length, queue_type=kind, secret=secret,
                             delivery_limit=delivery_limit if kind == "quorum" else None)
                    for kind, secret in ((old_type, record.secret), (to, record.secret or new_secret())))
        if record.secret is None:
            _record_secret(connection, old, new, record)
        bindings = [Binding(exchange, pattern) for exchange, pattern in sorted(record.pairs)]
        back = _relayout(connection, old, new, bindings, record.holding, report)
        _drop_legacy(connection, old, new, report)
    report(f"{queue} is a {to} queue now, with its {len(bindings)} binding(s), holding and dead-letter queues")
    return back


def fits_legacy(connection: Any, delivery: Delivery, secret: Optional[str]) -> bool:
    """Whether `delivery`'s listener queue is absent or has the arguments `delivery`'s options give
    on the legacy layout (or, `secret` known, on the private one: a move cut short): a queue
    declared with other options is not moved, and the listener's declaration names what differs."""
    new_args = Delivery(delivery.queue, delivery.policy, delivery.max_length, queue_type=delivery.queue_type,
                        delivery_limit=delivery.delivery_limit, secret=secret).queue_arguments() if secret else None
    try:
        _state(connection, delivery.queue, _legacy(delivery).queue_arguments(), new_args)
        return True
    except BrokerFailure:
        return False


def _legacy(delivery: Delivery) -> Delivery:
    """`delivery` on the legacy layout (the same queues, an older tcpulse's delivery exchange)."""
    return Delivery(delivery.queue, delivery.policy, delivery.max_length, queue_type=delivery.queue_type,
                    delivery_limit=delivery.delivery_limit)


def move_to_private(connection: Any, delivery: Delivery, bindings: Sequence[Binding], record: Record,
                    lost: bool = False) -> None:
    """Move a listener starting on an older tcpulse's layout (or, `lost`, on a private exchange
    whose name went with its binding record) to `delivery`'s private exchange, already recorded
    in its binding record: everything waiting in its queue and holding queues comes back to its
    queue through the new exchange, its dead-letter and record queues are bound to it, and the
    old exchange is deleted (a lost one is left: nothing routes to it any more, and nobody else
    can name it). See the module docstring."""
    old = _legacy(delivery)
    why = ("whose binding record, which held the name of its private delivery exchange, is gone" if lost else
           f"off {old.exchange}, which any Pulse user can bind to (and so read or block its retries, dead letters "
           "and binding record)")
    log.warning("moving %s, %s, to a new private delivery exchange; what waits in its queue and retry queues comes "
                "back to its queue", delivery.queue, why)
    back = _relayout(connection, old, delivery, bindings, record.holding, log.info, unknown_old=lost)
    if not lost:
        _drop_legacy(connection, old, delivery, log.info)
    log.warning("moved %s to its private delivery exchange (%d message(s) back in its queue); its dead letters "
                "and binding record stay where they were", delivery.queue, back)


def _record_secret(connection: Any, old: Delivery, new: Delivery, record: Record) -> None:
    """Put a record naming `new`'s secret beside the old one (through the exchange it is bound to
    now) before anything uses the secret, so a move cut short resumes with it."""
    body = json.dumps({"bindings": sorted(record.pairs), "holding_queues": record.holding,
                                   "delivery_secret": new.names.secret})
    with channel_on(connection) as channel:
        message = channel.prepare_message(body.encode(), content_type="application/json", content_encoding="utf-8",
                                          properties={"delivery_mode": 2})
        publish_confirmed(channel, message, old.exchange, RECORD_KEY)


def _drop_legacy(connection: Any, old: Delivery, new: Delivery, report: Report) -> None:
    if old.exchange != new.exchange and exchange_exists(connection, old.exchange):
        with channel_on(connection) as channel:
            channel.exchange_delete(old.exchange)
        report(f"deleted exchange {old.exchange}")


def _relayout(connection: Any, old: Delivery, new: Delivery, bindings: Sequence[Binding],
              recorded_holding: Dict[str, Dict[str, Any]], report: Report, unknown_old: bool = False) -> int:
    """Move every queue of listener queue `old.queue` from `old`'s arguments (`unknown_old`: the
    listener's and holding queues' are not known, any but the new ones will do) to `new`'s;
    returns how many messages went back into the listener's queue."""
    queue, parking = new.queue, _parking(new)
    with channel_on(connection) as channel:
        kombu.Exchange(new.exchange, type="direct", durable=True, channel=channel).declare()
        for key, park in parking.items():
            _declare(channel, park, queue_arguments(new.queue_type), [(new.exchange, key)])
        _bind(channel, parking["migrating"], bindings, new.exchange, unbind=False)
        for source, old_args, new_args, key in _units(old, new, recorded_holding, unknown_old):
            if _state(connection, source, old_args, new_args) == "old":
                if source == queue:  # from now on, what is published waits in the parking queue
                    returning = old.exchange if exchange_exists(connection, old.exchange) else None
                    _bind(channel, queue, bindings, returning, unbind=True)
                moved = _move(connection, source, new, key, moving=key == "migrating")
                channel.queue_delete(source)
                report(f"moved {moved} message(s) from {source} ({old.queue_type}) to {parking[key]}")
        _declare(channel, queue, new.queue_arguments(), [(b.exchange, b.routing_key_pattern) for b in bindings])
        new.declare(channel)
        _declare(channel, record_queue(queue), queue_arguments(new.queue_type), [(new.exchange, RECORD_KEY)])
        _bind(channel, parking["migrating"], bindings, new.exchange, unbind=True)
        back = 0
        for key, target_key, target in (("migrating", RETURN_KEY, queue),
                                        ("parked-dl", DEAD_LETTER_KEY, new.dead_letter_queue),
                                        ("parked-rec", RECORD_KEY, record_queue(queue))):
            moved = _move(connection, parking[key], new, target_key, moving=key == "migrating")
            channel.queue_delete(parking[key])
            back += moved if key == "migrating" else 0
            report(f"moved {moved} message(s) from {parking[key]} back to {target} ({new.queue_type})")
    return back


def _parking(delivery: Delivery) -> Dict[str, str]:
    return delivery.names.parking_queues()


def _units(old: Delivery, new: Delivery, recorded_holding: Dict[str, Dict[str, Any]], unknown_old: bool = False
           ) -> Iterator[Tuple[str, Optional[Dict[str, Any]], Optional[Dict[str, Any]], str]]:
    """(queue, old arguments, new arguments, parking key) for every queue a move empties; new
    arguments None for a holding queue that only the binding record names (emptied and gone), old
    arguments None for the listener's and holding queues when `unknown_old`."""
    yield old.queue, None if unknown_old else old.queue_arguments(), new.queue_arguments(), "migrating"
    new_holding = new.holding_queues()
    for holding, args in old.holding_queues().items():
        yield holding, None if unknown_old else args, new_holding[holding], "migrating"
    for holding, args in sorted(recorded_holding.items()):
        if holding not in new_holding:
            yield holding, args, None, "migrating"
    yield old.dead_letter_queue, old.dead_letter_arguments(), new.dead_letter_arguments(), "parked-dl"
    record = record_queue(old.queue)
    yield record, queue_arguments(old.queue_type), queue_arguments(new.queue_type), "parked-rec"


def _state(connection: Any, queue: str, old_args: Optional[Dict[str, Any]], new_args: Optional[Dict[str, Any]]) -> str:
    """'absent', 'new' or 'old': RabbitMQ tells a queue's arguments only by refusing a
    declaration that differs from them, so each set is tried in turn (`new_args` None: a queue
    with no new form, 'old' while it exists; `old_args` None: any other than the new are old)."""
    if count(connection, queue) is None:
        return "absent"
    for state, arguments in (("new", new_args), ("old", old_args)):
        if arguments is None:
            if state == "old":
                return "old"
            continue
        try:
            with channel_on(connection) as channel:
                channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
            return state
        except PreconditionFailed:  # the refusal closed that channel: the next try needs a new one
            continue
    raise BrokerFailure(f"{queue} exists with other arguments than this migration expects: pass the "
                        "--max-length, --delivery-limit and --retry-delays the listener uses")


def _move(connection: kombu.Connection, source: str, delivery: Delivery, key: str, moving: bool) -> int:
    """Copy every message of `source` through the delivery exchange with `key`, then ack it:
    in batches, each acked (one multiple ack) only once the broker confirmed every copy in it.
    `moving`: a listener message, which keeps the exchange, key and attempt it would have
    dispatched as; otherwise (dead letters, records) it is copied unchanged."""
    moved = 0
    with channel_on(connection) as channel:
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
                    own = (info["exchange"],) if delivery.names.owns(info["exchange"]) else ()
                    trusted = trusted_headers(headers, info["exchange"], own)
                    headers = Origin.of(trusted, info["exchange"], info["routing_key"]).moved_headers(headers)
                confirms.publish(copy_of(message, headers), delivery.exchange, key)
            confirms.wait(connection)
            channel.basic_ack(batch[-1].delivery_tag, multiple=True)
            moved += len(batch)
    return moved


class _Confirms:
    """Publisher confirms on `channel`, waited for a batch at a time (one round trip per copy
    would make a migration of 10,000 messages take minutes). A nack, or a mandatory copy that
    reached no queue, raises before any original is acked. A channel without `confirm_select`
    (memory://) confirms each publish as it is made."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.batched = hasattr(channel, "confirm_select")
        self.published = 0
        self.pending: Set[int] = set()
        if self.batched:
            channel.confirm_select()
            channel.events["basic_ack"].add(self._ack)
            channel.events["basic_nack"].add(self._nack)

    def _ack(self, tag: int, multiple: bool) -> None:
        self.pending -= {t for t in self.pending if t <= tag} if multiple else {tag}

    def _nack(self, tag: int, multiple: bool) -> None:
        raise BrokerFailure("the broker refused (nacked) a copy; nothing of this batch was acked: run the "
                            "migration again")

    def publish(self, message: Any, exchange: str, key: str) -> None:
        if not self.batched:
            publish_confirmed(self.channel, message, exchange, key)
            return
        # Pending before it is sent: its confirm may be read during the next basic.get.
        self.published += 1
        self.pending.add(self.published)
        self.channel.basic_publish(message, exchange=exchange, routing_key=key, mandatory=True)

    def wait(self, connection: Any) -> None:
        while self.pending:
            connection.drain_events(timeout=CONFIRM_TIMEOUT)


def _declare(channel: Any, queue: str, arguments: Dict[str, Any], bindings: Sequence[_Pair]) -> None:
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
    for exchange, key in bindings:
        channel.queue_bind(queue, exchange, key)


def _bind(channel: Any, queue: str, bindings: Sequence[Binding], own_exchange: Optional[str], unbind: bool) -> None:
    """Bind (or unbind) `queue` like the listener's queue: its bindings and the return key of
    `own_exchange` (None: an exchange that is gone, and its bindings with it)."""
    call = channel.queue_unbind if unbind else channel.queue_bind
    returning = [(own_exchange, RETURN_KEY)] if own_exchange else []
    for exchange, key in [(b.exchange, b.routing_key_pattern) for b in bindings] + returning:
        call(queue, exchange, key)


def _refuse_consumers(connection: Any, queue: str, what: str) -> None:
    found = consumers(connection, queue)
    if found:
        raise BrokerFailure(f"{queue} has {found} consumer(s): stop every listener on it before you {what}")
