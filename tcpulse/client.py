"""The REST client core that every generated service class (`Queue`, `Index`, ...) shares.

Owns: client options and `optionsFromEnvironment`, service URLs (rootUrl, legacy baseUrl),
binding the four calling conventions of the official client to route arguments, payload and
query, the HTTP exchange itself (one pooled `requests.Session` per client, a timeout on every
request, retries with backoff and jitter), and turning responses and transport errors into
tcpulse errors: `requests` exceptions are translated in one place, `_request`.

Imports requests; signing is auth.py's, the generated classes are services.py's. Never kombu.

Example:
    >>> import tcpulse
    >>> queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    >>> queue.buildUrl("task", "abc")
    'https://tc.example.com/api/queue/v1/task/abc'
"""
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode

import requests
import requests.adapters
import requests.utils

from . import auth
from .errors import ClientUsageError, TaskclusterAuthFailure, TaskclusterConnectionError, TaskclusterRestFailure
from .exchanges import _did_you_mean
from .references import FunctionEntry, Reference

log = logging.getLogger(__name__)
if os.environ.get("DEBUG_TASKCLUSTER_CLIENT"):
    log.setLevel(logging.DEBUG)
    if not log.handlers:
        log.addHandler(logging.StreamHandler())

DEFAULT_OPTIONS: Dict[str, Any] = {"maxRetries": 5, "signedUrlExpiration": 15 * 60, "timeout": 30.0}
# exchangePrefix is accepted (and unused here) so one options dict can serve *Events classes too.
OPTION_NAMES = ("rootUrl", "baseUrl", "credentials", "authorizedScopes", "maxRetries",
                "signedUrlExpiration", "timeout", "exchangePrefix")
CALL_KEYWORDS = ("payload", "query", "params", "paginationHandler", "paginationLimit")
_LEGACY_ROOT_URL = "https://taskcluster.net"
_MISSING: Any = object()


def optionsFromEnvironment(defaults: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Client options from TASKCLUSTER_ROOT_URL, _CLIENT_ID, _ACCESS_TOKEN and _CERTIFICATE.

    `defaults` are kept where the environment says nothing.

    Example:
        >>> optionsFromEnvironment({"maxRetries": 3})["maxRetries"]
        3
    """
    options: Dict[str, Any] = dict(defaults or {})
    if os.environ.get("TASKCLUSTER_ROOT_URL"):
        options["rootUrl"] = os.environ["TASKCLUSTER_ROOT_URL"]
    names = {"clientId": "TASKCLUSTER_CLIENT_ID", "accessToken": "TASKCLUSTER_ACCESS_TOKEN",
             "certificate": "TASKCLUSTER_CERTIFICATE"}
    credentials = {key: os.environ[var] for key, var in names.items() if os.environ.get(var)}
    if credentials:
        options["credentials"] = credentials
    return options


def backoff_delay(retry: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `retry` (1 = the first retry): 0.1 s * 2^(retry-1), +-25 %, <= 30 s.

    Example:
        >>> backoff_delay(3, rand=lambda: 0.5)
        0.4
    """
    delay = 0.1 * 2 ** (retry - 1)
    return min(delay * (1 + 0.25 * (2 * rand() - 1)), 30.0)


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ClientUsageError for an unknown option name or a value of the wrong kind.

    Example:
        >>> try:
        ...     check_options({**DEFAULT_OPTIONS, "rootURL": "https://tc"})
        ... except ClientUsageError as error:
        ...     print(str(error).split(" Valid")[0])
        unknown client option 'rootURL'. Did you mean 'rootUrl'?
    """
    for name in options:
        if name not in OPTION_NAMES:
            raise ClientUsageError(f"unknown client option {name!r}.{_did_you_mean(name, OPTION_NAMES)} "
                                   f"Valid options: {', '.join(OPTION_NAMES)}")
    retries = options.get("maxRetries")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ClientUsageError(f"option 'maxRetries' must be an int >= 0 (got {retries!r})")
    for name in ("timeout", "signedUrlExpiration"):
        value = options.get(name)
        values = value if isinstance(value, (tuple, list)) and name == "timeout" else (value,)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            raise ClientUsageError(f"option {name!r} must be a number of seconds > 0 (got {value!r})")
    for name in ("rootUrl", "baseUrl"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise ClientUsageError(f"option {name!r} must be a URL string (got {options[name]!r})")
    scopes = options.get("authorizedScopes")
    if scopes is not None and (isinstance(scopes, str) or not all(isinstance(s, str) for s in scopes)):
        raise ClientUsageError(f"option 'authorizedScopes' must be a list of scope strings (got {scopes!r})")


@dataclass
class BoundCall:
    """A generated method's arguments sorted out: route params, payload, query and pagination.

    Example:
        >>> BoundCall(params={"taskId": "abc"}).query
        {}
    """
    params: Dict[str, str]
    payload: Any = None
    query: Dict[str, Any] = field(default_factory=dict)
    pagination_handler: Optional[Callable[[Any], Any]] = None
    pagination_limit: Optional[int] = None


def bind_arguments(label: str, entry: FunctionEntry, args: Tuple[Any, ...], kwargs: Mapping[str, Any],
                   need_payload: bool = True) -> BoundCall:
    """Accept the official client's four calling conventions; any misuse raises ClientUsageError.

    `m(v1, v2, payload)`, `m(payload, k1=v1)`, `m(payload=p, query=q, params={k1: v1})`,
    `m(v1, v2, payload=p, query=q)`.

    Example:
        >>> from tcpulse.references import load_all
        >>> entry = next(e for e in load_all()["Queue"].entries if e.name == "listTaskGroup")
        >>> bind_arguments("Queue.listTaskGroup", entry, ("g",), {"query": {"limit": 5}}).query
        {'limit': 5}
    """
    special = {key: kwargs[key] for key in CALL_KEYWORDS if key in kwargs}
    named = _named_route_args(label, entry, kwargs, special.get("params"))
    positional = list(args)
    payload = special.get("payload", _MISSING)
    expected_positional = 0 if named else len(entry.args)
    if entry.input and payload is _MISSING and len(positional) == expected_positional + 1:
        payload = positional.pop()
    params = _route_params(label, entry, positional, named)
    return BoundCall(params=params, payload=_check_payload(label, entry, payload, need_payload),
                     query=_check_query(label, entry, special.get("query")),
                     pagination_handler=_check_handler(label, special.get("paginationHandler")),
                     pagination_limit=special.get("paginationLimit"))


def _named_route_args(label: str, entry: FunctionEntry, kwargs: Mapping[str, Any],
                      params: Any) -> Dict[str, Any]:
    if params is not None and not isinstance(params, Mapping):
        raise ClientUsageError(f"{label}(): params must be a dict of route arguments (got {params!r})")
    flat = {key: value for key, value in kwargs.items() if key not in CALL_KEYWORDS}
    for source in (flat, params or {}):
        for name in source:
            if name not in entry.args:
                valid = ", ".join(entry.args) or "none"
                raise ClientUsageError(
                    f"{label}() got an unexpected route argument {name!r}.{_did_you_mean(name, entry.args)} "
                    f"Route arguments: {valid}; keywords: {', '.join(CALL_KEYWORDS)}")
    both = set(flat) & set(params or {})
    if both:
        raise ClientUsageError(f"{label}(): route argument {sorted(both)[0]!r} is given twice (keyword and params)")
    return {**(params or {}), **flat}


def _route_params(label: str, entry: FunctionEntry, positional: Sequence[Any],
                  named: Mapping[str, Any]) -> Dict[str, str]:
    wanted = ", ".join(entry.args) or "no route arguments"
    if positional and named:
        raise ClientUsageError(f"{label}(): give route arguments ({wanted}) either positionally or by "
                               "name, not both")
    if not named and len(positional) != len(entry.args):
        payload = " and a payload" if entry.input else ""
        if not entry.input and len(positional) == len(entry.args) + 1:
            payload = f" and no payload ({entry.method.upper()} {entry.route} has no input schema)"
        raise ClientUsageError(f"{label}() takes {len(entry.args)} route argument(s) ({wanted}){payload}; "
                               f"got {len(positional)} positional argument(s)")
    values = dict(zip(entry.args, positional)) if positional else dict(named)
    missing = [name for name in entry.args if name not in values]
    if missing:
        raise ClientUsageError(f"{label}() is missing route argument(s) {', '.join(missing)} (takes: {wanted})")
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise ClientUsageError(f"{label}(): route argument {name!r} must be a non-empty string or an int "
                                   f"(got {value!r})")
    return {name: str(value) for name, value in values.items()}


def _check_payload(label: str, entry: FunctionEntry, payload: Any, need_payload: bool) -> Any:
    if payload is _MISSING:
        payload = None
    if entry.input is None and payload is not None:
        raise ClientUsageError(f"{label}() takes no payload ({entry.method.upper()} {entry.route} "
                               "has no input schema)")
    if entry.input and payload is None and need_payload:
        raise ClientUsageError(f"{label}() requires a payload (input schema {entry.input})")
    return payload


def _check_query(label: str, entry: FunctionEntry, query: Any) -> Dict[str, Any]:
    if query is None:
        return {}
    if not isinstance(query, Mapping):
        raise ClientUsageError(f"{label}(): query must be a dict (got {query!r})")
    for key in query:
        if key not in entry.query:
            valid = ", ".join(entry.query) if entry.query else f"{label} takes no query arguments"
            raise ClientUsageError(f"{label}(): unknown query argument {key!r}.{_did_you_mean(key, entry.query)} "
                                   f"Valid: {valid}")
    # None means "not given", so query={'continuationToken': page.get('continuationToken')} works.
    return {key: value for key, value in query.items() if value is not None}


def _check_handler(label: str, handler: Any) -> Optional[Callable[[Any], Any]]:
    if handler is not None and not callable(handler):
        raise ClientUsageError(f"{label}(): paginationHandler must be callable (got {handler!r})")
    return handler


def _new_session(base_url: str) -> requests.Session:
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

    Example:
        >>> import tcpulse
        >>> tcpulse.Index({"baseUrl": "http://127.0.0.1:1/v1"}).buildUrl("findTask", "a.b")
        'http://127.0.0.1:1/v1/task/a.b'
    """

    reference: ClassVar[Optional[Reference]] = None
    entries: ClassVar[Dict[str, FunctionEntry]] = {}

    def __init__(self, options: Optional[Mapping[str, Any]] = None,
                 session: Optional[requests.Session] = None):
        merged = {**DEFAULT_OPTIONS, **optionsFromEnvironment(), **dict(options or {})}
        check_options(merged)
        self.options = merged
        self._credentials = auth.Credentials.from_option(merged.get("credentials"))
        self._ext = (auth.hawk_ext(self._credentials, merged.get("authorizedScopes"))
                     if self._credentials else None)
        self._base_url = self._service_url(merged)
        self._timeout = tuple(merged["timeout"]) if isinstance(merged["timeout"], list) else merged["timeout"]
        self.session = session or _new_session(self._base_url)

    def _service_url(self, options: Mapping[str, Any]) -> str:
        ref = self.reference
        if options.get("baseUrl"):
            return options["baseUrl"].rstrip("/")
        root = (options.get("rootUrl") or "").rstrip("/")
        if ref is None:
            raise ClientUsageError(f"{type(self).__name__} has no reference; give the 'baseUrl' option")
        if root == _LEGACY_ROOT_URL:
            return f"https://{ref.service_name}.taskcluster.net/{ref.api_version}"
        if root:
            return f"{root}/api/{ref.service_name}/{ref.api_version}"
        return (ref.base_url or "").rstrip("/")

    def __repr__(self) -> str:
        client_id = self._credentials.clientId if self._credentials else None
        return f"<{type(self).__name__} {self._base_url} clientId={client_id!r}>"

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
        route = entry.route
        for name, value in bound.params.items():
            route = route.replace(f"<{name}>", quote(value, safe=""))
        url = f"{self._base_url}/{route.lstrip('/')}"
        query = bound.query if query is None else query
        return f"{url}?{urlencode(query)}" if query else url

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
                    return _result(label, response)
                problem = f"HTTP {response.status_code} from {method.upper()} {url}"
            delay = backoff_delay(attempt)
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
        return self.session.request(method.upper(), url, data=body, headers=headers, timeout=self._timeout)


def _result(label: str, response: requests.Response) -> Any:
    """The decoded body of a 2xx response; any other status raises with the server's message."""
    status = response.status_code
    if 200 <= status < 300:
        if status == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return {"response": response}
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    error = TaskclusterAuthFailure if status == 401 else TaskclusterRestFailure
    raise error(f"{label}: HTTP {status} {response.reason}: {message or 'no message from the server'}",
                status_code=status, body=body)
