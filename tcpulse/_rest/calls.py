"""A generated method's call turned into a request, and a response turned into a result.

Owns: binding the four calling conventions of the official client to route arguments, payload
and query (`bind_arguments`), the URL of a call (`call_url`: every route argument stays one
path segment, `.` and `..` included), and the result or tcpulse error of an answer
(`response_result`: the official client's rules, 3xx answered like 2xx).

Transport-independent, so the requests-based client and the async one share it: imports
neither requests nor aiohttp (nor kombu).

Example:
    >>> from tcpulse.references import load_all
    >>> entry = next(e for e in load_all()["Queue"].entries if e.name == "task")
    >>> call_url("https://tc/api/queue/v1", entry, bind_arguments("Queue.task", entry, ("..",), {}))
    'https://tc/api/queue/v1/task/%2E%2E'
"""
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode

from tcpulse.errors import ClientUsageError, TaskclusterAuthFailure, TaskclusterRestFailure
from tcpulse._api.hints import did_you_mean
from tcpulse.references import FunctionEntry

CALL_KEYWORDS = ("payload", "query", "params", "paginationHandler", "paginationLimit")
_MISSING: Any = object()


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
                    f"{label}() got an unexpected route argument {name!r}.{did_you_mean(name, entry.args)} "
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
            raise ClientUsageError(f"{label}(): unknown query argument {key!r}.{did_you_mean(key, entry.query)} "
                                   f"Valid: {valid}")
    # None means "not given", so query={'continuationToken': page.get('continuationToken')} works.
    return {key: value for key, value in query.items() if value is not None}


def _check_handler(label: str, handler: Any) -> Optional[Callable[[Any], Any]]:
    if handler is not None and not callable(handler):
        raise ClientUsageError(f"{label}(): paginationHandler must be callable (got {handler!r})")
    return handler


def path_segment(value: str) -> str:
    """`value` percent-encoded as one path segment: '/' encoded, and '.' or '..' encoded too,
    since HTTP libraries and servers would otherwise resolve them as "this" or "parent" folder.

    Example:
        >>> path_segment("public/build.log"), path_segment(".."), path_segment("a.b")
        ('public%2Fbuild.log', '%2E%2E', 'a.b')
    """
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def call_url(base_url: str, entry: FunctionEntry, bound: BoundCall, query: Optional[Mapping[str, Any]] = None) -> str:
    """The URL of a bound call under `base_url` (`query` replaces the bound query when given).

    Example:
        >>> from tcpulse.references import load_all
        >>> entry = next(e for e in load_all()["Queue"].entries if e.name == "listTaskGroup")
        >>> call_url("https://tc/api/queue/v1", entry, BoundCall(params={"taskGroupId": "g"}), {"limit": 2})
        'https://tc/api/queue/v1/task-group/g/list?limit=2'
    """
    route = entry.route
    for name, value in bound.params.items():
        route = route.replace(f"<{name}>", path_segment(value))
    url = f"{base_url}/{route.lstrip('/')}"
    query = bound.query if query is None else query
    return f"{url}?{urlencode(query)}" if query else url


def response_result(label: str, status: int, reason: str, content: bytes, response: Any = None) -> Any:
    """The result of an answer, as the official client gives it, or the error it raises.

    Below 400 (redirects included: the client does not follow them) the JSON body is the result,
    None for 204 or an empty 2xx body, `{"response": response}` for any other body that is not
    JSON (so a bare redirect's Location header stays readable).
    4xx and 5xx raise TaskclusterRestFailure (TaskclusterAuthFailure for 401) carrying
    `status_code`, `body` and the server's message.

    Example:
        >>> response_result("Queue.getArtifact", 303, "See Other", b'{"url": "https://s/x"}')
        {'url': 'https://s/x'}
    """
    if status < 400:
        if status == 204 or (not content and status < 300):
            return None
        try:
            return json.loads(content)
        except (ValueError, RecursionError):  # nested too deep for the parser: not JSON we can use
            return {"response": response}
    try:
        body = json.loads(content)
    except (ValueError, RecursionError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    error = TaskclusterAuthFailure if status == 401 else TaskclusterRestFailure
    text = f"{label}: HTTP {status} {reason}: {message or 'no message from the server'}"
    raise error(text, status_code=status, body=body)
