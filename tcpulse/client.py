"""The REST client core that every generated service class (`Queue`, `Index`, ...) shares.

Owns: `BaseClient`, the HTTP exchange itself (one pooled `requests.Session` per client, a
timeout on every request, retries with backoff and jitter, no redirects followed), the
official client's class attributes (`serviceName`, `apiVersion`, `classOptions`, `funcinfo`),
`buildUrl` and `buildSignedUrl`; `requests` exceptions become tcpulse errors in one place,
`_request`. Options are options.py's, argument binding, URLs and response mapping calls.py's
(shared with the async client), signing auth.py's, the generated classes services.py's.

Imports requests; never kombu.

Example:
    >>> import tcpulse
    >>> queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    >>> queue.buildUrl("task", "abc")
    'https://tc.example.com/api/queue/v1/task/abc'
"""
import json
import logging
import os
import time
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

import requests
import requests.adapters
import requests.utils

from . import auth
from .calls import CALL_KEYWORDS, BoundCall, bind_arguments, call_url, response_result
from .errors import ClientUsageError, TaskclusterAuthFailure, TaskclusterConnectionError
from .exchanges import _did_you_mean
from .options import DEFAULT_OPTIONS, client_options, is_seconds, no_root_url, optionsFromEnvironment, service_url
from .references import FunctionEntry, Reference
from .utils import calculateSleepTime

__all__ = ["BaseClient", "CALL_KEYWORDS", "DEFAULT_OPTIONS", "optionsFromEnvironment"]

log = logging.getLogger(__name__)
if os.environ.get("DEBUG_TASKCLUSTER_CLIENT"):
    log.setLevel(logging.DEBUG)
    if not log.handlers:
        log.addHandler(logging.StreamHandler())


def new_session(base_url: str) -> requests.Session:
    session = requests.Session()
    # Read proxy and CA-bundle settings once: requests would rescan os.environ on every call
    # (a sixth of a call's CPU time), and every call of a client goes to the same host.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    # Retries are ours (with backoff and logging); urllib3 must not add its own.
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class BaseClient:
    """What every generated service client does; the generated methods all call `_call`.

    Built with no options (or empty ones), a client reads the environment
    (`optionsFromEnvironment()`); given options are used as they are.

    Example:
        >>> import tcpulse
        >>> tcpulse.Index({"baseUrl": "http://127.0.0.1:1/v1"}).buildUrl("findTask", "a.b")
        'http://127.0.0.1:1/v1/task/a.b'
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

    def __init__(self, options: Optional[Mapping[str, Any]] = None,
                 session: Optional[requests.Session] = None):
        self.options = client_options(options)
        self._credentials = auth.Credentials.from_option(self.options.get("credentials"))
        self._ext = (auth.hawk_ext(self._credentials, self.options.get("authorizedScopes"))
                     if self._credentials else None)
        self._base_url = service_url(self.options, self.serviceName, self.apiVersion)
        timeout = self.options["timeout"]
        self._timeout = tuple(timeout) if isinstance(timeout, list) else timeout
        self.session = session or new_session(self._base_url or "")

    def __repr__(self) -> str:
        client_id = self._credentials.clientId if self._credentials else None
        return f"<{type(self).__name__} {self._base_url or '(no rootUrl)'} clientId={client_id!r}>"

    def close(self) -> None:
        """Close the pooled connections.

        Example:
            >>> import tcpulse
            >>> tcpulse.Queue({"rootUrl": "https://tc"}).close()
        """
        self.session.close()

    def _entry(self, method_name: str) -> FunctionEntry:
        entry = self.entries.get(method_name)
        if entry is None:
            raise ClientUsageError(f"{type(self).__name__} has no method {method_name!r}."
                                   f"{_did_you_mean(method_name, list(self.entries))}")
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
        signature = auth.bewit(self._credentials, self._ext, url, expires_at)
        return f"{url}{'&' if '?' in url else '?'}bewit={signature}"

    def _call(self, entry: FunctionEntry, args: Tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        label = self._label(entry)
        bound = bind_arguments(label, entry, args, kwargs)
        body = None if bound.payload is None else json.dumps(bound.payload, separators=(",", ":")).encode()
        query = dict(bound.query)
        if bound.pagination_limit and "limit" in entry.query:
            query["limit"] = bound.pagination_limit
        result = self._request(label, entry.method, self._url(entry, bound, query), body)
        if bound.pagination_handler is None:
            return result
        while True:
            bound.pagination_handler(result)
            token = result.get("continuationToken") if isinstance(result, dict) else None
            if not token:
                return None
            query["continuationToken"] = token
            result = self._request(label, entry.method, self._url(entry, bound, query), body)

    def _request(self, label: str, method: str, url: str, body: Optional[bytes]) -> Any:
        """Send with retries; the one place where `requests` exceptions become tcpulse errors."""
        attempts = self.options["maxRetries"] + 1
        for attempt in range(1, attempts + 1):
            try:
                response = self._send(label, method, url, body)
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__} on {method.upper()} {url}"
                if isinstance(exc, requests.Timeout):
                    problem = f"no answer within {self.options['timeout']} s ({problem})"
                if attempt == attempts:
                    raise TaskclusterConnectionError(f"{label}: {problem}, after {attempts} attempt(s)",
                                                     superExc=exc) from exc
            else:
                if response.status_code < 500 or attempt == attempts:
                    return response_result(label, response.status_code, response.reason, response.content, response)
                problem = f"HTTP {response.status_code} from {method.upper()} {url}"
            delay = calculateSleepTime(attempt)
            log.warning("%s: %s; retrying in %.2f s (attempt %d of %d)", label, problem, delay, attempt + 1, attempts)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, label: str, method: str, url: str, body: Optional[bytes]) -> requests.Response:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self._credentials is not None:
            headers["Authorization"] = auth.hawk_header(
                self._credentials, self._ext, method, url, body or b"",
                "application/json" if body is not None else "")
        log.debug("%s: %s %s", label, method.upper(), url)
        prepared = self.session.prepare_request(requests.Request(method.upper(), url, data=body, headers=headers))
        # requests un-escapes %2E (so urllib3 would then resolve '..'); send exactly what was signed.
        prepared.url = url
        settings = self.session.merge_environment_settings(url, {}, None, None, None)
        # Never follow a redirect: a 3xx is an answer (as in the official client), and following
        # one would carry the signed request and its body to wherever it points.
        return self.session.send(prepared, timeout=self._timeout, allow_redirects=False, **settings)


def _official_entry(entry: FunctionEntry) -> Dict[str, Any]:
    """An entry as the official client's `funcinfo` holds it (its keys; query only when there is one)."""
    info: Dict[str, Any] = {"args": list(entry.args), "method": entry.method, "name": entry.name,
                            "route": entry.route, "stability": entry.stability}
    optional = (("input", entry.input), ("output", entry.output), ("query", list(entry.query)))
    info.update({key: value for key, value in optional if value})
    return info
