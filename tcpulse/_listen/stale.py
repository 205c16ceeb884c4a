"""What a named listener bound last time, and removing what it no longer declares.

Owns: the listener's own record of its queue's bindings, its retry holding queues and its
delivery exchange's secret (`tcpulse._listen.topology.ListenerNames`), kept as one message in
`queue/<user>/<name>/bindings` (which only its Pulse user can read), and, on every (re)connect after the topology is
declared: unbinding what the record holds but the listener no longer declares (a handler that was
removed or narrowed), deleting holding queues that `retry_delays` no longer schedules into (once
they are empty: what waits there still expires back to the listener), then replacing the record.

Why a record of our own: Pulse gives its users no management API, so a listener cannot ask the
broker which bindings its durable queue has; without the record a removed handler's binding
would stay forever and its traffic would keep arriving, matched by nothing. The record is
published through the listener's delivery exchange (a Pulse user may not publish to the default
exchange). When several processes share the queue, each one's record survives until the next
start reads it, so what any of them bound is known; the last to start decides what stays bound.
A listener that ran before records existed has none: nothing is removed on its first start.

Anonymous listeners keep no record: their queue goes away with their connection.

Imports kombu only through the channel it is given and `tcpulse._listen.delivery`; never requests or
the listener.

Example:
    >>> record_queue("queue/alice/watcher")
    'queue/alice/watcher/bindings'
"""
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from tcpulse._broker.connection import BrokerAddress
from tcpulse._api.exchanges import Binding
from tcpulse._listen.topology import RECORD_KEY, translating

log = logging.getLogger("tcpulse.listener")

_Pair = Tuple[str, str]
_SECRET = re.compile(r"[A-Za-z0-9_-]{16,64}")


def record_queue(queue: str) -> str:
    """The queue holding the record of what listener queue `queue` bound."""
    return f"{queue}/{RECORD_KEY}"


@dataclass
class Record:
    """What the listener's binding record says: the bindings and holding queues it names, the
    delivery exchange's secret (`tcpulse._listen.topology.ListenerNames`), and the record messages it was
    read from (`held`, unacked on the channel that took them: closing it puts them back)."""

    pairs: Set[_Pair] = field(default_factory=set)
    holding: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    secret: Optional[str] = None
    held: List[Any] = field(default_factory=list)


def write_record(channel: Any, delivery: Any, record: Record, bindings: Sequence[_Pair],
                 holding: Dict[str, Dict[str, Any]]) -> Record:
    """Replace `record` (its held messages are acked once the new one is confirmed) by one naming
    `bindings`, `holding` and the secret of `delivery`'s exchange, through it; returns what it
    wrote. The exchange must exist. A record written through the legacy exchange (a listener
    that could not move yet) names no secret: anyone may be bound there."""
    from tcpulse._listen.delivery import publish_confirmed

    secret = delivery.names.secret
    channel.queue_bind(queue=record_queue(delivery.queue), exchange=delivery.exchange, routing_key=RECORD_KEY)
    body = json.dumps({"bindings": sorted(bindings), "holding_queues": holding, "delivery_secret": secret,
                       "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True)
    message = channel.prepare_message(body.encode(), content_type="application/json",
                                      content_encoding="utf-8", properties={"delivery_mode": 2})
    publish_confirmed(channel, message, delivery.exchange, RECORD_KEY)
    for held in record.held:  # only now: a crash before this leaves the old record in place
        held.ack()
    return Record(set(bindings), dict(holding), secret)


def remove_stale(channel: Any, delivery: Any, bindings: Sequence[Binding], record: Record,
                 address: BrokerAddress) -> None:
    """Unbind from `delivery.queue` what `record` holds beyond `bindings`, delete holding queues
    `delivery` no longer uses once empty, and record what is bound now. `delivery` is the
    listener's `tcpulse._listen.delivery.Delivery`, already declared on `channel`, which took `record`."""
    current = {(b.exchange, b.routing_key_pattern) for b in bindings}
    for exchange, pattern in sorted(record.pairs - current):
        _unbind(channel, delivery.queue, exchange, pattern, address)
    holding = dict(delivery.holding_queues())
    for queue, arguments in sorted(record.holding.items()):
        if queue not in holding and not _delete_if_empty(channel, queue, arguments):
            holding[queue] = arguments  # still holds retries: try again on the next start
    write_record(channel, delivery, record, sorted(current), holding)


def read_records(held: List[Any], where: str) -> Record:
    """The union of what the record messages `held` say was bound, the holding queues they name,
    and the first delivery secret among them; an unreadable one is skipped with a warning."""
    record = Record(held=held)
    for message in held:
        try:
            data = json.loads(message.body)
            pairs = {(str(e), str(p)) for e, p in data["bindings"]}
            holding = {str(q): dict(args) for q, args in data["holding_queues"].items()}
            secret = data.get("delivery_secret")
            if secret is not None and not (isinstance(secret, str) and _SECRET.fullmatch(secret)):
                raise ValueError("its delivery_secret is not 16 to 64 URL-safe characters")
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignored an unreadable binding record in %s (%s: %s); it is replaced",
                        where, type(exc).__name__, exc)
            continue
        record.pairs |= pairs
        record.holding.update(holding)
        record.secret = record.secret or secret
    return record


def _unbind(channel: Any, queue: str, exchange: str, pattern: str, address: BrokerAddress) -> None:
    translating(channel.queue_unbind, f"unbind {queue!r} from {exchange!r} with {pattern!r}", address,
                queue=queue, exchange=exchange, routing_key=pattern)
    log.info("removed the binding of %s to %s with %r: no handler declares it any more",
             queue, exchange, pattern)


def _delete_if_empty(channel: Any, queue: str, arguments: Dict[str, Any]) -> bool:
    """Delete holding queue `queue` if nothing waits in it; say whether it is gone. Declared
    (not passively) with its recorded arguments, so a queue already deleted by hand is no error."""
    waiting = channel.queue_declare(queue=queue, durable=True, exclusive=False, auto_delete=False,
                                    arguments=arguments).message_count
    if waiting:
        log.info("kept the retry holding queue %s, which retry_delays no longer uses, until the %d "
                 "message(s) waiting there have come back", queue, waiting)
        return False
    channel.queue_delete(queue=queue, if_empty=True)
    log.info("deleted the retry holding queue %s: retry_delays no longer uses it", queue)
    return True
