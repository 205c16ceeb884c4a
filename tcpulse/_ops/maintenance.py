"""Maintenance of a listener's queues: deleting what it declared, moving its queues to the
other queue type, taking over a queue another tool declared, and moving it off the delivery
exchange of an older tcpulse; every move is `tcpulse._ops.moving.relayout`, nothing lost.

Owns: `delete_listener` (`tcpulse delete NAME`: the listener's queue, its retry holding queues,
its binding record and delivery exchanges; the dead-letter queue only when asked), `migrate`
(`tcpulse migrate NAME --to quorum|classic`), `adopt` (a listener started with `adopt=True`
taking over a queue of its name that another tool declared: the same move, of that one queue,
bound as the listener binds), the remedy a listener's queue conflict names, and
`move_to_private` (a listener starting on the layout of an older tcpulse, whose delivery
exchange any Pulse user can bind to, moves to the private one of
`tcpulse._listen.topology.ListenerNames`; `tcpulse._listen.layout.prepare` calls it). All work
within Pulse's permissions (a user's own `queue/<user>/...` and `exchange/<user>/...`, no
management API) and only while nothing else consumes the listener's queue (delete, migrate and
adopt refuse; a listener start leaves the move for another time); delete and migrate hold the
listener's layout lock (`tcpulse._listen.layout`), as a starting listener does.

Imports kombu through `tcpulse._listen.delivery`; never requests or the listener.
"""
import logging
from typing import Any, List, Optional, Sequence

import kombu

from tcpulse._api.exchanges import Binding
from tcpulse._broker.connection import BrokerAddress
from tcpulse._listen.delivery import Delivery
from tcpulse._listen.layout import (channel_on, connection_of, consumers, count, exchange_exists, layout_lock,
                                    peek_record, probe_secret, settle_secret, take_record)
from tcpulse._listen.outcome import DEFAULT_RETRY_DELAYS, RetryPolicy
from tcpulse._listen.stale import Record
from tcpulse._listen.topology import QUEUE_TYPES, ListenerNames
from tcpulse._ops.moving import Report, fits, relayout, state, units
from tcpulse.errors import BrokerFailure

log = logging.getLogger("tcpulse.listener")


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
                  names.isolation_queue, names.record_queue, *names.parking_queues().values()]
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
    arguments). Returns how many messages were moved back into the listener's queue."""
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
        old, new = (Delivery(queue, policy, max_length, queue_type=kind, secret=record.secret,
                             delivery_limit=delivery_limit if kind == "quorum" else None) for kind in (old_type, to))
        if record.secret is None:  # recorded first, through the new exchange: the old one is anyone's to bind
            recording = Delivery(queue, policy, queue_type=old_type)
            with channel_on(connection) as channel:
                settle_secret(channel, recording)
            new.use(recording.names.secret)
        bindings = [Binding(exchange, pattern) for exchange, pattern in sorted(record.pairs)]
        moves = ((source, key) for source, old_args, new_args, key in units(old, new, record.holding)
                 if state(connection, source, old_args, new_args) == "old")
        back = relayout(connection, new, bindings, moves, old_type, report)
        _drop_legacy(connection, old, new, report)
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
    queue, parking = delivery.queue, delivery.names.parking_queues()
    held = count(connection, queue)
    interrupted = count(connection, parking["migrating"]) is not None
    fitting = held is not None and fits(connection, queue, delivery.queue_arguments())
    if (held is None or fitting) and not interrupted:
        return None
    _refuse_consumers(connection, queue, "adopt it")
    moves = [] if held is None or fitting else [(queue, "migrating")]
    back = relayout(connection, delivery, bindings, moves, "another layout", report)
    report(f"adopted {queue}: {back} message(s) kept, now in tcpulse's layout with {len(bindings)} binding(s)")
    return back


def conflict_remedy(connection: kombu.Connection, delivery: Delivery, name: str) -> Optional[str]:
    """What to do about a refused declaration of listener `name`'s queues: move tcpulse's queue of
    the other type (legacy or private layout) with `tcpulse migrate`, or adopt anything else;
    None when the listener's queue itself is absent or fits (something else conflicts)."""
    queue, wanted = delivery.queue, delivery.queue_type
    if count(connection, queue) is None or fits(connection, queue, delivery.queue_arguments()):
        return None
    other = next(t for t in QUEUE_TYPES if t != wanted)
    as_other = Delivery(queue, delivery.policy, delivery.max_length, queue_type=other)
    if fits(connection, queue, as_other.queue_arguments()) or \
            probe_secret(connection, as_other.names, as_other.queue_arguments())[0] in ("secret", "lost"):
        return (f"it is tcpulse's {other} queue: stop its listeners and move it to a {wanted} queue without "
                f"losing a message with `tcpulse migrate {name} --to {wanted}`")
    return ("another tool declared it, or this listener with other options: take it over in place, keeping its "
            "messages, with --adopt (Listener(..., adopt=True)), which moves it to tcpulse's layout")


def fits_legacy(connection: Any, delivery: Delivery, secret: Optional[str]) -> bool:
    """Whether `delivery`'s listener queue is absent or has the arguments `delivery`'s options give
    on the legacy layout (or, `secret` known, on the private one: a move cut short): a queue
    declared with other options is not moved, and the listener's declaration names what differs."""
    new_args = Delivery(delivery.queue, delivery.policy, delivery.max_length, queue_type=delivery.queue_type,
                        delivery_limit=delivery.delivery_limit, secret=secret).queue_arguments() if secret else None
    try:
        state(connection, delivery.queue, _legacy(delivery).queue_arguments(), new_args)
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
    moves = ((source, key) for source, old_args, new_args, key in units(old, delivery, record.holding, lost)
             if state(connection, source, old_args, new_args) == "old")
    back = relayout(connection, delivery, bindings, moves, "an older layout", log.info)
    if not lost:
        _drop_legacy(connection, old, delivery, log.info)
    log.warning("moved %s to its private delivery exchange (%d message(s) back in its queue); its dead letters "
                "and binding record stay where they were", delivery.queue, back)


def _drop_legacy(connection: Any, old: Delivery, new: Delivery, report: Report) -> None:
    if old.exchange != new.exchange and exchange_exists(connection, old.exchange):
        with channel_on(connection) as channel:
            channel.exchange_delete(old.exchange)
        report(f"deleted exchange {old.exchange}")


def prepare(channel: Any, delivery: Any, bindings: Sequence[Binding]) -> Record:
    """Settle where the delivery path of a named listener starting on `channel` lives, moving it
    off the legacy layout if need be; `delivery` (its `tcpulse._listen.delivery.Delivery`) is pointed at
    it. Returns the binding record, taken on `channel` (`tcpulse._listen.stale.remove_stale` replaces it).
    Call it under `layout_lock`."""
    connection = connection_of(channel)
    names = delivery.names
    record = take_record(channel, delivery)
    lost = False
    if record.secret is None and count(connection, names.queue) is not None:
        found, record.secret = probe_secret(connection, names, delivery.queue_arguments())  # a lost record?
        lost = found == "lost"
    # An older tcpulse's layout: its exchange is there (a move cut short, too), or its queue is
    # while nothing says it has a secret.
    legacy = exchange_exists(connection, names.legacy_exchange) or (
        record.secret is None and not lost and count(connection, names.queue) is not None)
    if legacy:
        others = consumers(connection, names.queue)
        if others:
            log.warning("%s still uses the delivery exchange of an older tcpulse, %s, which any Pulse user can "
                        "bind to, and has %d other consumer(s): it moves to a private exchange by itself once a "
                        "process of this version starts with no other consumer on it (stop them all, start one)",
                        names.queue, names.legacy_exchange, others)
            delivery.use(None)
            return record
        if not fits_legacy(connection, delivery, record.secret):
            delivery.use(None)  # declared with other options: its declaration says which
            return record
    record = settle_secret(channel, delivery, record)
    if legacy or lost:
        move_to_private(connection, delivery, bindings, record, lost=lost)
    return record


def _refuse_consumers(connection: Any, queue: str, what: str) -> None:
    found = consumers(connection, queue)
    if found:
        raise BrokerFailure(f"{queue} has {found} consumer(s): stop every listener on it before you {what}")
