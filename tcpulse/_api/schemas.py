"""The JSON schemas of a reference set, read and compiled into checks of message bodies and payloads.

Owns: where a schema named by a reference lives (`schema_id`: an exchange's `schema`, or a
method's `input`/`output`, such as 'v1/task.json#', under `/schemas/<serviceName>/`), reading it
from the set's own folder (so a pulled set is checked against its deployment's schemas),
resolving its `$ref`s, and the compiled check of each schema (`checker`, cached per set).
What is checked and how is `tcpulse.validator`'s business; what to do with a problem is the
caller's (the listener dead-letters or warns: `tcpulse.bodycheck`), except for the client option
`validate`, whose error `check_call` raises.

Pure module: imports only the standard library, `tcpulse.references`, `tcpulse.validator` and
`tcpulse.errors`.

Example:
    >>> from tcpulse.references import open_set
    >>> check = checker(open_set("bundled"), "/schemas/queue/v1/task-completed-message.json")
    >>> print(check({"version": 1}, ()))
    $: required property 'status' is missing (rule: required)
"""
import functools
import json
import posixpath
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from tcpulse.errors import ClientUsageError, InvalidReference
from tcpulse.references import FunctionEntry, ReferenceSet, active_set
from tcpulse._api.typenames import schema_id
from tcpulse._api.validator import Resolver, Validate, compile_schema


class SchemaStore:
    """The schemas of one reference set, each file read once."""

    def __init__(self, refset: ReferenceSet) -> None:
        self.refset = refset
        self._documents: Dict[str, Any] = {}

    def document(self, sid: str) -> Any:
        """The schema file with absolute id `sid` ('/schemas/queue/v1/task.json')."""
        if sid not in self._documents:
            path = Path(self.refset.root) / sid.lstrip("/")
            if not sid.startswith("/schemas/") or ".." in sid.split("/") or not path.is_file():
                raise InvalidReference(
                    f"schema {sid} is not in the {self.refset.label} reference set ({self.refset.root}): "
                    f"validation needs the set's schemas (a set written by 'tcpulse references pull' has them; "
                    f"the legacy-2018 set has none)")
            with open(path, encoding="utf-8") as handle:
                self._documents[sid] = json.load(handle)
        return self._documents[sid]

    def resolved(self, sid: str, fragment: str = "") -> Any:
        """The part of schema `sid` that a JSON pointer `fragment` ('/properties/taskId') names."""
        node = self.document(sid)
        for part in (p for p in fragment.split("/") if p):
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise InvalidReference(f"schema {sid}#{fragment}: no such place in the schema") from None
        return node

    def resolver(self, sid: str) -> Resolver:
        """The function that resolves `$ref`s found inside schema `sid`."""
        def resolve(ref: str) -> Tuple[Any, Resolver]:
            target, _, fragment = ref.partition("#")
            target_id = sid if not target else posixpath.normpath(posixpath.join(posixpath.dirname(sid), target))
            return self.resolved(target_id, fragment), self.resolver(target_id)
        return resolve


@functools.lru_cache(maxsize=None)
def store(refset: ReferenceSet) -> SchemaStore:
    """The one schema store of a reference set."""
    return SchemaStore(refset)


@functools.lru_cache(maxsize=None)
def checker(refset: ReferenceSet, sid: str) -> Validate:
    """The compiled check of schema `sid` of a set: `check(value, ())` returns the first
    `tcpulse.validator.Problem` or None."""
    schemas = store(refset)
    return compile_schema(schemas.document(sid), schemas.resolver(sid))


def exchange_schema(refset: ReferenceSet, service: str, name: str) -> Optional[str]:
    """The schema id of exchange `name` of events class `service` in a set, None when the
    reference names none.

    Example:
        >>> from tcpulse.references import open_set
        >>> exchange_schema(open_set("bundled"), "QueueEvents", "taskCompleted")
        '/schemas/queue/v1/task-completed-message.json'
    """
    reference = refset.get(service)
    if reference is None:
        return None
    entry = next((e for e in reference.entries if e.name == name), None)
    relative = getattr(entry, "schema", None)
    return schema_id(reference.service_name, relative) if relative else None


def check_call(label: str, service_name: str, entry: FunctionEntry, bound: Any) -> None:
    """The client option `validate`: raise ClientUsageError, before anything is sent, when a
    call's payload does not match the method's input schema (from the active set) or a query
    value is neither a string nor an integer. The error names the property and the rule.

    Example:
        >>> from tcpulse._rest.calls import BoundCall
        >>> entry = next(e for e in active_set().get("Index").entries if e.name == "insertTask")
        >>> check_call("Index.insertTask", "index", entry, BoundCall({"namespace": "a"}, payload={"rank": 0}))
        Traceback (most recent call last):
        ...
        tcpulse.errors.ClientUsageError: Index.insertTask: payload does not match v1/insert-task-request.json#: $: required property 'taskId' is missing (rule: required)
    """
    for key, value in bound.query.items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ClientUsageError(f"{label}: query argument {key!r} must be a string or an integer (got {value!r})")
    if entry.input and bound.payload is not None:
        problem = checker(active_set(), schema_id(service_name, entry.input))(bound.payload, ())
        if problem is not None:
            raise ClientUsageError(f"{label}: payload does not match {entry.input}: {problem}")
