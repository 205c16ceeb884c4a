"""`tcpulse tail`: watch what arrives on an exchange, as a terminal Pulse Inspector.

Owns: the tail's own queue (a fresh name under the user's prefix, exclusive and auto-delete, so
the broker removes it, bindings and all, the moment the tail's connection ends, however it
ends), its bindings, and the readable line printed per message (`describe`): time, exchange,
the parsed key fields, the routes, a short body summary. `--json` lines are the recording
format instead (`tcpulse._ops.recording`), so `listen --replay` takes them.

Why not a server-named queue (`amq.gen-...`): Pulse lets a user declare only `queue/<user>/...`,
so the name is made here, random, under that prefix.

Imports kombu only inside `tail`; never imports requests or the listener.

Example:
    >>> print(describe("exchange/taskcluster-queue/v1/task-failed", "primary.t.0.wg.w.p.x.s.g._",
    ...                ["index.a"], {"status": {"state": "failed"}}, received=0))
    00:00:00 QueueEvents.taskFailed taskId=t runId=0 workerGroup=wg workerId=w provisionerId=p workerType=x schedulerId=s taskGroupId=g routes=index.a {"status":{"state":"failed"}}
"""
import json
import sys
import time
import uuid
from typing import Any, Callable, Dict, IO, List, Optional, Sequence, Tuple

from tcpulse.errors import TaskclusterTopicExchangeFailure
from tcpulse._api.exchanges import exchange_named
from tcpulse._listen.outcome import Poison, decode_body
from tcpulse._ops.recording import Recorded, drain_until

BODY_SUMMARY = 100  # characters of the body shown on a line
PREFETCH = 50


def tail_queue_name(user: str) -> str:
    """A queue name of the tail's own, under the user's prefix.

    Example:
        >>> tail_queue_name("alice").startswith("queue/alice/tail-")
        True
    """
    return f"queue/{user}/tail-{uuid.uuid4().hex[:12]}"


def describe(exchange: str, routing_key: str, routes: Sequence[str], body: Dict[str, Any],
             received: Optional[float] = None) -> str:
    """One readable line: UTC time, the exchange ('Service.name' when the references know it),
    the key's fields (the raw key when it does not fit), the routes, the start of the body."""
    when = time.strftime("%H:%M:%S", time.gmtime(time.time() if received is None else received))
    entry = exchange_named(exchange)
    parts = [when, f"{entry.service}.{entry.name}" if entry is not None else exchange]
    parts.append(_fields_text(entry, routing_key))
    if routes:
        parts.append("routes=" + ",".join(routes))
    text = json.dumps(body, separators=(",", ":"), sort_keys=False, ensure_ascii=False)
    parts.append(text if len(text) <= BODY_SUMMARY else text[:BODY_SUMMARY - 1] + "…")
    return " ".join(parts)


def _fields_text(entry: Any, routing_key: str) -> str:
    if entry is None:
        return f"key={routing_key}"
    try:
        values = entry.parse(routing_key)
    except TaskclusterTopicExchangeFailure:
        return f"key={routing_key}"
    constants = {f.name for f in entry.fields if f.constant is not None}
    return " ".join(f"{name}={value}" for name, value in values.items()
                    if value is not None and name not in constants) or f"key={routing_key}"


class _Printer:
    """Prints each message as a line (or a recording line), up to `count`, acking every one."""

    def __init__(self, out: IO[str], as_json: bool, count: Optional[int]) -> None:
        self.out, self.as_json, self.count, self.printed = out, as_json, count, 0

    def full(self) -> bool:
        return self.count is not None and self.printed >= self.count

    def on_message(self, message: Any) -> None:
        info = message.delivery_info
        if not self.full():
            try:
                recorded = Recorded.from_delivery(decode_body(message.body), info, message.headers)
            except Poison as exc:
                print(f"skipped a message from {info.get('exchange')} {info.get('routing_key')!r}: {exc}",
                      file=sys.stderr, flush=True)
            else:
                line = recorded.to_json() if self.as_json else describe(
                    recorded.exchange, recorded.routing_key, recorded.routes, recorded.body)
                print(line, file=self.out, flush=True)
                self.printed += 1
        message.ack()


def tail(connection: Any, user: str, bindings: Sequence[Tuple[str, str]], out: IO[str], *, as_json: bool = False,
         count: Optional[int] = None, timeout: Optional[float] = None,
         ready: Optional[Callable[[str], None]] = None) -> int:
    """Bind a queue of the tail's own to `bindings` ((exchange, pattern) pairs; the exchanges
    must exist), print what arrives until `count` messages or `timeout` seconds, and return how
    many were printed; Ctrl-C (KeyboardInterrupt) ends it too. `ready(queue_name)` is called
    once consuming. The queue goes away with
    the connection (and is deleted here when the tail ends normally).

    Example:
        >>> import io, kombu
        >>> with kombu.Connection("memory://", transport="tcpulse._broker.broker:Transport") as conn:
        ...     kombu.Exchange("exchange/doc/tail", "topic")(conn.channel()).declare()
        ...     tail(conn, "guest", [("exchange/doc/tail", "#")], io.StringIO(), timeout=0.1)
        0
    """
    import kombu

    channel = connection.channel()
    name = tail_queue_name(user)
    queue = kombu.Queue(name, exclusive=True, auto_delete=True, durable=False, channel=channel)
    queue.declare()
    for exchange, pattern in bindings:
        channel.exchange_declare(exchange, type="topic", passive=True)
        queue.bind_to(exchange=exchange, routing_key=pattern)
    printer = _Printer(out, as_json, count)
    channel.basic_qos(0, PREFETCH, False)
    try:
        with kombu.Consumer(channel, [queue], on_message=printer.on_message):
            if ready:
                ready(name)
            drain_until(connection, printer.full, None if timeout is None else time.monotonic() + timeout)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how an open-ended tail ends
    finally:
        _delete(channel, name)
    return printer.printed


def _delete(channel: Any, name: str) -> None:
    try:
        channel.queue_delete(name)
    except Exception:  # noqa: BLE001 - exclusive and auto-delete: the broker removes it with the connection
        pass


def tail_bindings(exchange: str, fields: Dict[str, str], routes: List[str]) -> List[Tuple[str, str]]:
    """What `tcpulse tail EXCHANGE [field=value ...] [--route P ...]` binds: the primary-key
    pattern the fields give (every key when no field and no route is given), plus `route.P`
    for each route.

    Example:
        >>> tail_bindings("QueueEvents.taskFailed", {"taskGroupId": "g"}, ["index.#"])
        [('exchange/taskcluster-queue/v1/task-failed', 'primary.*.*.*.*.*.*.*.g.#'), ('exchange/taskcluster-queue/v1/task-failed', 'route.index.#')]
        >>> tail_bindings("exchange/mine/v1/x", {}, [])
        [('exchange/mine/v1/x', '#')]
    """
    from tcpulse._api.exchanges import find_exchange

    entry = exchange_named(exchange) if exchange.startswith("exchange/") else find_exchange(exchange)
    name = entry.exchange if entry is not None else exchange
    pairs: List[Tuple[str, str]] = []
    if fields:
        if entry is None:
            raise TaskclusterTopicExchangeFailure(
                f"{exchange}: no reference describes this exchange, so it has no fields; give --route or no fields")
        pairs.append((name, entry(**fields).routing_key_pattern))
    elif not routes:
        pairs.append((name, "#"))
    pairs.extend((name, "route." + (r[len("route."):] if r.startswith("route.") else r)) for r in routes)
    return pairs
