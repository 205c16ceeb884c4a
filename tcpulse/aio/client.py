"""The async REST client every `tcpulse.aio` service class is built on.

Owns: `AsyncClient`, the HTTP exchange over aiohttp: one `aiohttp.ClientSession` per client
(its pooled keep-alive connections; created on first use, inside the running loop), a timeout
on every request, retries with backoff and jitter (`asyncio.sleep`, never blocking the loop), no
redirects followed, the exact URL that was signed sent as is; aiohttp's exceptions become
tcpulse errors in one place, `_request`. Everything else (options, Hawk, URLs, binding, answer
-> result or error, the retry schedule) is shared with the sync client through
`tcpulse._rest.clientcore` and `tcpulse._rest.calls`.

Imports aiohttp; never requests or kombu.

Example:
    >>> import tcpulse.aio
    >>> queue = tcpulse.aio.Queue({"rootUrl": "https://tc.example.com"})
    >>> queue.buildUrl("task", "abc")
    'https://tc.example.com/api/queue/v1/task/abc'
"""
import asyncio
import inspect
import os
import ssl
from typing import Any, Mapping, Optional, Tuple

try:
    import aiohttp
    import yarl
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError("tcpulse.aio needs aiohttp: pip install 'tcpulse[aio]'") from None

from tcpulse._rest.calls import response_result
from tcpulse._rest.clientcore import ClientCore, log
from tcpulse.references import FunctionEntry

Answer = Tuple[int, str, bytes, Any]


class AsyncClient(ClientCore):
    """What every async service client does; the generated methods all return `_call(...)`.

    Use it as `async with tcpulse.aio.Queue(options) as queue:` (or call `await queue.close()`)
    so that its connections are closed; `session=` shares an aiohttp session you own instead.

    Example:
        >>> import tcpulse.aio
        >>> tcpulse.aio.Index({"baseUrl": "http://127.0.0.1:1/v1"}).buildUrl("findTask", "a.b")
        'http://127.0.0.1:1/v1/task/a.b'
    """

    def __init__(self, options: Optional[Mapping[str, Any]] = None,
                 session: Optional["aiohttp.ClientSession"] = None) -> None:
        super().__init__(options)
        self.session = session
        self._own_session = session is None
        self.aiohttp_timeout = client_timeout(self.request_timeout)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pooled connections (of a session this client made; yours stays open).

        Example:
            >>> import asyncio, tcpulse.aio
            >>> asyncio.run(tcpulse.aio.Queue({"rootUrl": "https://tc"}).close())
        """
        if self._own_session and self.session is not None:
            await self.session.close()
            self.session = None

    def _session(self) -> "aiohttp.ClientSession":
        if self.session is None or self.session.closed:
            self.session = new_session()
            self._own_session = True
        return self.session

    async def _call(self, entry: FunctionEntry, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        request = self._request_for(entry, args, kwargs)
        result = await self._request(request.label, request.method, request.url, request.body)
        handler = request.bound.pagination_handler
        if handler is None:
            return result
        while True:
            handled = handler(result)
            if inspect.isawaitable(handled):
                await handled
            url = self._next_url(request, result)
            if url is None:
                return None
            result = await self._request(request.label, request.method, url, request.body)

    async def _request(self, label: str, method: str, url: str, body: Optional[bytes]) -> Any:
        """Send with retries; the one place where aiohttp's exceptions become tcpulse errors."""
        last = self.options["maxRetries"] + 1
        for attempt in range(1, last + 1):
            try:
                status, reason, content, response = await self._send(label, method, url, body)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                delay = self._retry_delay(label, method, url, attempt, exc,
                                          timed_out=isinstance(exc, asyncio.TimeoutError))
            else:
                if status < 500 or attempt == last:
                    return response_result(label, status, reason, content, response)
                delay = self._retry_delay(label, method, url, attempt, status=status)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send(self, label: str, method: str, url: str, body: Optional[bytes]) -> Answer:
        headers = self._headers(method, url, body)
        log.debug("%s: %s %s", label, method.upper(), url)
        # encoded=True: send exactly the URL that was signed (%2E stays %2E). Never follow a
        # redirect: a 3xx is an answer, and following it would carry the signed request away.
        async with self._session().request(method.upper(), yarl.URL(url, encoded=True), data=body,
                                           headers=headers, allow_redirects=False,
                                           timeout=self.aiohttp_timeout) as response:
            content = await response.read()
            return response.status, response.reason or "", content, response


def new_session(timeout: Optional["aiohttp.ClientTimeout"] = None) -> "aiohttp.ClientSession":
    """A session with the sync client's CA settings (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and
    nothing else from the environment: no proxies or netrc, which could add credentials of
    their own to a request. Must be made inside the running event loop."""
    cafile = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=cafile))
    return aiohttp.ClientSession(connector=connector, trust_env=False, timeout=timeout or aiohttp.ClientTimeout())


def client_timeout(timeout: Any) -> "aiohttp.ClientTimeout":
    """The `timeout` option (seconds, or a (connect, read) pair) as aiohttp's: per connection
    attempt and per read, never for a whole call or download.

    Example:
        >>> client_timeout([5, 30]).sock_read
        30
    """
    connect, read = timeout if isinstance(timeout, (list, tuple)) else (timeout, timeout)
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
