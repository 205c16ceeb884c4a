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
import importlib as _importlib
import sys as _sys
from typing import Any as _Any, List as _List

from tcpulse.errors import (
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
from tcpulse._api.exchanges import Binding, Exchange, exchanges
from tcpulse.references import use_references
from tcpulse._api.modules import install as _install_service_modules
from tcpulse import errors as exceptions  # the official client's name for the errors module

_install_service_modules()  # tcpulse.queue, tcpulse.aio.queue, ...: one module per service
_sys.modules.setdefault("tcpulse.exceptions", exceptions)

__version__ = "0.1.0"

# Public names that live in modules loaded only when first asked for.
_LAZY = {
    "fromNow": "utils", "fromNowJSON": "utils", "stringDate": "utils",
    "slugId": "utils", "stableSlugId": "utils", "scopeMatch": "utils", "scope_match": "utils",
    "dumpJson": "utils", "toStr": "utils", "isExpired": "utils", "encodeStringForB64Header": "utils",
    "makeB64UrlSafe": "utils", "makeB64UrlUnsafe": "utils", "calculateSleepTime": "utils",
    "createSession": "utils", "makeHttpRequest": "utils", "putFile": "utils",
    "createTemporaryCredentials": "auth",
    "optionsFromEnvironment": "_rest.options", "BaseClient": "client",
    "Event": "_listen.dispatch",
    "Listener": "_listen.listener", "on": "_listen.listener", "run": "_listen.runner",
    "wsgi_app": "_ops.health", "asgi_app": "_ops.health",
    "publish": "_broker.publishing", "Publisher": "_broker.publishing", "supervise": "_listen.supervisor",
}

__all__ = [
    "BrokerFailure", "ClientUsageError", "InvalidReference", "ObjectHashVerificationError", "PermanentFailure",
    "ReferenceSetError", "TaskclusterArtifactError", "TaskclusterAuthFailure", "TaskclusterConnectionError",
    "TaskclusterFailure",
    "TaskclusterRestFailure", "TaskclusterTopicExchangeFailure",
    "Binding", "Exchange", "exchanges", "use_references", *_LAZY,
]


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        value = getattr(_importlib.import_module(f".{_LAZY[name]}", __name__), name)
    else:
        from tcpulse._api.services import generated_class
        value = generated_class(__name__, name, public=__all__)
    globals()[name] = value
    return value


def __dir__() -> _List[str]:
    """tcpulse's public names: `__all__`, the classes of the active reference set and the public
    submodules already imported (never the helpers this module itself imports)."""
    from tcpulse._api.services import generated_names

    modules = {name for name, value in globals().items()
               if not name.startswith("_") and type(value) is type(_importlib)}
    return sorted(set(__all__) | set(generated_names()) | modules | {"__version__"})
