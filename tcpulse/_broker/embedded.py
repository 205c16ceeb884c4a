"""The state of the embedded broker: exchanges, bindings and queues, routed like RabbitMQ.

Owns: `Broker`, one in-process virtual host (shared by every kombu Connection of the process
through `broker_for`), with RabbitMQ's semantics: topic matching by
`tcpulse._listen.dispatch.topic_matches` (`#` matches zero words), routing by the primary key and every
key of the `CC`/`BCC` headers (each queue reached at most once; BCC removed; a header that is not
a list refused with RabbitMQ's PRECONDITION_FAILED, items that are not text ignored), `x-message-ttl`
and per-message `expiration` (expiring at the head of a queue), dead-lettering on expiry,
overflow and reject-without-requeue through `x-dead-letter-exchange` /
`x-dead-letter-routing-key` with the `x-death` header, `x-max-length` with `x-overflow`, `x-expires`,
quorum queues' `x-queue-type` (durable only) and `x-delivery-limit` (a message returned unacked
more often than the limit is dead-lettered with reason `delivery_limit`; `x-delivery-count`
counts the returns), and RabbitMQ's NOT_FOUND / PRECONDITION_FAILED errors. Every exchange of the shipped references
exists from the start, as on Pulse, where the Taskcluster services have declared them.

`tcpulse._broker.broker` adapts this to kombu. Imports neither kombu nor requests (only py-amqp's
exception classes, so that callers catch the same errors as on RabbitMQ).

Example:
    >>> broker = Broker("/doc-state")
    >>> _ = broker.declare_queue("q", {}, {}, owner=None)
    >>> broker.bind("q", "exchange/taskcluster-queue/v1/task-completed", "primary.#")
    >>> broker.route("exchange/taskcluster-queue/v1/task-completed", ["primary"])
    ['q']
"""
import copy
import datetime
import itertools
import threading
import time
from collections import deque
from queue import Empty
from typing import Any, Deque, Dict, List, Optional, Tuple

from amqp import exceptions as amqp_errors

from tcpulse._listen.dispatch import topic_matches
from tcpulse.references import active_set

Payload = Dict[str, Any]
EXCHANGE_TYPES = ("topic", "direct", "fanout")
_QUEUE_FLAGS = ("durable", "exclusive", "auto_delete")
QUEUE_TYPES = ("classic", "quorum")
DELIVERY_COUNT = "x-delivery-count"  # the header of a quorum queue's delivery: returns so far


# RabbitMQ's names for header value types, as its refusal of a CC/BCC header that is no array says.
_AMQP_TYPES = ((bool, "bool"), (int, "signedint"), (float, "double"), ((str, bytes), "longstr"),
               (dict, "table"), (type(None), "void"))


def _header_keys(headers: Payload, name: str) -> List[str]:
    """The routing keys in header `name` (CC or BCC) as RabbitMQ reads them: an array, whose
    text items are keys and whose other items are ignored; any other value refuses the publish."""
    value = headers.get(name, [])
    if not isinstance(value, (list, tuple)):
        kind = next((label for types, label in _AMQP_TYPES if isinstance(value, types)), type(value).__name__)
        raise amqp_errors.PreconditionFailed(
            f'PRECONDITION_FAILED - invalid message: {{unacceptable_type_in_header,"{name}",{kind}}}', reply_code=406)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value if isinstance(v, (str, bytes))]


def _matches(kind: str, pattern: str, key: str) -> bool:
    if kind == "topic":
        return topic_matches(pattern, key)
    return kind == "fanout" or pattern == key


class _Queue:
    """A queue's ready messages (`[deadline, payload]`, oldest first) and its declaration."""

    def __init__(self, name: str, flags: Dict[str, Any], arguments: Dict[str, Any], owner: Any):
        self.name = name
        self.flags = flags
        self.arguments = arguments
        self.owner = owner if flags.get("exclusive") else None
        self.messages: Deque[List[Any]] = deque()
        self.consumers = 0
        self.quorum = arguments.get("x-queue-type") == "quorum"
        self.used_at = time.monotonic()  # for x-expires: declared, read from or consumed

    def unused_too_long(self, now: float) -> bool:
        expires = self.arguments.get("x-expires")
        return expires is not None and self.consumers == 0 and now - self.used_at >= float(expires) / 1000.0

    def ttl_ms(self, payload: Payload) -> Optional[float]:
        ttls = [float(t) for t in (self.arguments.get("x-message-ttl"),
                                   payload["properties"].get("expiration")) if t is not None]
        return min(ttls) if ttls else None


class Broker:
    """The state of one embedded virtual host: exchanges, bindings and queues, behind one lock.

    Example:
        >>> broker = Broker("/doc-state")
        >>> "exchange/taskcluster-queue/v1/task-completed" in broker.exchanges
        True
    """

    def __init__(self, vhost: str):
        self.vhost = vhost
        self.cond = threading.Condition(threading.RLock())
        self.version = 0  # bumped on every change a waiting consumer may care about
        self.exchanges: Dict[str, Dict[str, Any]] = {}
        self.bindings: Dict[str, List[Tuple[str, str]]] = {}
        self.queues: Dict[str, _Queue] = {}
        self._tags = itertools.count(1)  # delivery tags: unique in the process, taken under the lock
        for name in ("amq.topic", "amq.direct", "amq.fanout"):
            self.declare_exchange(name, name[4:], {"durable": True})
        for reference in active_set().references("exchanges"):  # the API references stay unread
            for entry in reference.entries:
                self.declare_exchange(reference.exchange_prefix + entry.exchange, "topic",
                                      {"durable": True})

    # -- declarations --------------------------------------------------------------------------
    def declare_exchange(self, name: str, kind: str, flags: Dict[str, Any], passive: bool = False) -> None:
        with self.cond:
            if passive or name in self.exchanges:
                self._check_exchange(name, kind, passive)
                return
            if kind not in EXCHANGE_TYPES:
                raise amqp_errors.AMQPNotImplementedError(
                    f"NOT_IMPLEMENTED - exchange type {kind!r} (the embedded broker has {', '.join(EXCHANGE_TYPES)})")
            self.exchanges[name] = {"type": kind, **flags}
            self.bindings[name] = []

    def _check_exchange(self, name: str, kind: str, passive: bool) -> None:
        if name not in self.exchanges:
            raise amqp_errors.NotFound(f"NOT_FOUND - no exchange {name!r} in vhost {self.vhost!r}", reply_code=404)
        if not passive and self.exchanges[name]["type"] != kind:
            raise amqp_errors.PreconditionFailed(
                f"PRECONDITION_FAILED - inequivalent arg 'type' for exchange {name!r} in vhost "
                f"{self.vhost!r}: received {kind!r} but current is {self.exchanges[name]['type']!r}",
                reply_code=406)

    def delete_exchange(self, name: str) -> None:
        with self.cond:
            self.exchanges.pop(name, None)
            self.bindings.pop(name, None)

    def declare_queue(self, name: str, flags: Dict[str, Any], arguments: Dict[str, Any],
                      owner: Any, passive: bool = False) -> Tuple[int, int]:
        with self.cond:
            self._expire_all(time.monotonic())
            queue = self.queues.get(name)
            if queue is None and passive:
                raise amqp_errors.NotFound(f"NOT_FOUND - no queue {name!r} in vhost {self.vhost!r}", reply_code=404)
            if queue is None:
                _check_type(name, self.vhost, flags, arguments)
                queue = self.queues[name] = _Queue(name, flags, dict(arguments), owner)
                return 0, 0
            if queue.owner is not None and queue.owner is not owner:
                raise amqp_errors.ResourceLocked(
                    f"RESOURCE_LOCKED - cannot obtain exclusive access to locked queue {name!r} in vhost "
                    f"{self.vhost!r}", reply_code=405)
            if not passive:
                self._check_equivalent(queue, flags, arguments)
            queue.used_at = time.monotonic()
            return len(queue.messages), queue.consumers

    def _check_equivalent(self, queue: _Queue, flags: Dict[str, Any], arguments: Dict[str, Any]) -> None:
        current = {**{k: bool(queue.flags.get(k)) for k in _QUEUE_FLAGS}, **queue.arguments}
        wanted = {**{k: bool(flags.get(k)) for k in _QUEUE_FLAGS}, **arguments}
        for arg in sorted(set(current) | set(wanted)):
            if current.get(arg) != wanted.get(arg):
                raise amqp_errors.PreconditionFailed(
                    f"PRECONDITION_FAILED - inequivalent arg {arg!r} for queue {queue.name!r} in vhost "
                    f"{self.vhost!r}: received {wanted.get(arg)!r} but current is {current.get(arg)!r}",
                    reply_code=406)

    def delete_queue(self, name: str, if_empty: bool = False) -> int:
        with self.cond:
            queue = self.queues.get(name)
            if queue is None or (if_empty and queue.messages):
                return 0
            del self.queues[name]
            for table in self.bindings.values():
                table[:] = [b for b in table if b[1] != name]
            return len(queue.messages)

    def bind(self, queue: str, exchange: str, pattern: str, unbind: bool = False) -> None:
        with self.cond:
            if queue not in self.queues:
                raise amqp_errors.NotFound(f"NOT_FOUND - no queue {queue!r} in vhost {self.vhost!r}", reply_code=404)
            if unbind and exchange not in self.exchanges:
                return  # as RabbitMQ: a binding to an exchange that is gone is gone too
            self._check_exchange(exchange, "", passive=True)
            table = self.bindings[exchange]
            if unbind and (pattern, queue) in table:
                table.remove((pattern, queue))
            elif not unbind and (pattern, queue) not in table:
                table.append((pattern, queue))

    def purge(self, name: str) -> int:
        with self.cond:
            queue = self.queues.get(name)
            count = len(queue.messages) if queue else 0
            if queue:
                queue.messages.clear()
            return count

    # -- routing -------------------------------------------------------------------------------
    def route(self, exchange: str, keys: List[str]) -> List[str]:
        """The queues a message published to `exchange` with routing `keys` reaches, each once."""
        if not exchange:  # the default exchange: the key names the queue
            return [key for key in keys[:1] if key in self.queues]
        kind = self.exchanges[exchange]["type"]
        found: Dict[str, None] = {}
        for pattern, queue in self.bindings[exchange]:
            if queue not in found and any(_matches(kind, pattern, key) for key in keys):
                found[queue] = None
        return list(found)

    def publish(self, payload: Payload, exchange: str, routing_key: str) -> Tuple[int, int]:
        """Route `payload` and enqueue one copy per queue reached; returns (queues reached, of
        those the ones that refused it: full with `x-overflow: reject-publish`, where RabbitMQ
        nacks a confirmed publish)."""
        headers = payload.get("headers") or {}
        keys = [routing_key, *_header_keys(headers, "CC"), *_header_keys(headers, "BCC")]
        # A copy without BCC: the dict is the publisher's own, which RabbitMQ would not touch.
        payload["headers"] = {k: v for k, v in headers.items() if k != "BCC"}
        with self.cond:
            if exchange:
                self._check_exchange(exchange, "", passive=True)
            self._expire_all(time.monotonic())
            queues = self.route(exchange, keys)
            taken = [self._enqueue(self.queues[name], _copy(payload), time.monotonic()) for name in queues]
            return len(queues), taken.count(False)

    def _enqueue(self, queue: _Queue, payload: Payload, now: float) -> bool:
        """Add `payload` to `queue` unless its length limit refuses it; say whether it did."""
        ttl = queue.ttl_ms(payload)
        limit = queue.arguments.get("x-max-length")
        overflow = queue.arguments.get("x-overflow", "drop-head")
        if limit is not None and overflow != "drop-head" and len(queue.messages) >= limit:
            if overflow == "reject-publish-dlx":
                self._dead_letter(queue, payload, "maxlen", now)
            return False
        queue.messages.append([None if ttl is None else now + ttl / 1000.0, payload])
        while limit is not None and len(queue.messages) > limit:
            self._dead_letter(queue, queue.messages.popleft()[1], "maxlen", now)
        self.version += 1
        self.cond.notify_all()
        return True

    def _dead_letter(self, queue: _Queue, payload: Payload, reason: str, now: float) -> None:
        dlx = queue.arguments.get("x-dead-letter-exchange")
        if dlx is None or (dlx and dlx not in self.exchanges):
            return  # RabbitMQ drops it too
        info = payload["properties"]["delivery_info"]
        headers = payload.setdefault("headers", {})
        keys = [info["routing_key"], *_header_keys(headers, "CC")]
        expiration = payload["properties"].pop("expiration", None)
        _record_death(headers, queue.name, reason, info["exchange"], keys, expiration)
        if queue.arguments.get("x-dead-letter-routing-key") is not None:
            keys = [queue.arguments["x-dead-letter-routing-key"]]
            headers.pop("CC", None)
        info.update(exchange=dlx, routing_key=keys[0], redelivered=False)
        for name in self.route(dlx, keys):
            if not _is_cycle(headers, name):
                self._enqueue(self.queues[name], _copy(payload), now)

    # -- consuming -----------------------------------------------------------------------------
    def get(self, name: str) -> Payload:
        """Take the oldest live message of queue `name`; raises `queue.Empty` when there is none."""
        with self.cond:
            self._expire_all(time.monotonic())
            queue = self.queues.get(name)
            if queue is not None:
                queue.used_at = time.monotonic()
            if queue is None or not queue.messages:
                raise Empty()
            deadline, payload = queue.messages.popleft()
            if queue.quorum:
                payload.setdefault("headers", {}).setdefault(DELIVERY_COUNT, 0)
            payload["origin"] = (name, deadline)
            payload["properties"]["delivery_tag"] = next(self._tags)
            return payload

    def requeue(self, payload: Payload) -> None:
        """Put a delivered but unacked message back at the head of the queue it came from."""
        name, deadline = payload.pop("origin")
        payload["properties"]["delivery_info"]["redelivered"] = True
        with self.cond:
            queue = self.queues.get(name)
            if queue is None:
                return
            if queue.quorum:
                headers = payload.setdefault("headers", {})
                headers[DELIVERY_COUNT] = headers.get(DELIVERY_COUNT, 0) + 1
                limit = queue.arguments.get("x-delivery-limit")
                if limit is not None and headers[DELIVERY_COUNT] > limit:
                    del headers[DELIVERY_COUNT]
                    self._dead_letter(queue, payload, "delivery_limit", time.monotonic())
                    return
            queue.messages.appendleft([deadline, payload])
            self.notify()

    def reject(self, payload: Payload) -> None:
        """A reject without requeue: dead-letter it if its queue says where to."""
        name, _ = payload.pop("origin")
        with self.cond:
            if name in self.queues:
                self._dead_letter(self.queues[name], payload, "rejected", time.monotonic())

    def notify(self) -> None:
        with self.cond:
            self.version += 1
            self.cond.notify_all()

    def size(self, name: str) -> int:
        with self.cond:
            self._expire_all(time.monotonic())
            queue = self.queues.get(name)
            return len(queue.messages) if queue else 0

    def depths(self) -> Dict[str, int]:
        """Ready messages per queue, after expiring what is due (for "is anything pending?")."""
        with self.cond:
            self._expire_all(time.monotonic())
            return {name: len(queue.messages) for name, queue in self.queues.items()}

    def _expire_all(self, now: float) -> None:
        # RabbitMQ expires messages (and unused x-expires queues) in the background, whether or
        # not anyone reads the queue.
        for queue in list(self.queues.values()):
            if queue.unused_too_long(now):
                self.delete_queue(queue.name)
            else:
                self._expire(queue, now)

    def _expire(self, queue: _Queue, now: float) -> None:
        # Like RabbitMQ, only messages at the head of a queue expire.
        while queue.messages and queue.messages[0][0] is not None and queue.messages[0][0] <= now:
            self._dead_letter(queue, queue.messages.popleft()[1], "expired", now)

    def wait(self, seen: int, timeout: Optional[float]) -> None:
        """Block until the state changes after version `seen`, a message expires, or `timeout`."""
        end = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while self.version == seen:
                now = time.monotonic()
                self._expire_all(now)
                heads = [q.messages[0][0] for q in self.queues.values()
                         if q.messages and q.messages[0][0] is not None]
                limits = [t - now for t in (end, min(heads, default=None)) if t is not None]
                if self.version != seen or (limits and min(limits) <= 0):
                    return
                self.cond.wait(min(limits) if limits else None)

    def drop_owner(self, owner: Any) -> None:
        """Delete the exclusive queues that the closing connection `owner` declared."""
        with self.cond:
            for name in [n for n, q in self.queues.items() if q.owner is owner]:
                self.delete_queue(name)


def _check_type(name: str, vhost: str, flags: Dict[str, Any], arguments: Dict[str, Any]) -> None:
    """Refuse what RabbitMQ refuses of a queue type: a quorum queue that is not durable, or is
    exclusive or auto-delete; a delivery limit on a classic queue."""
    kind = arguments.get("x-queue-type", "classic")
    if kind not in QUEUE_TYPES:
        raise amqp_errors.PreconditionFailed(
            f"PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue {name!r} in vhost {vhost!r}: "
            f"{kind!r} is not one of {', '.join(QUEUE_TYPES)}", reply_code=406)
    bad = [prop for prop, flag, wanted in (("non-durable", "durable", False), ("exclusive", "exclusive", True),
                                           ("auto-delete", "auto_delete", True))
           if kind == "quorum" and bool(flags.get(flag)) == wanted]
    if bad:
        raise amqp_errors.PreconditionFailed(
            f"PRECONDITION_FAILED - invalid property {bad[0]!r} for queue {name!r} in vhost {vhost!r}", reply_code=406)
    if kind == "classic" and "x-delivery-limit" in arguments:
        raise amqp_errors.PreconditionFailed(
            f"PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue {name!r} in vhost {vhost!r} of "
            "queue type rabbit_classic_queue", reply_code=406)


def _copy(payload: Payload) -> Payload:
    """A copy one queue may change (delivery info, headers) without touching the others';
    the body is bytes or str, so it is shared."""
    properties = dict(payload["properties"])
    properties["delivery_info"] = dict(properties.get("delivery_info") or {})
    headers = payload.get("headers")
    return {**payload, "properties": properties, "headers": copy.deepcopy(headers) if headers else {}}


def _record_death(headers: Dict[str, Any], queue: str, reason: str, exchange: str,
                  keys: List[str], expiration: Optional[str]) -> None:
    """Update the `x-death` header as RabbitMQ does: one entry per (queue, reason), newest first."""
    deaths = list(headers.get("x-death") or ())
    entry = next((d for d in deaths if d["queue"] == queue and d["reason"] == reason), None)
    if entry is None:
        entry = {"count": 0, "reason": reason, "queue": queue, "exchange": exchange, "routing-keys": keys}
        if expiration is not None:
            entry["original-expiration"] = expiration
    else:
        deaths.remove(entry)
    entry["count"] += 1
    entry["time"] = datetime.datetime.utcnow().replace(microsecond=0)
    headers["x-death"] = [entry, *deaths]
    for key, value in (("reason", reason), ("queue", queue), ("exchange", exchange)):
        headers.setdefault(f"x-first-death-{key}", value)


def _is_cycle(headers: Dict[str, Any], queue: str) -> bool:
    # RabbitMQ drops a message dead-lettered back into a queue it died in, unless a
    # consumer rejected it somewhere on the way (then the cycle is the consumer's choice).
    deaths = headers.get("x-death") or ()
    return any(d["queue"] == queue for d in deaths) and all(d["reason"] != "rejected" for d in deaths)


_BROKERS: Dict[str, Broker] = {}
_BROKERS_LOCK = threading.Lock()


def broker_for(vhost: str) -> Broker:
    """The process-wide embedded broker of virtual host `vhost` (created on first use).

    Example:
        >>> broker_for("/doc") is broker_for("/doc")
        True
    """
    with _BROKERS_LOCK:
        if vhost not in _BROKERS:
            _BROKERS[vhost] = Broker(vhost)
        return _BROKERS[vhost]
