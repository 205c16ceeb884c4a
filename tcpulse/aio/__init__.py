"""Async Taskcluster clients: `tcpulse.aio.Queue`, `tcpulse.aio.Index`, ... and
`tcpulse.aio.download` and `tcpulse.aio.upload`, for asyncio code such as `async def` handlers.

Owns: the async service classes, generated on first use from the same references as the sync
ones (`tcpulse._api.services.client_class` on `tcpulse.aio.client.AsyncClient`): same options, same
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

__all__ = ["AsyncClient", "download", "upload"]


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from tcpulse.aio.client import AsyncClient as value
    elif name in ("download", "upload"):
        value = importlib.import_module("." + name, __name__)
    else:
        from tcpulse._api.services import generated_class
        value = generated_class(__name__, name, asynchronous=True)
    globals()[name] = value
    return value


def __dir__() -> List[str]:
    from tcpulse._api.services import generated_names

    return sorted(set(globals()) | set(__all__) | set(generated_names(api_only=True)))
