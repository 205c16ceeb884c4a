"""What a named listener bound last time, and removing what it no longer declares.

Owns: the listener's own record of its queue's bindings and its retry holding queues, kept as
one message in `queue/<user>/<name>/bindings`, and, on every (re)connect after the topology is
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
import time
from typing import Any, Dict, List, Sequence, Set, Tuple

from tcpulse._broker.connection import BrokerAddress
from tcpulse._api.exchanges import Binding
from tcpulse._listen.topology import queue_arguments, translating

log = logging.getLogger("tcpulse.listener")

RECORD_KEY = "bindings"  # the delivery exchange's routing key for the record queue
_Pair = Tuple[str, str]


def record_queue(queue: str) -> str:
    """The queue holding the record of what listener queue `queue` bound."""
    return f"{queue}/{RECORD_KEY}"


def remove_stale(channel: Any, delivery: Any, bindings: Sequence[Binding], address: BrokerAddress) -> None:
    """Unbind from `delivery.queue` what the record holds beyond `bindings`, delete holding queues
    `delivery` no longer uses once empty, and record what is bound now. `delivery` is the
    listener's `tcpulse._listen.delivery.Delivery`, already declared on `channel`."""
    import kombu

    from tcpulse._listen.delivery import publish_confirmed

    name = record_queue(delivery.queue)
    # Of the listener's queue type: a classic record would make the listener depend on one node.
    channel.queue_declare(queue=name, durable=True, exclusive=False, auto_delete=False,
                          arguments=queue_arguments(delivery.queue_type))
    channel.queue_bind(queue=name, exchange=delivery.exchange, routing_key=RECORD_KEY)
    held = _take_all(kombu.Queue(name, channel=channel))
    recorded_pairs, recorded_holding = read_records(held, name)
    current = {(b.exchange, b.routing_key_pattern) for b in bindings}
    for exchange, pattern in sorted(recorded_pairs - current):
        _unbind(channel, delivery.queue, exchange, pattern, address)
    holding = dict(delivery.holding_queues())
    for queue, arguments in sorted(recorded_holding.items()):
        if queue not in holding and not _delete_if_empty(channel, queue, arguments):
            holding[queue] = arguments  # still holds retries: try again on the next start
    body = json.dumps({"bindings": sorted(current), "holding_queues": holding,
                       "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True)
    record = channel.prepare_message(body.encode(), content_type="application/json",
                                     content_encoding="utf-8", properties={"delivery_mode": 2})
    publish_confirmed(channel, record, delivery.exchange, RECORD_KEY)
    for message in held:  # only now: a crash before this leaves the old record in place
        message.ack()


def _take_all(queue: Any) -> List[Any]:
    """Every record message, unacked (a competing process may have left one of its own)."""
    held = []
    while (message := queue.get(no_ack=False)) is not None:
        held.append(message)
    return held


def read_records(held: List[Any], where: str) -> Tuple[Set[_Pair], Dict[str, Dict[str, Any]]]:
    """The union of what the records say was bound, and the holding queues they name."""
    pairs: Set[_Pair] = set()
    holding: Dict[str, Dict[str, Any]] = {}
    for message in held:
        try:
            data = json.loads(message.body)
            pairs |= {(str(e), str(p)) for e, p in data["bindings"]}
            holding.update({str(q): dict(args) for q, args in data["holding_queues"].items()})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignored an unreadable binding record in %s (%s: %s); it is replaced",
                        where, type(exc).__name__, exc)
    return pairs, holding


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
