"""`tcpulse status NAME`: what the broker holds for a listener, read without changing anything.

Owns: gathering a listener's state as plain data (`listener_status`): its queue (messages ready,
consumers, type), its retry holding queues, its isolation queue (messages that came back unacked
and wait to run alone, `tcpulse._listen.isolation`), its dead letters (how many, and the reasons
of the newest), the bindings its binding record holds (`tcpulse._listen.stale`) and when that
record was written; and the text form of it (`render`).

What a Pulse user can learn over AMQP bounds what is shown: a passive declare gives the ready
messages and the consumers, not the unacknowledged ones (those are in each process's `/metrics`
and on its health page), so `unacked` is null. RabbitMQ tells a queue's type only by refusing a
declaration that differs from it, so the type is probed on the binding record's queue, which is
declared with the type's arguments alone. Records and dead letters are read unacked on a channel
that is then closed, which puts them back where they were.

Imports kombu through `tcpulse._ops.maintenance`; never requests or the listener.

Example:
    >>> print(render({"listener": "w", "queue": "queue/u/w", "type": "classic", "messages": 2,
    ...               "unacked": None, "consumers": 1, "holding_queues": [],
    ...               "isolation": {"queue": "queue/u/w/isolation", "messages": 1},
    ...               "dead_letters": {"queue": "queue/u/w/dead-letter", "count": 0, "newest": []},
    ...               "bindings": [], "bindings_written_at": None}))
    listener w: queue queue/u/w (classic)
      messages ready 2, consumers 1
      holding queues: none
      waiting to run alone (came back unacked): 1 in queue/u/w/isolation
      dead letters: 0 in queue/u/w/dead-letter
      bindings: no binding record (has the listener run with this version of tcpulse?)
"""
import json
from typing import Any, Dict, List, Optional, Tuple

from amqp.exceptions import NotFound, PreconditionFailed

from tcpulse._listen.deadletters import list_dead_letters
from tcpulse._listen.delivery import Delivery
from tcpulse._listen.layout import channel_on as _channel
from tcpulse._listen.layout import layout_lock, peek_record
from tcpulse._listen.outcome import RetryPolicy
from tcpulse._listen.stale import record_queue
from tcpulse._listen.topology import ListenerNames, queue_arguments

NEWEST_REASONS = 3  # dead-letter reasons shown
PEEK_LIMIT = 1000  # dead letters read to find the newest (the queue keeps at most 5,000)


def listener_status(connection: Any, user: str, name: str) -> Dict[str, Any]:
    """The state of listener `name` of Pulse user `user` as plain data (the `--json` form):
    keys `listener`, `queue`, `type`, `messages`, `unacked`, `consumers`, `holding_queues`,
    `isolation` ({queue, messages}; messages null without the queue), `dead_letters` ({queue,
    count, newest}), `bindings` ([[exchange, pattern], ...]) and `bindings_written_at`. A listener that never ran is a `LookupError`."""
    delivery = Delivery(ListenerNames.of(user, name).queue, RetryPolicy())
    found = _depth(connection, delivery.queue)
    if found is None:
        raise LookupError(f"user {user!r} has no queue {delivery.queue!r} (has listener {name!r} run on this broker?)")
    with layout_lock(connection, delivery.names):
        record = peek_record(connection, delivery.names)
    held, pairs, recorded_holding = record.held, record.pairs, record.holding
    holding = []
    for queue in sorted(set(delivery.holding_queues()) | set(recorded_holding)):
        depth = _depth(connection, queue)
        if depth is not None:
            holding.append({"queue": queue, "messages": depth[0]})
    isolation = delivery.names.isolation_queue
    isolated = _depth(connection, isolation)
    return {"listener": name, "queue": delivery.queue, "type": _queue_type(connection, record_queue(delivery.queue)),
            "messages": found[0], "unacked": None, "consumers": found[1], "holding_queues": holding,
            "isolation": {"queue": isolation, "messages": None if isolated is None else isolated[0]},
            "dead_letters": _dead_letters(connection, delivery),
            "bindings": [list(pair) for pair in sorted(pairs)], "bindings_written_at": _written_at(held)}


def _depth(connection: Any, queue: str) -> Optional[Tuple[int, int]]:
    """(messages ready, consumers) of `queue`, or None when there is no such queue."""
    with _channel(connection) as channel:
        try:
            _, ready, consumers = channel.queue_declare(queue, passive=True)
        except NotFound:
            return None
    return ready, consumers


def _queue_type(connection: Any, record: str) -> Optional[str]:
    if _depth(connection, record) is None:
        return None  # no record queue to probe: the listener ran before records existed
    try:
        with _channel(connection) as channel:
            channel.queue_declare(record, durable=True, auto_delete=False, arguments=queue_arguments("quorum"))
        return "quorum"
    except PreconditionFailed:
        return "classic"


def _dead_letters(connection: Any, delivery: Delivery) -> Dict[str, Any]:
    depth = _depth(connection, delivery.dead_letter_queue)
    count = depth[0] if depth else 0
    newest: List[Dict[str, Any]] = []
    if count:
        records = list_dead_letters(connection, delivery.queue, min(count, PEEK_LIMIT))
        newest = [{"reason": r["reason"], "dead_lettered_at": r["dead_lettered_at"], "exchange": r["exchange"],
                   "routing_key": r["routing_key"]} for r in reversed(records[-NEWEST_REASONS:])]
    return {"queue": delivery.dead_letter_queue, "count": count, "newest": newest}


def _written_at(held: List[Any]) -> Optional[str]:
    times = []
    for message in held:
        try:
            times.append(str(json.loads(message.body)["written_at"]))
        except (ValueError, TypeError, KeyError):
            continue  # a record from before records carried their time
    return max(times) if times else None


def render(status: Dict[str, Any]) -> str:
    """The human-readable form of `listener_status`'s data."""
    lines = [f"listener {status['listener']}: queue {status['queue']} ({status['type'] or 'type unknown'})",
             f"  messages ready {status['messages']}, consumers {status['consumers']}"]
    holding = ", ".join(f"{h['queue']} {h['messages']}" for h in status["holding_queues"]) or "none"
    lines.append(f"  holding queues: {holding}")
    isolation = status["isolation"]
    if isolation["messages"] is not None:
        lines.append(f"  waiting to run alone (came back unacked): {isolation['messages']} in {isolation['queue']}")
    dead = status["dead_letters"]
    lines.append(f"  dead letters: {dead['count']} in {dead['queue']}")
    lines.extend(f"    {d['dead_lettered_at'] or '?'} {d['reason']}" for d in dead["newest"])
    if status["bindings_written_at"] is None and not status["bindings"]:
        lines.append("  bindings: no binding record (has the listener run with this version of tcpulse?)")
    else:
        lines.append(f"  bindings (recorded {status['bindings_written_at'] or 'at an unknown time'}):")
        lines.extend(f"    {exchange} {pattern}" for exchange, pattern in status["bindings"])
    return "\n".join(lines)
