"""Publishing Pulse messages from Python: `tcpulse.publish` and `tcpulse.Publisher`.

Owns: turning (exchange, body, routing key or fields, routes) into what goes on the wire, with
one clear error for what cannot be sent (a key that does not fit the exchange's layout, a body
that is not a JSON object, a route with a wildcard); publishing over one connection with
publisher confirms waited for a batch at a time; the `CC` header that carries the routes
(`route.` + route, as Taskcluster's services send them). `tcpulse publish` goes through here.

On `memory://` the embedded broker takes a message synchronously, so there is nothing to confirm.

Imports kombu only when a Publisher connects; never imports requests or the listener.

Example:
    >>> import tcpulse
    >>> outgoing(tcpulse.QueueEvents.taskFailed, {"status": {}}, routes=["index.a"],
    ...          taskId="t", runId=0, workerGroup="g", workerId="w", provisionerId="p",
    ...          workerType="x", schedulerId="s", taskGroupId="tg").routing_key
    'primary.t.0.g.w.p.x.s.tg._'
"""
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from tcpulse._broker.connection import BrokerAddress, broker_errors, connect_any, resolve_broker
from tcpulse.errors import BrokerFailure, TaskclusterTopicExchangeFailure
from tcpulse._api.exchanges import Exchange, exchange_named, find_exchange

ROUTE_PREFIX = "route."
DEFAULT_BATCH = 100  # messages sent before waiting for their confirms
CONFIRM_TIMEOUT = 30.0  # seconds the broker has to confirm a batch


@dataclass(frozen=True)
class Outgoing:
    """One message ready to publish: full exchange name, concrete key, routes, JSON body."""
    exchange: str
    routing_key: str
    routes: Tuple[str, ...]
    body: Dict[str, Any]

    @property
    def headers(self) -> Dict[str, Any]:
        return {"CC": [ROUTE_PREFIX + r for r in self.routes]} if self.routes else {}


def outgoing(exchange: Union[str, Exchange], body: Any, routing_key: Optional[str] = None,
             routes: Iterable[str] = (), **fields: Any) -> Outgoing:
    """Check and assemble one message. `exchange` is an exchange entry
    (`QueueEvents.taskCompleted`), 'Service.name', or a full exchange name; the key is
    `routing_key`, or built from `fields` by the entry. A key must fit the entry's layout.

    Example:
        >>> outgoing("QueueEvents.taskFailed", {}, routing_key="primary.t")
        Traceback (most recent call last):
        ...
        tcpulse.errors.TaskclusterTopicExchangeFailure: routing key 'primary.t' does not fit QueueEvents.taskFailed (exchange/taskcluster-queue/v1/task-failed): expected at least 9 words (primary.taskId.runId.workerGroup.workerId.provisionerId.workerType.schedulerId.taskGroupId.reserved...), got 2
    """
    entry = _entry(exchange)
    name = entry.exchange if entry is not None else str(exchange)
    if routing_key is not None and fields:
        raise TaskclusterTopicExchangeFailure(
            f"publish to {name}: give either routing_key or the key's fields ({', '.join(sorted(fields))}), not both")
    if routing_key is None:
        if entry is None:
            raise TaskclusterTopicExchangeFailure(
                f"publish to {name}: routing_key is needed (no reference describes this exchange, so "
                "its key cannot be built from fields)")
        routing_key = entry.routing_key(**fields)
    _check_key(routing_key, entry, name)
    return Outgoing(name, routing_key, _routes(routes), _body(body))


def _entry(exchange: Union[str, Exchange]) -> Optional[Exchange]:
    if isinstance(exchange, Exchange):
        return exchange
    if not isinstance(exchange, str) or not exchange:
        raise TypeError(f"exchange must be an exchange entry such as QueueEvents.taskCompleted, "
                        f"'Service.name' or a full exchange name (got {exchange!r})")
    # A full name may be a user's own exchange, which no reference describes.
    return exchange_named(exchange) if exchange.startswith("exchange/") else find_exchange(exchange)


def _check_key(key: Any, entry: Optional[Exchange], name: str) -> None:
    if not isinstance(key, str) or not key:
        raise TaskclusterTopicExchangeFailure(f"publish to {name}: routing_key must be a non-empty string (got {key!r})")
    if "*" in key or "#" in key:
        raise TaskclusterTopicExchangeFailure(
            f"publish to {name}: routing key {key!r} has a wildcard ('*' or '#'); a published key is concrete")
    if entry is not None:
        entry.parse(key)  # raises, naming the layout, when the key does not fit


def _routes(routes: Iterable[str]) -> Tuple[str, ...]:
    if isinstance(routes, str):  # routes="index.a" would otherwise become 7 one-letter routes
        routes = [routes]
    checked: List[str] = []
    for route in routes:
        if not isinstance(route, str) or not route.strip(".") or "*" in route or "#" in route:
            raise TaskclusterTopicExchangeFailure(
                f"routes: each route must be a non-empty string without '*' or '#' (got {route!r})")
        checked.append(route[len(ROUTE_PREFIX):] if route.startswith(ROUTE_PREFIX) else route)
    return tuple(checked)


def _body(body: Any) -> Dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError(f"body must be a dict (a JSON object), as Pulse messages are (got {type(body).__name__})")
    try:
        json.dumps(body)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"body cannot be sent as JSON: {exc}") from None
    return body


class Publisher:
    """Publishes many messages over one connection; publisher confirms are waited for every
    `batch` messages, on `flush()`, and when the `with` block ends (a nacked message or a
    refusal raises `BrokerFailure` there). `broker`: a URL or None (resolved as the listener does).

    Example:
        >>> import kombu, tcpulse
        >>> with kombu.Connection("memory://", transport="tcpulse._broker.broker:Transport") as conn:
        ...     kombu.Exchange("exchange/mine/v1/built", "topic")(conn.channel()).declare()
        >>> with tcpulse.Publisher("memory://") as publisher:
        ...     publisher.publish("exchange/mine/v1/built", {"ok": True}, routing_key="primary.x")
        ...     publisher.flush()
        1
    """

    def __init__(self, broker: Union[str, BrokerAddress, None] = None, *, batch: int = DEFAULT_BATCH,
                 confirm_timeout: float = CONFIRM_TIMEOUT) -> None:
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an integer >= 1 (got {batch!r})")
        self.address = resolve_broker(broker)
        self.batch, self.confirm_timeout = batch, confirm_timeout
        self._connection: Any = None
        self._producer: Any = None
        self._channel: Any = None
        self._sent = self._settled = 0  # settled: acked or nacked
        self._nacked = 0  # nacked since the last flush reported them

    def __repr__(self) -> str:
        return f"Publisher({self.address.redacted!r})"

    def publish(self, exchange: Union[str, Exchange], body: Dict[str, Any], routing_key: Optional[str] = None,
                routes: Iterable[str] = (), **fields: Any) -> None:
        """Send one message (see `tcpulse.publish` for the arguments)."""
        self.send(outgoing(exchange, body, routing_key, routes, **fields))

    def send(self, message: Outgoing) -> None:
        """Send one checked message; waits for confirms once `batch` are outstanding."""
        producer = self._connect()
        try:
            producer.publish(message.body, exchange=message.exchange, routing_key=message.routing_key,
                             headers=message.headers, serializer="json", delivery_mode=2)
        except broker_errors() as exc:
            raise BrokerFailure(f"publish to {message.exchange} failed on {self.address.redacted}: {exc}") from None
        self._sent += 1
        if self._sent - self._settled >= self.batch:
            self.flush()

    def flush(self) -> int:
        """Wait until the broker confirmed every message sent so far; returns how many it has
        settled in all."""
        if self._channel is None or self.address.is_memory:
            self._settled = self._sent  # the embedded broker took them synchronously
            return self._settled
        deadline = time.monotonic() + self.confirm_timeout
        try:
            while self._settled < self._sent:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerFailure(f"{self._sent - self._settled} message(s) not confirmed by "
                                        f"{self.address.redacted} within {self.confirm_timeout:g} s")
                try:
                    self._connection.drain_events(timeout=min(remaining, 1.0))
                except socket.timeout:
                    pass
        except broker_errors() as exc:
            raise BrokerFailure(f"the broker at {self.address.redacted} refused a publish: {exc}") from None
        if self._nacked:
            nacked, self._nacked = self._nacked, 0
            raise BrokerFailure(f"the broker at {self.address.redacted} refused (nacked) {nacked} message(s)")
        return self._settled

    def _connect(self) -> Any:
        if self._producer is not None:
            return self._producer
        import kombu

        options = {} if self.address.is_memory else {"connect_timeout": 10,
                                                     "transport_options": {"confirm_publish": False}}
        try:
            self._connection = connect_any(self.address, **options)
        except Exception as exc:  # kombu/amqp raise many kinds here; all mean "cannot connect"
            raise BrokerFailure(f"cannot connect to the broker at {self.address.redacted}: {exc}") from None
        self._channel = self._connection.channel()
        if not self.address.is_memory:
            self._channel.confirm_select()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
        self._producer = kombu.Producer(self._channel)
        return self._producer

    # Delivery tags count from 1 on a confirming channel: `multiple` settles every tag up to this one.
    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._settled = tag if multiple else self._settled + 1

    def _on_nack(self, tag: int, multiple: bool) -> None:
        self._nacked += (tag - self._settled) if multiple else 1
        self._on_ack(tag, multiple)

    def close(self) -> None:
        """Release the connection (without waiting for confirms: `flush()` first for that)."""
        connection, self._connection, self._producer, self._channel = self._connection, None, None, None
        if connection is not None:
            connection.release()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()


def publish(exchange: Union[str, Exchange], body: Dict[str, Any], routing_key: Optional[str] = None,
            routes: Iterable[str] = (), broker: Union[str, BrokerAddress, None] = None, **fields: Any) -> None:
    """Publish one message and wait for the broker's confirm. `exchange`: an exchange entry
    (`QueueEvents.taskCompleted`, whose key the keyword `fields` build), 'Service.name', or a full
    exchange name with `routing_key`; `routes` travel in the CC header (without `route.`).

    Example (the exchange must exist, on the embedded broker as on RabbitMQ):
        >>> import tcpulse
        >>> tcpulse.publish("exchange/mine/v1/nobody", {"ok": True}, routing_key="primary.x",
        ...                 routes=["index.mine.latest"], broker="memory://")
        Traceback (most recent call last):
        ...
        tcpulse.errors.BrokerFailure: publish to exchange/mine/v1/nobody failed on memory://: NOT_FOUND - no exchange 'exchange/mine/v1/nobody' in vhost '/'
    """
    with Publisher(broker) as publisher:
        publisher.publish(exchange, body, routing_key, routes, **fields)
