"""Declaring a listener's queue and bindings on the broker, as a Pulse user may.

Owns: the listener's queue (durable `queue/<user>/<name>`, or exclusive and auto-delete when it
has no name), its bindings, the exchanges they name (passively: the services own them; for
real only when asked, for local development), and turning the broker's refusals into one clear,
final error: a declaration refused now is refused again after a reconnect, so retrying in a
loop would only hide it.

Imports neither kombu nor requests: it works on the channel it is given.

Example:
    >>> refusal_text(Exception("(403) ACCESS_REFUSED - no"), "ACCESS_REFUSED", "AccessRefused")
    True
"""
from typing import Any, Callable, Dict, Sequence

from .connection import BrokerAddress
from .errors import BrokerFailure
from .exchanges import Binding


def declare_listener_queue(channel: Any, address: BrokerAddress, queue: str, *, named: bool,
                           bindings: Sequence[Binding], declare_exchanges: bool,
                           arguments: Dict[str, Any]) -> None:
    """Declare the exchanges `bindings` name, then `queue` with `arguments`, then each binding."""
    for exchange in dict.fromkeys(b.exchange for b in bindings):
        declare_exchange(channel, address, exchange, passive=not declare_exchanges)
    _translating(channel.queue_declare, f"declare queue {queue!r}", address, queue=queue, durable=named,
                 exclusive=not named, auto_delete=not named, arguments=arguments)
    for b in bindings:
        _translating(channel.queue_bind, f"bind {queue!r} to {b.exchange!r} with {b.routing_key_pattern!r}",
                     address, queue=queue, exchange=b.exchange, routing_key=b.routing_key_pattern)


def declare_exchange(channel: Any, address: BrokerAddress, exchange: str, passive: bool) -> None:
    """Make sure topic `exchange` exists (passive) or create it; a missing one is one error naming it."""
    try:
        channel.exchange_declare(exchange=exchange, type="topic", durable=True, auto_delete=False, passive=passive)
    except Exception as exc:
        if passive and refusal_text(exc, "NOT_FOUND", "NotFound"):
            raise BrokerFailure(
                f"exchange {exchange!r} does not exist on {address}: is the service that "
                "publishes it running there? (for local development, "
                "Listener(..., declare_exchanges=True) creates it)") from None
        raise_refusal(exc, f"declare exchange {exchange!r}", address)
        raise


def _translating(call: Callable[..., Any], what: str, address: BrokerAddress, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except Exception as exc:
        raise_refusal(exc, what, address)
        raise


def raise_refusal(exc: Exception, what: str, address: BrokerAddress) -> None:
    """Raise the one-line error for a permission or argument refusal; return for anything else."""
    if refusal_text(exc, "ACCESS_REFUSED", "AccessRefused"):
        raise BrokerFailure(f"the broker at {address} does not let user {address.user!r} {what} "
                            f"(Pulse users may only create queue/{address.user}/... and "
                            f"exchange/{address.user}/...): {exc}") from None
    if refusal_text(exc, "PRECONDITION_FAILED", "PreconditionFailed"):
        from .delivery import QueueConflict, conflict_message
        raise QueueConflict(conflict_message(str(exc))) from None


def refusal_text(exc: Exception, code: str, class_name: str) -> bool:
    """Whether `exc` is the broker's refusal `code` (py-amqp's class, or the memory broker's text)."""
    return type(exc).__name__ == class_name or code in str(exc)
