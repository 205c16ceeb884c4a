"""Async Taskcluster clients: `tcpulse.aio.Queue`, `tcpulse.aio.Index`, ... and
`tcpulse.aio.download`, for asyncio code such as `async def` handlers.

Owns: the async service classes, generated on first use from the same references as the sync
ones (`tcpulse.services.client_class` on `tcpulse.aio.client.AsyncClient`): same options, same
four calling conventions, same errors, every method awaitable. Needs the `aio` extra
(`pip install 'tcpulse[aio]'`, which brings aiohttp); nothing outside this subpackage imports
aiohttp, and `import tcpulse` never imports this subpackage.

Example:
    >>> import tcpulse.aio
    >>> async def main():
    ...     async with tcpulse.aio.Queue({"rootUrl": "https://tc.example.com"}) as queue:
    ...         return await queue.task("fQ3sX0JwTHKzSbbr7SYHQA")
    >>> tcpulse.aio.Queue.task.__qualname__
    'Queue.task'
"""
import importlib
from typing import Any, List

__all__ = ["AsyncClient", "download"]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from .client import AsyncClient as value
    elif name == "download":
        value = importlib.import_module(".download", __name__)
    else:
        value = _generated_class(name)
    globals()[name] = value
    return value


def _generated_class(name: str) -> Any:
    from ..references import load_all

    reference = load_all().get(name)
    if reference is None or reference.kind != "api":
        raise AttributeError(f"module 'tcpulse.aio' has no attribute {name!r}")
    from ..services import client_class
    from .client import AsyncClient

    cls = client_class(reference, AsyncClient)
    cls.__module__ = __name__
    return cls


def __dir__() -> List[str]:
    from ..references import load_all

    return sorted(set(globals()) | set(__all__) | {n for n, r in load_all().items() if r.kind == "api"})
