"""What a REST client is apart from its transport, shared by the sync and the async clients.

Owns: `ClientCore`, the base of `tcpulse.client.BaseClient` (requests) and
`tcpulse.aio.client.AsyncClient` (aiohttp): options, credentials and the Hawk `ext` read once at
construction, the service URL, the official client's class attributes (`serviceName`,
`apiVersion`, `classOptions`, `funcinfo`), method lookup, `buildUrl` and `buildSignedUrl`, a
call's request (`_request_for`: URL, body; `_next_url` for pagination), a request's headers
(`_headers`: Hawk signing), and what a failed attempt means (`_retry_delay`: the backoff and its
log line, or TaskclusterConnectionError after the last attempt). Argument binding, URLs and
answer -> result or error are calls.py's.

Imports neither requests nor aiohttp (nor kombu): the transport is the subclass's.

Example:
    >>> import tcpulse
    >>> queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    >>> queue.buildUrl("task", "abc")
    'https://tc.example.com/api/queue/v1/task/abc'
"""
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from tcpulse._rest import hawk
from tcpulse._rest.calls import BoundCall, bind_arguments, call_url
from tcpulse.errors import ClientUsageError, TaskclusterAuthFailure, TaskclusterConnectionError
from tcpulse._api.hints import did_you_mean
from tcpulse._rest.options import client_options, is_seconds, no_root_url, service_url
from tcpulse.references import FunctionEntry, Reference
from tcpulse.utils import calculateSleepTime, dumpJson
from tcpulse._api.schemas import check_call

log = logging.getLogger("tcpulse.client")
if os.environ.get("DEBUG_TASKCLUSTER_CLIENT"):
    log.setLevel(logging.DEBUG)
    if not log.handlers:
        log.addHandler(logging.StreamHandler())


@dataclass
class CallRequest:
    """One call's request, ready for a transport (`url` is the first page's).

    Example:
        >>> import tcpulse
        >>> queue = tcpulse.Queue({"rootUrl": "https://tc"})
        >>> queue._request_for(queue._entry("createTask"), ("t1", {"a": 1}), {}).body
        b'{"a":1}'
    """
    label: str
    method: str
    url: str
    body: Optional[bytes]
    bound: BoundCall
    query: Dict[str, Any]
    entry: FunctionEntry


class ClientCore:
    """Everything a generated client does except sending: see the module docstring.

    Built with no options (or empty ones), a client reads the environment
    (`optionsFromEnvironment()`); given options are used as they are.
    """

    reference: ClassVar[Optional[Reference]] = None
    entries: ClassVar[Dict[str, FunctionEntry]] = {}
    # The official client's class attributes, filled from the reference for each generated class.
    serviceName: ClassVar[Optional[str]] = None
    apiVersion: ClassVar[Optional[str]] = None
    classOptions: ClassVar[Dict[str, Any]] = {}
    funcinfo: ClassVar[Dict[str, Dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ref = cls.__dict__.get("reference")
        if ref is not None:
            cls.serviceName, cls.apiVersion = ref.service_name, ref.api_version
            cls.classOptions = {"exchangePrefix": ref.exchange_prefix} if ref.exchange_prefix else {}
            cls.funcinfo = {entry.name: _official_entry(entry) for entry in cls.entries.values()}

    def __init__(self, options: Optional[Mapping[str, Any]] = None) -> None:
        self.options = client_options(options)
        self._credentials = hawk.Credentials.from_option(self.options.get("credentials"))
        self._ext = (hawk.hawk_ext(self._credentials, self.options.get("authorizedScopes"))
                     if self._credentials else None)
        self._base_url = service_url(self.options, self.serviceName, self.apiVersion)
        timeout = self.options["timeout"]
        # The timeout option as requests takes it (a (connect, read) pair must be a tuple).
        self.request_timeout = tuple(timeout) if isinstance(timeout, list) else timeout

    def __repr__(self) -> str:
        client_id = self._credentials.clientId if self._credentials else None
        return f"<{type(self).__name__} {self._base_url or '(no rootUrl)'} clientId={client_id!r}>"

    def _entry(self, method_name: str) -> FunctionEntry:
        entry = self.entries.get(method_name)
        if entry is None:
            raise ClientUsageError(f"{type(self).__name__} has no method {method_name!r}."
                                   f"{did_you_mean(method_name, list(self.entries))}")
        return entry

    def _label(self, entry: FunctionEntry) -> str:
        return f"{type(self).__name__}.{entry.name}"

    def _url(self, entry: FunctionEntry, bound: BoundCall, query: Optional[Mapping[str, Any]] = None) -> str:
        if self._base_url is None:
            raise no_root_url(self._label(entry))
        return call_url(self._base_url, entry, bound, query)

    def buildUrl(self, methodName: str, *args: Any, **kwargs: Any) -> str:
        """The URL a call would use (arguments as for the method itself, payload not needed).

        Example:
            >>> import tcpulse
            >>> tcpulse.Queue({"rootUrl": "https://tc"}).buildUrl("listTaskGroup", "g", query={"limit": 1})
            'https://tc/api/queue/v1/task-group/g/list?limit=1'
        """
        entry = self._entry(methodName)
        return self._url(entry, bind_arguments(self._label(entry), entry, args, kwargs, need_payload=False))

    def buildSignedUrl(self, methodName: str, *args: Any, expiration: Optional[float] = None,
                       **kwargs: Any) -> str:
        """The URL with a Hawk bewit, valid `expiration` seconds (default option signedUrlExpiration).

        Example:
            >>> import tcpulse
            >>> queue = tcpulse.Queue({"rootUrl": "https://tc", "credentials": {"clientId": "a", "accessToken": "b"}})
            >>> queue.buildSignedUrl("task", "abc", expiration=60).startswith("https://tc/api/queue/v1/task/abc?bewit=")
            True
        """
        entry = self._entry(methodName)
        if entry.method != "get":
            raise ClientUsageError(f"{self._label(entry)}: only GET endpoints can have signed URLs "
                                   f"(this one is {entry.method.upper()})")
        if expiration is not None and not (is_seconds(expiration) and expiration > 0):
            raise ClientUsageError(f"{self._label(entry)}: buildSignedUrl expiration must be a number of "
                                   f"seconds > 0 (got {expiration!r})")
        if self._credentials is None:
            raise TaskclusterAuthFailure(f"{self._label(entry)}: buildSignedUrl needs credentials "
                                         "(clientId and accessToken)")
        url = self.buildUrl(methodName, *args, **kwargs)
        seconds = self.options["signedUrlExpiration"] if expiration is None else expiration
        expires_at = int(time.time() + seconds)
        signature = hawk.bewit(self._credentials, self._ext, url, expires_at)
        return f"{url}{'&' if '?' in url else '?'}bewit={signature}"

    def _request_for(self, entry: FunctionEntry, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> CallRequest:
        """A generated method's arguments as a request (misuse raises ClientUsageError here,
        before anything is sent)."""
        label = self._label(entry)
        bound = bind_arguments(label, entry, args, kwargs)
        if self.options.get("validate"):
            check_call(label, self.serviceName or "", entry, bound)
        # dumpJson, as the official client: datetimes in a payload (e.g. `expires`) become stringDate text.
        body = None if bound.payload is None else dumpJson(bound.payload).encode()
        query = dict(bound.query)
        if bound.pagination_limit and "limit" in entry.query:
            query["limit"] = bound.pagination_limit
        return CallRequest(label, entry.method, self._url(entry, bound, query), body, bound, query, entry)

    def _next_url(self, request: CallRequest, result: Any) -> Optional[str]:
        """The next page's URL after `result` (its continuationToken), or None on the last page."""
        token = result.get("continuationToken") if isinstance(result, dict) else None
        if not token:
            return None
        request.query["continuationToken"] = token
        return self._url(request.entry, request.bound, request.query)

    def _headers(self, method: str, url: str, body: Optional[bytes]) -> Dict[str, str]:
        """Content-Type for a body, and the Hawk Authorization header when there are credentials."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._credentials is not None:
            headers["Authorization"] = hawk.hawk_header(
                self._credentials, self._ext, method, url, body or b"",
                "application/json" if body is not None else "")
        return headers

    def _retry_delay(self, label: str, method: str, url: str, attempt: int,
                     error: Optional[BaseException] = None, timed_out: bool = False,
                     status: Optional[int] = None) -> float:
        """After a failed attempt (an `error` from the transport, or a 5xx `status`): seconds to
        wait before the next one (backoff with jitter), logged with why; after the last attempt,
        a transport error becomes TaskclusterConnectionError."""
        attempts = self.options["maxRetries"] + 1
        problem = f"HTTP {status} from {method.upper()} {url}"
        if error is not None:
            problem = f"{type(error).__name__} on {method.upper()} {url}"
            cause = transport_cause(error)
            if timed_out or cause == "timeout":
                problem = f"no answer within {self.options['timeout']} s ({problem})"
            elif cause is not None:
                problem = f"{cause} ({problem})"
            if attempt >= attempts:
                raise TaskclusterConnectionError(f"{label}: {problem}, after {attempts} attempt(s)",
                                                 superExc=error) from error
        delay = calculateSleepTime(attempt)
        log.warning("%s: %s; retrying in %.2f s (attempt %d of %d)", label, problem, delay, attempt + 1, attempts)
        return delay


def transport_cause(error: BaseException) -> Optional[str]:
    """What went wrong under a transport error of requests or aiohttp, in words: the TLS
    handshake, a DNS lookup, a refused connection, or "timeout"; None when it is none of these.
    Both libraries wrap the socket's error a few layers down (`__cause__`, urllib3's `reason`,
    aiohttp's `os_error`).

    Example:
        >>> import socket
        >>> transport_cause(OSError("wrapped")) is None, transport_cause(socket.gaierror(-2, "Name or service not known"))
        (True, 'DNS lookup failed: Name or service not known')
    """
    seen: List[BaseException] = []
    todo: List[Any] = [error]
    while todo and len(seen) < 20:
        exc = todo.pop(0)
        if not isinstance(exc, BaseException) or any(exc is s for s in seen):
            continue
        seen.append(exc)
        todo += [exc.__cause__, exc.__context__, getattr(exc, "reason", None), getattr(exc, "os_error", None),
                 *exc.args]
    for exc in seen:  # the most telling first: TLS and DNS errors are OSErrors too
        if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
            return f"TLS failed: {getattr(exc, 'verify_message', None) or getattr(exc, 'reason', None) or exc}"
    for exc in seen:
        if isinstance(exc, socket.gaierror):
            return f"DNS lookup failed: {exc.strerror or exc}"
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
    return "timeout" if any(isinstance(exc, (TimeoutError, socket.timeout)) for exc in seen) else None


def _official_entry(entry: FunctionEntry) -> Dict[str, Any]:
    """An entry as the official client's `funcinfo` holds it (its keys; query only when there is one)."""
    info: Dict[str, Any] = {"args": list(entry.args), "method": entry.method, "name": entry.name,
                            "route": entry.route, "stability": entry.stability}
    optional = (("input", entry.input), ("output", entry.output), ("query", list(entry.query)))
    info.update({key: value for key, value in optional if value})
    return info
