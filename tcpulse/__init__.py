"""tcpulse: listen to Taskcluster's Pulse events and act on them, with a Taskcluster REST
client beside the listener.

`import tcpulse` is cheap: it loads neither kombu nor requests, and the classes generated from
the references (`QueueEvents`, `Queue`, ...) are built on first use.

Example:
    >>> import tcpulse
    >>> tcpulse.QueueEvents.taskCompleted(taskGroupId="g")["routingKeyPattern"]
    'primary.*.*.*.*.*.*.*.g.#'
"""
import importlib
from typing import Any, List

from .errors import (
    BrokerFailure,
    ClientUsageError,
    InvalidReference,
    ObjectHashVerificationError,
    PermanentFailure,
    TaskclusterArtifactError,
    TaskclusterAuthFailure,
    TaskclusterConnectionError,
    TaskclusterFailure,
    TaskclusterRestFailure,
    TaskclusterTopicExchangeFailure,
)
# Imported now (it is pure and cheap) so that the import system has already bound the
# submodule when `exchanges` below rebinds the name to the function: a later
# `import tcpulse.exchanges` then leaves `tcpulse.exchanges()` callable.
from .exchanges import Binding, Exchange, exchanges

__version__ = "0.1.0"

# Public names that live in modules loaded only when first asked for.
_LAZY = {
    "fromNow": "utils", "fromNowJSON": "utils", "stringDate": "utils",
    "slugId": "utils", "stableSlugId": "utils", "scopeMatch": "utils", "scope_match": "utils",
    "dumpJson": "utils", "toStr": "utils", "isExpired": "utils", "encodeStringForB64Header": "utils",
    "makeB64UrlSafe": "utils", "makeB64UrlUnsafe": "utils", "calculateSleepTime": "utils",
    "createSession": "utils",
    "createTemporaryCredentials": "auth",
    "optionsFromEnvironment": "options", "BaseClient": "client",
    "Event": "dispatch",
    "Listener": "listener", "on": "listener",
}

__all__ = [
    "BrokerFailure", "ClientUsageError", "InvalidReference", "ObjectHashVerificationError", "PermanentFailure",
    "TaskclusterArtifactError", "TaskclusterAuthFailure", "TaskclusterConnectionError", "TaskclusterFailure",
    "TaskclusterRestFailure", "TaskclusterTopicExchangeFailure",
    "Binding", "Exchange", "exchanges", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        value = _generated_class(name)
    globals()[name] = value
    return value


def _generated_class(name: str) -> Any:
    from .references import load_all

    reference = load_all().get(name)
    if reference is None:
        raise AttributeError(f"module 'tcpulse' has no attribute {name!r}")
    if reference.kind == "exchanges":
        from .exchanges import events_class
        return events_class(reference)
    from .services import client_class
    return client_class(reference)


def __dir__() -> List[str]:
    from .references import load_all

    return sorted(set(globals()) | set(__all__) | set(load_all()))
