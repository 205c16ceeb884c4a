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
from typing import Any, Callable, Dict, List, Optional

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
    }
    for entry in reference.entries:
        if hasattr(base, entry.name) or entry.name in CALL_KEYWORDS:
            raise InvalidReference(f"{reference.path}: entry {entry.name!r} would hide a client attribute")
        attributes[entry.name] = _method(reference.name, entry)
    return type(reference.name, (base,), attributes)


def generated_class(module: str, name: str, asynchronous: bool = False) -> type:
    """The class `name` of package `module` from the active set, reading only its reference.

    Asynchronous classes (on `tcpulse.aio.client.AsyncClient`, loaded only once a class is
    built) exist for API references only; sync ones for events references too. A name absent
    here but shipped in another set gets that set's hint in the AttributeError.
    """
    from tcpulse.references import active_set, why_missing

    missing = f"module {module!r} has no attribute {name!r}"
    # Class names only: lookups such as '__wrapped__' by inspect or pytest must not fix the set.
    if not name[:1].isupper():
        raise AttributeError(missing)
    reference = active_set().get(name)
    if reference is None:
        why = why_missing(name)
        raise AttributeError(f"{missing}: {why}" if why else missing)
    if reference.kind == "exchanges":
        if asynchronous:
            raise AttributeError(missing)
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


def _method(class_name: str, entry: FunctionEntry) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call(entry, args, kwargs)

    method.__name__ = entry.name
    method.__qualname__ = f"{class_name}.{entry.name}"
    method.__doc__ = _method_doc(class_name, entry)
    return method


def _class_doc(reference: Reference) -> str:
    return (f"{reference.title}\n\n{reference.description}\n\n"
            f"Example:\n    client = tcpulse.{reference.name}({{'rootUrl': 'https://tc.example.com'}})")


def _method_doc(class_name: str, entry: FunctionEntry) -> str:
    call_args = [*entry.args, *(["payload"] if entry.input else [])]
    lines = [entry.title, "", entry.description.strip(), "",
             f"{entry.method.upper()} {entry.route}  (stability: {entry.stability})"]
    if entry.query:
        lines.append(f"Query arguments: {', '.join(entry.query)}")
    if entry.input:
        lines.append(f"Input schema: {entry.input}")
    if entry.output:
        lines.append(f"Output schema: {entry.output}")
    lines += ["", "Example:", f"    {class_name[0].lower()}{class_name[1:]}.{entry.name}({', '.join(call_args)})"]
    return "\n".join(lines)
