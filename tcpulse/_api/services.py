"""The generated REST client classes: one per API reference, one method per entry.

Owns: `client_class(reference, base)`, which builds e.g. `Queue` with `type()` on `base`
(the sync `tcpulse.client.BaseClient` by default, `tcpulse.aio.client.AsyncClient` for
`tcpulse.aio`), and `generated_class`/`generated_names`, the lookups behind the module
`__getattr__`/`__dir__` of both `tcpulse` and `tcpulse.aio`. Every generated method is the same
thin closure over `base._call`; its name and docstring come from the reference, so
`help(tcpulse.Queue.task)` reads like the Taskcluster docs.

Imports client.py (hence requests) only when building a sync class, aio/client.py (hence
aiohttp) only when building an async one; `tcpulse/__init__.py` loads this module lazily.

Example:
    >>> from tcpulse.references import active_set
    >>> Queue = client_class(active_set().get("Queue"))
    >>> Queue.listTaskGroup.__name__, Queue.__name__
    ('listTaskGroup', 'Queue')
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tcpulse._api.hints import did_you_mean

from tcpulse._rest.calls import CALL_KEYWORDS
from tcpulse.errors import InvalidReference
from tcpulse.references import FunctionEntry, Reference


def client_class(reference: Reference, base: Optional[type] = None) -> type:
    """The client class for an API reference (`kind == 'api'`), a subclass of `base`."""
    if base is None:
        from tcpulse.client import BaseClient as base
    if reference.kind != "api":
        raise InvalidReference(f"{reference.path}: {reference.name} is not an API reference (kind {reference.kind!r})")
    attributes: Dict[str, Any] = {
        "__doc__": _class_doc(reference),
        "__module__": "tcpulse",
        "reference": reference,
        "entries": {entry.name: entry for entry in reference.entries},
        "__getattr__": _missing_entry,
    }
    for entry in reference.entries:
        if hasattr(base, entry.name) or entry.name in CALL_KEYWORDS:
            raise InvalidReference(f"{reference.path}: entry {entry.name!r} would hide a client attribute")
        attributes[entry.name] = _method(reference.name, entry, reference.service_name)
    return type(reference.name, (base,), attributes)


def generated_class(module: str, name: str, asynchronous: bool = False, public: Sequence[str] = ()) -> type:
    """The class `name` of package `module` from the active set, reading only its reference.

    Asynchronous classes (on `tcpulse.aio.client.AsyncClient`, loaded only once a class is
    built) exist for API references only; sync ones for events references too. A name absent
    here but shipped in another set gets that set's hint in the AttributeError; any other
    gets the closest of the set's classes and the module's other `public` names.
    """
    from tcpulse.references import active_set, why_missing

    missing = f"module {module!r} has no attribute {name!r}"
    if name.startswith("__"):  # '__wrapped__' and such, asked by inspect or pytest: no hint
        raise AttributeError(missing)
    # Class names only: a lowercase lookup must not fix the set.
    if not name[:1].isupper():
        raise AttributeError(_hinted(missing, did_you_mean(name, public)))
    reference = active_set().get(name)
    if reference is None:
        why = why_missing(name)
        raise AttributeError(f"{missing}: {why}" if why else
                             _hinted(missing, did_you_mean(name, [*generated_names(api_only=asynchronous), *public])))
    if reference.kind == "exchanges" and asynchronous:
        raise AttributeError(missing)
    key = (module, name)
    if key not in _BUILT:
        _BUILT[key] = _build(module, reference, asynchronous)
    return _BUILT[key]


# Every class built, once: `tcpulse.Queue`, `tcpulse.queue.Queue` and `tcpulse.auth.Auth` are
# one object (the set is fixed once a class is built, so the key needs no set).
_BUILT: Dict[Tuple[str, str], type] = {}


def _build(module: str, reference: Reference, asynchronous: bool) -> type:
    if reference.kind == "exchanges":
        from tcpulse._api.exchanges import events_class
        return events_class(reference)
    base: Optional[type] = None
    if asynchronous:
        from tcpulse.aio.client import AsyncClient as base
    cls = client_class(reference, base)
    cls.__module__ = module
    return cls


def generated_names(api_only: bool = False) -> List[str]:
    """The class names `generated_class` can build from the active set, without reading references."""
    from tcpulse.references import active_set

    return active_set().names("api" if api_only else None)


def _missing_entry(self: Any, name: str) -> Any:
    # Runs only once normal lookup failed: a misspelt method gets the closest entry's name.
    hint = "" if name.startswith("_") else did_you_mean(name, list(type(self).entries))
    raise AttributeError(_hinted(f"{type(self).__name__!r} object has no attribute {name!r}", hint))


def _hinted(message: str, hint: str) -> str:
    return f"{message}.{hint}" if hint else message


def _method(class_name: str, entry: FunctionEntry, service_name: str) -> Callable[..., Any]:

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call(entry, args, kwargs)

    method.__name__ = entry.name
    method.__qualname__ = f"{class_name}.{entry.name}"
    method.__doc__ = method_doc(class_name, entry, service_name)
    return method


def _class_doc(reference: Reference) -> str:
    return (f"{reference.title}\n\n{reference.description}\n\n"
            f"Example:\n    client = tcpulse.{reference.name}({{'rootUrl': 'https://tc.example.com'}})")


def method_doc(class_name: str, entry: FunctionEntry, service_name: str = "") -> str:
    """What `help()` and `__doc__` of a generated method show: title, description, route,
    route arguments, query, scopes, input and output schemas (with their tcpulse.types names).

    Example:
        >>> from tcpulse.references import open_set
        >>> queue = open_set("bundled").get("Queue")
        >>> entry = next(e for e in queue.entries if e.name == "claimWork")
        >>> [l for l in method_doc("Queue", entry, "queue").splitlines() if l.startswith(("Route", "Scopes"))]
        ['Route arguments: taskQueueId', 'Scopes: all of: queue:claim-work:<taskQueueId>, queue:worker-id:<workerGroup>/<workerId>']
    """
    from tcpulse._api.typenames import message_type, schema_id

    call_args = [*entry.args, *(["payload"] if entry.input else [])]
    lines = [entry.title, "", entry.description.strip(), "",
             f"{entry.method.upper()} {entry.route}  (stability: {entry.stability})"]
    if entry.args:
        lines.append(f"Route arguments: {', '.join(entry.args)}")
    if entry.query:
        lines.append(f"Query arguments: {', '.join(entry.query)}")
    if entry.scopes:
        lines.append(f"Scopes: {scope_text(entry.scopes)}")
    for label, schema in (("Input", entry.input), ("Output", entry.output)):
        if schema:
            typed = f" (type {message_type(schema_id(service_name, schema))})" if service_name else ""
            lines.append(f"{label} schema: {schema}{typed}")
    lines += ["", "Example:", f"    {class_name[0].lower()}{class_name[1:]}.{entry.name}({', '.join(call_args)})"]
    return "\n".join(lines)


def scope_text(expression: Any) -> str:
    """A scope expression of a reference, as one line of text (at most 200 characters).

    Example:
        >>> scope_text({"AllOf": ["a", {"AnyOf": ["b", "c"]}]})
        'all of: a, any of (b, c)'
    """
    def text(node: Any, top: bool) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and ("AllOf" in node or "AnyOf" in node):
            kind = "AllOf" if "AllOf" in node else "AnyOf"
            inner = ", ".join(text(item, False) for item in node[kind])
            word = "all of" if kind == "AllOf" else "any of"
            return f"{word}: {inner}" if top else f"{word} ({inner})"
        if isinstance(node, dict) and "if" in node:
            return f"if {node['if']}: {text(node.get('then'), False)}"
        if isinstance(node, dict) and "for" in node:
            return f"for each {node['for']} in {node.get('in')}: {text(node.get('each'), False)}"
        return str(node)
    line = text(expression, True)
    return line if len(line) <= 200 else line[:197] + "..."
