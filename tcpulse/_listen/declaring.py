"""A listener's queue, bindings and delivery topology on the broker: what a `Listener` declares
on every (re)connect, and the queue it takes over from another tool when asked to adopt it.

Owns the order of it: a named listener declares under its layout lock (`tcpulse._listen.layout`),
after finding (or moving to) its private delivery exchange, and then removes what an earlier run
bound that no handler declares now (`tcpulse._listen.stale`); a queue that refuses tcpulse's
arguments becomes one `QueueConflict` line with its remedy. Reads what it needs of the listener
it is given (options, bindings, broker address, `Delivery`); imports the broker side lazily.
"""
import logging
from typing import Any, List, Optional

from tcpulse._api.exchanges import Binding
from tcpulse._listen.stale import remove_stale
from tcpulse._listen.topology import QueueConflict, declare_listener_queue, refusal_text

log = logging.getLogger("tcpulse.listener")


def declare(listener: Any, channel: Any) -> str:
    """Declare exchanges (passively unless asked), the queue and every binding, then the
    delivery topology. Returns the queue name."""
    from tcpulse._listen.layout import connection_of, layout_lock
    from tcpulse._ops.maintenance import prepare

    delivery, bindings = listener._delivery, listener.bindings()
    try:
        if listener.name is None:  # an anonymous queue dies with its connection, bindings and all
            _declare_queues(listener, channel, bindings)
        else:
            with layout_lock(connection_of(channel), delivery.names):
                record = prepare(channel, delivery, bindings)
                _declare_queues(listener, channel, bindings)
                remove_stale(channel, delivery, bindings, record, listener.broker)
    except Exception as exc:  # any queue refusing our arguments (the record's too) is one line
        if isinstance(exc, QueueConflict) or refusal_text(exc, "PRECONDITION_FAILED", "PreconditionFailed"):
            text = exc.broker_text if isinstance(exc, QueueConflict) else str(exc)
            raise QueueConflict(text, remedy=_conflict_remedy(listener)) from None
        raise
    log.info("declared %s with %d binding(s): %s", listener.queue, len(bindings),
             "; ".join(f"{b.exchange} {b.routing_key_pattern}" for b in bindings))
    return listener.queue


def adopt(listener: Any) -> None:
    """Take over the listener's queue if another tool declared it (`tcpulse._ops.maintenance.adopt`)."""
    from tcpulse._listen.delivery import broker_connection
    from tcpulse._listen.layout import channel_on, layout_lock, settle_secret
    from tcpulse._ops.maintenance import adopt

    delivery = listener._delivery
    with broker_connection(listener.broker) as connection, layout_lock(connection, delivery.names):
        with channel_on(connection) as channel:  # adopted into the private layout, its secret recorded first
            settle_secret(channel, delivery)
        adopt(connection, delivery, listener.bindings(), report=log.info)


def _conflict_remedy(listener: Any) -> Optional[str]:
    if listener.name is None or listener.broker.is_memory:
        return None
    from tcpulse._listen.delivery import broker_connection
    from tcpulse._ops.maintenance import conflict_remedy

    with broker_connection(listener.broker) as connection:
        return conflict_remedy(connection, listener._delivery, listener.name)


def _declare_queues(listener: Any, channel: Any, bindings: List[Binding]) -> None:
    address, delivery = listener.broker, listener._delivery
    declare = address.is_memory if listener.declare_exchanges is None else listener.declare_exchanges
    declare_listener_queue(channel, address, listener.queue, named=listener.name is not None, bindings=bindings,
                           declare_exchanges=declare, auto_delete=listener.auto_delete,
                           arguments=delivery.queue_arguments())
    delivery.declare(channel)
