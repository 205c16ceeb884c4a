"""The kombu transport behind `memory://` URLs: `transport="tcpulse._broker.broker:Transport"`.

Owns: adapting kombu's virtual transport to the in-process `tcpulse._broker.embedded.Broker`, so that
a listener, a publisher and DELIVERY's retry topology all work in one process with RabbitMQ's
routing (kombu's stock memory transport misses `primary` against `primary.#` and ignores CC
headers): channels declare, bind, publish and get through the shared broker; a reject without
requeue dead-letters; a requeue or a closed channel puts unacked messages back at the head of
their own queue (not re-routed); consumers wait on the broker instead of polling every second;
exclusive queues go away with their connection, auto-delete queues with their last consumer, and a
consumer whose queue is deleted under it is cancelled (ConsumerCancelled), as RabbitMQ does.

Must not import: requests, or the modules built on it (connection, listener, delivery).

Example:
    >>> import kombu
    >>> with kombu.Connection("memory:///doc", transport=Transport) as conn:
    ...     channel = conn.channel()
    ...     x = kombu.Exchange("exchange/taskcluster-queue/v1/task-completed", type="topic")
    ...     q = kombu.Queue("watch", x, routing_key="primary.#", channel=channel)
    ...     _ = q.declare()
    ...     _ = kombu.Producer(channel).publish({"n": 1}, exchange=x, routing_key="primary")
    ...     q.get().payload
    {'n': 1}
"""
import socket
import time
import uuid
from queue import Empty
import collections
from typing import Any, Dict, Optional, Tuple

from amqp import exceptions as amqp_errors
from amqp.protocol import queue_declare_ok_t
from kombu.exceptions import ChannelError
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments

from tcpulse._broker.embedded import EXCHANGE_TYPES, Broker, Payload, broker_for
from tcpulse._listen.wire import refuse_compression

class _QoS(virtual.QoS):
    """Acks release a message; a reject without requeue dead-letters it, as on RabbitMQ."""

    def ack(self, delivery_tag: str) -> None:
        super().ack(delivery_tag)
        self.channel.broker.notify()  # a consumer may be waiting for prefetch room

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        payload = self._delivered[delivery_tag].raw
        (self.channel.broker.requeue if requeue else self.channel.broker.reject)(payload)
        self._quick_ack(delivery_tag)
        self.channel.broker.notify()


class _Message(virtual.Message):
    """A delivered message that remembers its raw form, so it can go back to its own queue."""

    def __init__(self, payload: Payload, channel: Any = None, **kwargs: Any):
        headers = payload.get("headers")
        if headers and "compression" in headers:  # before kombu inflates it, as on RabbitMQ
            refuse_compression(headers, payload["properties"])
        super().__init__(payload, channel=channel, **kwargs)
        self.raw = payload


class _Channel(virtual.Channel):
    """A kombu channel on the embedded broker; every operation goes to the shared `Broker`."""

    QoS = _QoS
    Message = _Message
    do_restore = True
    body_encoding = None  # bodies stay bytes in memory; no base64 round trip

    def __init__(self, connection: Any, **kwargs: Any):
        super().__init__(connection, **kwargs)
        self.broker: Broker = connection.broker
        self.events: Dict[str, Any] = collections.defaultdict(set)  # callbacks by event, as py-amqp's channels

    def prepare_queue_arguments(self, arguments: Dict[str, Any], **kwargs: Any) -> Dict[str, Any]:
        return to_rabbitmq_queue_arguments(arguments, **kwargs)  # max_length= etc., as on RabbitMQ

    def exchange_declare(self, exchange: Optional[str] = None, type: str = "direct", durable: bool = False,
                         auto_delete: bool = False, arguments: Any = None, nowait: bool = False,
                         passive: bool = False) -> None:
        self.broker.declare_exchange(exchange or f"amq.{type}", type or "direct",
                                     {"durable": durable, "auto_delete": auto_delete}, passive)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        self.broker.delete_exchange(exchange)

    def queue_declare(self, queue: Optional[str] = None, passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False, arguments: Any = None,
                      **kwargs: Any) -> Any:
        name = queue or f"amq.gen-{uuid.uuid4().hex}"
        flags = {"durable": durable, "exclusive": exclusive, "auto_delete": auto_delete}
        count, consumers = self.broker.declare_queue(name, flags, arguments or {}, self.connection, passive)
        return queue_declare_ok_t(name, count, consumers)

    def queue_bind(self, queue: str, exchange: Optional[str] = None, routing_key: str = "",
                   arguments: Any = None, **kwargs: Any) -> None:
        self.broker.bind(queue, exchange or "amq.direct", routing_key)

    def queue_unbind(self, queue: str, exchange: Optional[str] = None, routing_key: str = "",
                     arguments: Any = None, **kwargs: Any) -> None:
        self.broker.bind(queue, exchange or "amq.direct", routing_key, unbind=True)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any) -> int:
        return self.broker.delete_queue(queue, if_empty)

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        return self.broker.purge(queue)

    def _next_delivery_tag(self) -> int:
        return 0  # the broker numbers each copy when a consumer takes it

    def basic_publish(self, message: Payload, exchange: str, routing_key: str, **kwargs: Any) -> None:
        self._publish(message, exchange, routing_key)

    def _publish(self, message: Payload, exchange: str, routing_key: str) -> Tuple[int, int]:
        self._inplace_augment_message(message, exchange, routing_key)
        message["properties"]["delivery_info"]["redelivered"] = False
        return self.broker.publish(message, exchange, routing_key)

    def basic_publish_confirm(self, message: Payload, exchange: str, routing_key: str,
                              mandatory: bool = False, **kwargs: Any) -> None:
        """Publish as py-amqp's confirmed publish does against RabbitMQ: a mandatory message that
        reaches no queue goes to the `basic_return` handlers (or raises NO_ROUTE), one that a queue
        refuses (full, `reject-publish`) raises MessageNacked."""
        reached, refused = self._publish(message, exchange, routing_key)
        if mandatory and not reached:
            exc = amqp_errors.ChannelError("NO_ROUTE", reply_code=312)
            if not self.events["basic_return"]:
                raise exc
            for callback in list(self.events["basic_return"]):
                callback(exc, exchange, routing_key, message)
        if refused:
            raise amqp_errors.MessageNacked()

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any) -> None:
        super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        with self.broker.cond:
            if queue in self.broker.queues:
                self.broker.queues[queue].consumers += 1

    def basic_cancel(self, consumer_tag: str) -> None:
        queue_name = self._tag_to_queue.get(consumer_tag)
        super().basic_cancel(consumer_tag)
        with self.broker.cond:
            queue = self.broker.queues.get(queue_name or "")
            if queue is not None:
                queue.consumers -= 1
                queue.used_at = time.monotonic()
                if queue.consumers <= 0 and queue.flags.get("auto_delete"):
                    self.broker.delete_queue(queue.name)

    def _get(self, queue: str, timeout: Optional[float] = None) -> Payload:
        return self.broker.get(queue)

    def _size(self, queue: str) -> int:
        return self.broker.size(queue)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return queue in self.broker.queues

    def _restore(self, message: _Message) -> None:
        self.broker.requeue(message.raw)

    def list_bindings(self) -> Any:
        return ((queue, exchange, pattern) for exchange, table in self.broker.bindings.items()
                for pattern, queue in table)


class Transport(virtual.Transport):
    """The kombu transport of `memory://` in tcpulse (`transport="tcpulse._broker.broker:Transport"`).

    Example:
        >>> import kombu
        >>> kombu.Connection("memory://", transport="tcpulse._broker.broker:Transport").transport.driver_name
        'tcpulse-memory'
    """

    Channel = _Channel
    driver_type = "memory"
    driver_name = "tcpulse-memory"
    channel_errors = (ChannelError, amqp_errors.ChannelError)
    implements = virtual.Transport.implements.extend(exchange_type=frozenset(EXCHANGE_TYPES))

    def __init__(self, client: Any, **kwargs: Any):
        super().__init__(client, **kwargs)
        self.broker = broker_for(client.virtual_host or "/")

    def driver_version(self) -> str:
        return "1"

    def drain_events(self, connection: Any, timeout: Optional[float] = None) -> None:
        # Wait on the broker's condition instead of kombu's fixed 1 s polling sleep.
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.broker.version
            self._cancel_consumers_of_deleted_queues()
            try:
                return self.cycle.get(self._deliver, timeout=timeout)
            except Empty:
                pass
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise socket.timeout()
            self.broker.wait(seen, remaining)

    def _cancel_consumers_of_deleted_queues(self) -> None:
        # RabbitMQ tells a consumer whose queue was deleted under it (basic.cancel); py-amqp
        # raises ConsumerCancelled from drain_events, and so do we.
        for channel in list(self.channels):
            for tag, queue in list(channel._tag_to_queue.items()):
                if queue not in self.broker.queues:
                    channel.basic_cancel(tag)
                    raise amqp_errors.ConsumerCancelled(
                        f"consumer {tag!r} cancelled by the broker: queue {queue!r} was deleted")

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        self.broker.drop_owner(self)
