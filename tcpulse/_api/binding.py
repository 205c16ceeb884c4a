"""`Binding`: an exchange and a routing-key pattern to bind a queue with, as the official client's
dict reads it; and `Immutable`, the base of tcpulse's small value objects.

Owns: what a binding is and how it compares (equal to any mapping with the same two items);
where bindings come from is `exchanges.py`'s business.

Pure module: imports only the standard library and `tcpulse.errors`.

Example:
    >>> Binding("exchange/taskcluster-queue/v1/task-completed", "primary.#")["routingKeyPattern"]
    'primary.#'
"""
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional

from tcpulse.errors import TaskclusterTopicExchangeFailure

if TYPE_CHECKING:
    from tcpulse._api.exchanges import Exchange


class Immutable:
    """Objects whose attributes are set once, by `_set` in `__init__` (not dataclasses: importing
    that module would cost `import tcpulse` a fifth of its time)."""
    __slots__ = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable: cannot delete {name!r}")


class Binding(Mapping, Immutable):
    """An exchange and a routing-key pattern to bind a queue with; reads like the official
    client's dict (`b['exchange']`, `b['routingKeyPattern']`, `dict(b)`).

    Example:
        >>> b = Binding("exchange/taskcluster-queue/v1/task-completed", "primary.#")
        >>> dict(b) == {"exchange": b.exchange, "routingKeyPattern": "primary.#"}
        True
    """
    __slots__ = ("exchange", "routing_key_pattern", "source")
    exchange: str
    routing_key_pattern: str
    source: Optional["Exchange"]

    def __init__(self, exchange: str, routing_key_pattern: str, source: Optional["Exchange"] = None):
        if not isinstance(exchange, str) or not exchange:
            raise TaskclusterTopicExchangeFailure(f"Binding exchange must be a non-empty string (got {exchange!r})")
        if not isinstance(routing_key_pattern, str):
            raise TaskclusterTopicExchangeFailure(
                f"Binding routing_key_pattern for {exchange} must be a string "
                f"(got {type(routing_key_pattern).__name__} {routing_key_pattern!r})")
        self._set(exchange=exchange, routing_key_pattern=routing_key_pattern, source=source)

    def __repr__(self) -> str:
        return f"Binding(exchange={self.exchange!r}, routing_key_pattern={self.routing_key_pattern!r})"

    def _as_dict(self) -> Dict[str, str]:
        return {"exchange": self.exchange, "routingKeyPattern": self.routing_key_pattern}

    def __getitem__(self, key: str) -> str:
        return self._as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(("exchange", "routingKeyPattern"))

    def __len__(self) -> int:
        return 2

    def __eq__(self, other: Any) -> bool:
        # Equal to any binding or mapping with the same two items (the official client's dicts
        # included); where a binding came from does not change what it binds.
        if isinstance(other, Mapping):
            return self._as_dict() == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.exchange, self.routing_key_pattern))
