"""The sync REST client that every generated service class (`Queue`, `Index`, ...) is built on.

Owns: `BaseClient`, the HTTP exchange itself over requests (one pooled `requests.Session` per
client, a timeout on every request, retries with backoff and jitter, no redirects followed);
`requests` exceptions become tcpulse errors in one place, `_request`. What does not depend on
the transport (options, credentials, class attributes, buildUrl/buildSignedUrl, a call's
request and headers) is clientcore.py's, shared with the async client (`tcpulse.aio`); argument
binding, URLs and response mapping are calls.py's, signing auth.py's, the generated classes
services.py's.

Imports requests; never kombu.

Example:
    >>> import tcpulse
    >>> queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    >>> queue.buildUrl("task", "abc")
    'https://tc.example.com/api/queue/v1/task/abc'
"""
import time
from typing import Any, Mapping, Optional, Tuple

import requests

from tcpulse._rest.calls import CALL_KEYWORDS, response_result
from tcpulse._rest.clientcore import ClientCore, log
from tcpulse._rest.options import DEFAULT_OPTIONS, optionsFromEnvironment
from tcpulse._rest.hawk import createTemporaryCredentials
from tcpulse._rest.sessions import new_session
from tcpulse.references import FunctionEntry
from tcpulse.utils import createSession

# createSession and createTemporaryCredentials are here too, where the official client has them.
__all__ = ["BaseClient", "CALL_KEYWORDS", "DEFAULT_OPTIONS", "createSession", "createTemporaryCredentials",
           "optionsFromEnvironment"]


class BaseClient(ClientCore):
    """What every generated service client does; the generated methods all call `_call`.

    Built with no options (or empty ones), a client reads the environment
    (`optionsFromEnvironment()`); given options are used as they are.

    Example:
        >>> import tcpulse
        >>> tcpulse.Index({"baseUrl": "http://127.0.0.1:1/v1"}).buildUrl("findTask", "a.b")
        'http://127.0.0.1:1/v1/task/a.b'
    """

    def __init__(self, options: Optional[Mapping[str, Any]] = None,
                 session: Optional[requests.Session] = None):
        super().__init__(options)
        self.session = session or new_session(self._base_url or "")

    def close(self) -> None:
        """Close the pooled connections.

        Example:
            >>> import tcpulse
            >>> tcpulse.Queue({"rootUrl": "https://tc"}).close()
        """
        self.session.close()

    def _call(self, entry: FunctionEntry, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        request = self._request_for(entry, args, kwargs)
        result = self._request(request.label, request.method, request.url, request.body)
        handler = request.bound.pagination_handler
        if handler is None:
            return result
        while True:
            handler(result)
            url = self._next_url(request, result)
            if url is None:
                return None
            result = self._request(request.label, request.method, url, request.body)

    def _request(self, label: str, method: str, url: str, body: Optional[bytes]) -> Any:
        """Send with retries; the one place where `requests` exceptions become tcpulse errors."""
        last = self.options["maxRetries"] + 1
        for attempt in range(1, last + 1):
            try:
                response = self._send(label, method, url, body)
            except requests.RequestException as exc:
                delay = self._retry_delay(label, method, url, attempt, exc, timed_out=isinstance(exc, requests.Timeout))
            else:
                if response.status_code < 500 or attempt == last:
                    return response_result(label, response.status_code, response.reason, response.content, response)
                delay = self._retry_delay(label, method, url, attempt, status=response.status_code)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, label: str, method: str, url: str, body: Optional[bytes]) -> requests.Response:
        headers = self._headers(method, url, body)
        log.debug("%s: %s %s", label, method.upper(), url)
        prepared = self.session.prepare_request(requests.Request(method.upper(), url, data=body, headers=headers))
        # requests un-escapes %2E (so urllib3 would then resolve '..'); send exactly what was signed.
        prepared.url = url
        settings = self.session.merge_environment_settings(url, {}, None, None, None)
        # Never follow a redirect: a 3xx is an answer (as in the official client), and following
        # one would carry the signed request and its body to wherever it points.
        return self.session.send(prepared, timeout=self.request_timeout, allow_redirects=False, **settings)
