"""tcpulse: listen to Taskcluster's Pulse events and act on them, with a Taskcluster REST
client beside the listener.

`import tcpulse` is cheap: it loads neither kombu nor requests, and the classes generated from
the references (`QueueEvents`, `Queue`, ...) are built on first use, each from its own service's
reference only. The references are today's Taskcluster unless another set is selected
(`TCPULSE_REFERENCES`, or `use_references` before the first class is used).

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
    ReferenceSetError,
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
from .references import use_references

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
    "Listener": "listener", "on": "listener", "run": "runner",
}

__all__ = [
    "BrokerFailure", "ClientUsageError", "InvalidReference", "ObjectHashVerificationError", "PermanentFailure",
    "ReferenceSetError", "TaskclusterArtifactError", "TaskclusterAuthFailure", "TaskclusterConnectionError",
    "TaskclusterFailure",
    "TaskclusterRestFailure", "TaskclusterTopicExchangeFailure",
    "Binding", "Exchange", "exchanges", "use_references", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        from .services import generated_class
        value = generated_class(__name__, name)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    from .services import generated_names

    return sorted(set(globals()) | set(__all__) | set(generated_names()))
