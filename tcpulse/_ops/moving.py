"""Moving a listener's queues to new arguments without losing a message.

Owns: `relayout` (the move every maintenance operation of `tcpulse._ops.maintenance` makes:
another queue type, another delivery exchange, a queue another tool declared), `units` and
`state` (which of a listener's queues have to move), and the batched, publisher-confirmed copy
(`move`) it is made of.

How a move goes, each step safe to repeat, so a run interrupted anywhere (even kill -9) is
finished by running it again (or, for a listener's automatic move, by starting it again):
1. parking queues (`queue/<user>/<name>/migrating`, `.../parked-dl`, `.../parked-rec`) take what
   the old queues hold; the main one is bound like the listener's queue, so what is published
   meanwhile waits there too;
2. each queue whose arguments change (to the other type; to the new delivery exchange, which the
   listener's and holding queues name as their dead-letter exchange; from another tool's) is
   emptied into its parking queue (every copy publisher-confirmed before its original is acked)
   and deleted once seen empty: a queue with its new arguments already is left alone, and only
   bound to the new delivery exchange;
3. everything is declared with its new arguments, and the parking queues are emptied back
   (confirmed copies again) and deleted.
A message may be copied twice when a run is cut between a copy and its ack (at least once, as
everywhere else); none is lost. Retries waiting in holding queues come back at once.

Imports kombu through `tcpulse._listen.delivery`; never requests or the listener.
"""
import itertools
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Sequence, Set, Tuple

import kombu
from amqp.exceptions import PreconditionFailed

from tcpulse._api.exchanges import Binding
from tcpulse._listen.delivery import Delivery, copy_of, publish_confirmed
from tcpulse._listen.layout import channel_on, count
from tcpulse._listen.outcome import Origin, trusted_headers
from tcpulse._listen.stale import record_queue
from tcpulse._listen.topology import DEAD_LETTER_KEY, RECORD_KEY, RETURN_KEY, queue_arguments
from tcpulse.errors import BrokerFailure

Report = Callable[[str], None]
BATCH = 500  # copies published before waiting for the broker's confirms
CONFIRM_TIMEOUT = 30.0  # seconds without a confirm before a move gives up (socket.timeout)
Arguments = Optional[Dict[str, Any]]


def relayout(connection: Any, new: Delivery, bindings: Sequence[Binding], moves: Iterable[Tuple[str, str]],
             old_kind: str, report: Report) -> int:
    """Steps 1-3 of the module docstring for `new`'s queues: each (queue, parking key) of
    `moves` is emptied into its parking queue and deleted; then everything is declared with
    `new`'s arguments and the parking queues are emptied back. Returns how many messages came
    back into the listener's queue."""
    queue, parking, to = new.queue, new.names.parking_queues(), new.queue_type
    with channel_on(connection) as channel:
        kombu.Exchange(new.exchange, type="direct", durable=True, channel=channel).declare()
        for key, park in parking.items():
            declare(channel, park, queue_arguments(to), [(new.exchange, key)])
        bind(channel, parking["migrating"], bindings, new.exchange, unbind=False)
        for source, key in moves:
            if source == queue:  # from now on, what is published waits in the parking queue
                bind(channel, queue, bindings, None, unbind=True)
            moved = _empty_into_parking(connection, source, new, key)
            report(f"moved {moved} message(s) from {source} ({old_kind}) to {parking[key]}")
        declare(channel, queue, new.queue_arguments(), [(b.exchange, b.routing_key_pattern) for b in bindings])
        new.declare(channel)
        declare(channel, record_queue(queue), queue_arguments(to), [(new.exchange, RECORD_KEY)])
        bind(channel, parking["migrating"], bindings, new.exchange, unbind=True)
        back = 0
        for key, target_key, target in (("migrating", RETURN_KEY, queue),
                                        ("parked-dl", DEAD_LETTER_KEY, new.dead_letter_queue),
                                        ("parked-rec", RECORD_KEY, record_queue(queue))):
            moved = move(connection, parking[key], new, target_key, moving=key == "migrating")
            channel.queue_delete(parking[key])
            back += moved if key == "migrating" else 0
            report(f"moved {moved} message(s) from {parking[key]} back to {target} ({to})")
    return back


def _empty_into_parking(connection: Any, source: str, new: Delivery, key: str) -> int:
    """Move everything `source` holds to the parking queue of `key`, then delete it once it is
    seen empty. An adopted queue may have bindings we do not know of, and an old holding queue's
    retries may still expire back into the listener's queue, until the delete; what they bring
    goes to the parking queue too. (`if_empty` is no help: a quorum queue answers it by closing
    the connection.)"""
    moved = 0
    while True:
        moved += move(connection, source, new, key, moving=key == "migrating")
        if not count(connection, source):
            with channel_on(connection) as channel:
                channel.queue_delete(source)
            return moved


def fits(connection: Any, queue: str, arguments: Dict[str, Any]) -> bool:
    """Whether `queue` exists with exactly `arguments` (RabbitMQ tells only by refusing others)."""
    try:
        with channel_on(connection) as channel:
            channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments, passive=False)
        return True
    except PreconditionFailed:
        return False


def units(old: Delivery, new: Delivery, recorded_holding: Dict[str, Dict[str, Any]], unknown_old: bool = False
          ) -> Iterator[Tuple[str, Arguments, Arguments, str]]:
    """(queue, old arguments, new arguments, parking key) for every queue a move may empty; new
    arguments None for a holding queue that only the binding record names (emptied and gone), old
    arguments None for the listener's and holding queues when `unknown_old`."""
    yield old.queue, None if unknown_old else old.queue_arguments(), new.queue_arguments(), "migrating"
    new_holding = new.holding_queues()
    for holding, args in old.holding_queues().items():
        yield holding, None if unknown_old else args, new_holding[holding], "migrating"
    for holding, args in sorted(recorded_holding.items()):
        if holding not in new_holding:
            yield holding, args, None, "migrating"
    # What waits to run alone goes back to the listener's queue, to be run (and guarded) afresh.
    isolation = old.names.isolation_queue
    yield isolation, queue_arguments(old.queue_type), queue_arguments(new.queue_type), "migrating"
    yield old.dead_letter_queue, old.dead_letter_arguments(), new.dead_letter_arguments(), "parked-dl"
    record = record_queue(old.queue)
    yield record, queue_arguments(old.queue_type), queue_arguments(new.queue_type), "parked-rec"


def state(connection: Any, queue: str, old_args: Arguments, new_args: Arguments) -> str:
    """'absent', 'new' or 'old': RabbitMQ tells a queue's arguments only by refusing a
    declaration that differs from them, so each set is tried in turn (`new_args` None: a queue
    with no new form, 'old' while it exists; `old_args` None: any other than the new are old)."""
    if count(connection, queue) is None:
        return "absent"
    if new_args is not None and fits(connection, queue, new_args):  # each try on a channel of its own
        return "new"
    if old_args is None or fits(connection, queue, old_args):
        return "old"
    raise BrokerFailure(f"{queue} exists with other arguments than this migration expects: pass the "
                        "--max-length, --delivery-limit and --retry-delays the listener uses")


def move(connection: Any, source: str, delivery: Delivery, key: str, moving: bool) -> int:
    """Copy every message of `source` through the delivery exchange with `key`, then ack it:
    in batches, each acked (one multiple ack) only once the broker confirmed every copy in it.
    `moving`: a listener message, which keeps the exchange, key and attempt it would have
    dispatched as (its `tcpulse-*` headers believed when it came through one of the listener's
    own exchanges); otherwise (dead letters, records) it is copied unchanged."""
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


def declare(channel: Any, queue: str, arguments: Dict[str, Any], bindings: Sequence[Tuple[str, str]]) -> None:
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
    for exchange, key in bindings:
        channel.queue_bind(queue, exchange, key)


def bind(channel: Any, queue: str, bindings: Sequence[Binding], own_exchange: Optional[str], unbind: bool) -> None:
    """Bind (or unbind) `queue` like the listener's queue: its bindings and the return key of
    `own_exchange` (None: its bindings alone)."""
    call = channel.queue_unbind if unbind else channel.queue_bind
    returning = [(own_exchange, RETURN_KEY)] if own_exchange else []
    for exchange, key in [(b.exchange, b.routing_key_pattern) for b in bindings] + returning:
        call(queue, exchange, key)
