"""One Taskcluster reference document, checked and turned into frozen records.

Owns: the `Reference`, `FunctionEntry`, `ExchangeEntry` and `RoutingKeyField` records, the
check of one document (every problem collected, raised once), and the class-name rule
(`class_name`). Which documents exist and which set is active is `sets.py`'s business.

Pure module: imports only the standard library and `tcpulse.errors` (never kombu or requests).

Example:
    >>> doc = {"$schema": "/schemas/common/exchanges-reference-v0.json#", "serviceName": "queue",
    ...        "title": "Queue", "exchangePrefix": "exchange/taskcluster-queue/v1/", "entries": []}
    >>> parse_document(doc, "queue/v1/exchanges.json").name
    'QueueEvents'
"""
import json
from pathlib import Path
from typing import Any, List, NamedTuple, Optional, Tuple, Union

from tcpulse.errors import InvalidReference

KINDS = ("api", "exchanges")
# How a deployment's document says which kind it is (`$schema`, e.g. '/schemas/common/api-reference-v0.json#').
SCHEMA_KINDS = {"api-reference": "api", "exchanges-reference": "exchanges"}

# The records are NamedTuples: frozen, and cheaper to define than dataclasses, whose import
# alone would cost `import tcpulse` a fifth of its time.


class RoutingKeyField(NamedTuple):
    """One word (or, for `multiple_words`, the trailing run of words) of a routing key."""
    name: str
    summary: str
    required: bool
    multiple_words: bool
    constant: Optional[str] = None


class ExchangeEntry(NamedTuple):
    """A topic exchange a service publishes to, with its routing-key layout."""
    name: str
    title: str
    description: str
    exchange: str
    schema: str
    routing_key: Tuple[RoutingKeyField, ...]


class FunctionEntry(NamedTuple):
    """One REST endpoint of a service."""
    name: str
    title: str
    description: str
    stability: str
    method: str
    route: str
    args: Tuple[str, ...]
    query: Tuple[str, ...]
    input: Optional[str]
    output: Optional[str]
    scopes: Any


class Reference(NamedTuple):
    """A whole reference file: one REST service (`kind == 'api'`) or one set of exchanges."""
    name: str
    kind: str
    path: str
    title: str
    description: str
    service_name: str
    api_version: str
    base_url: Optional[str]
    exchange_prefix: Optional[str]
    entries: Tuple[Union[FunctionEntry, ExchangeEntry], ...]


def key_layout(fields: Tuple[RoutingKeyField, ...]) -> str:
    """A routing key's words by name: constants as themselves, the multi-word field with '...'.

    Example:
        >>> key_layout((RoutingKeyField("kind", "", True, False, "primary"), RoutingKeyField("rest", "", False, True)))
        'primary.rest...'
    """
    return ".".join(f.constant or (f"{f.name}..." if f.multiple_words else f.name) for f in fields)


def class_name(service_name: str, kind: str) -> str:
    """The class the official client generates for a service: its serviceName in CamelCase,
    plus 'Events' for an exchanges reference.

    Example:
        >>> class_name("worker-manager", "exchanges"), class_name("web-server", "api")
        ('WorkerManagerEvents', 'WebServer')
    """
    base = "".join(word[:1].upper() + word[1:] for word in service_name.split("-"))
    return base + ("Events" if kind == "exchanges" else "")


def kind_of_schema(schema: Any) -> Optional[str]:
    """'api' or 'exchanges' from a document's `$schema`, None for any other document
    (logs and metrics references, a manifest).

    Example:
        >>> kind_of_schema("/schemas/common/exchanges-reference-v0.json#")
        'exchanges'
    """
    if not isinstance(schema, str):
        return None
    stem = schema.rstrip("#").rsplit("/", 1)[-1]
    return next((kind for prefix, kind in SCHEMA_KINDS.items() if stem.startswith(prefix)), None)


def read_json(path: Union[str, Path]) -> Any:
    """A JSON file's content; unreadable or malformed is an `InvalidReference` naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidReference(f"{path}: cannot be read as JSON ({exc})") from exc


def load_file(path: Union[str, Path]) -> Reference:
    """Read and check one reference file, in either layout `parse_document` takes."""
    return parse_document(read_json(path), str(path))


def parse_document(doc: Any, path: str) -> Reference:
    """Check one reference document and build its record; every problem is reported in one error.

    Two layouts: a deployment's document as served under `/references/` (kind from `$schema`,
    class name from `serviceName`), or the 2018 set's wrapper `{"name", "kind", "reference"}`.
    """
    problems: List[str] = []
    if isinstance(doc, dict) and "reference" in doc:
        ref = _build_reference(doc, path, problems)
    else:
        ref = _build_deployment_reference(doc, path, problems)
    if problems:
        raise InvalidReference(f"{path}: " + "; ".join(problems))
    return ref


def _build_deployment_reference(doc: Any, path: str, problems: List[str]) -> Reference:
    schema = doc.get("$schema") if isinstance(doc, dict) else None
    kind = kind_of_schema(schema)
    if kind is None:
        problems.append(f"$schema must name an API or exchanges reference format (got {schema!r})")
    service = doc.get("serviceName") if isinstance(doc, dict) else None
    name = class_name(service, kind or "api") if isinstance(service, str) else ""
    wrapper = {"name": name, "kind": kind or "", "reference": doc}
    return _build_reference(wrapper, path, problems, where="document")


class _Fields:
    """Reads typed fields out of one JSON object, noting each problem instead of stopping."""

    def __init__(self, obj: Any, where: str, problems: List[str]):
        self.obj = obj if isinstance(obj, dict) else {}
        self.where = where
        self.problems = problems
        if not isinstance(obj, dict):
            problems.append(f"{where} must be an object (got {type(obj).__name__})")

    def get(self, key: str, kind: type, required: bool = True, default: Any = None) -> Any:
        if key not in self.obj:
            if required:
                self.problems.append(f"{self.where} is missing '{key}'")
            return default
        value = self.obj[key]
        if not isinstance(value, kind):
            self.problems.append(
                f"{self.where}.{key} must be {kind.__name__} (got {type(value).__name__})")
            return default
        return value


def _build_reference(doc: Any, path: str, problems: List[str], where: str = "reference") -> Reference:
    top = _Fields(doc, "file", problems)
    name = top.get("name", str, default="")
    kind = top.get("kind", str, default="")
    if kind and kind not in KINDS:
        problems.append(f"file.kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if name and not name.isidentifier():
        problems.append(f"file.name must be a Python identifier (got {name!r})")
    body = _Fields(top.get("reference", dict, default={}), where, problems)
    raw_entries = body.get("entries", list, default=[])
    build = _function if kind == "api" else _exchange
    entries = tuple(build(e, f"{where}.entries[{i}]", problems) for i, e in enumerate(raw_entries))
    _check_unique_names(entries, problems)
    return Reference(
        name=name, kind=kind, path=path,
        title=body.get("title", str, default=""),
        description=body.get("description", str, required=False, default=""),
        service_name=body.get("serviceName", str, default=""),
        api_version=body.get("apiVersion", str, required=False, default="v1"),
        # Only the 2018 references name a per-service host; today's are served under a rootUrl.
        base_url=body.get("baseUrl", str, required=False),
        exchange_prefix=body.get("exchangePrefix", str, required=kind == "exchanges"),
        entries=entries,
    )


def _check_unique_names(entries: Tuple[Any, ...], problems: List[str]) -> None:
    seen = set()
    for entry in entries:
        if entry.name in seen:
            problems.append(f"entry name {entry.name!r} appears more than once")
        seen.add(entry.name)


def _check_entry_name(entry: Any, where: str, problems: List[str]) -> None:
    # An entry becomes an attribute of a generated class: a name such as '__getattr__' or
    # '__del__' would turn hasattr(), copy.copy() or garbage collection into signed requests.
    if not entry.name.isidentifier() or entry.name.startswith("_"):
        problems.append(f"{where}.name must be an identifier that does not start with '_' (got {entry.name!r})")


def _strings(fields: _Fields, key: str) -> Tuple[str, ...]:
    values = fields.get(key, list, required=False, default=[])
    if not all(isinstance(v, str) for v in values):
        fields.problems.append(f"{fields.where}.{key} must be a list of strings")
        return ()
    return tuple(values)


def _function(raw: Any, where: str, problems: List[str]) -> FunctionEntry:
    f = _Fields(raw, where, problems)
    entry = FunctionEntry(
        name=f.get("name", str, default=""), title=f.get("title", str, default=""),
        description=f.get("description", str, required=False, default=""),
        stability=f.get("stability", str, required=False, default="stable"),
        method=f.get("method", str, default="get").lower(), route=f.get("route", str, default="/"),
        args=_strings(f, "args"), query=_strings(f, "query"),
        input=f.get("input", str, required=False), output=f.get("output", str, required=False),
        scopes=f.obj.get("scopes"),
    )
    _check_entry_name(entry, where, problems)
    route_args = [part[1:-1] for part in entry.route.split("/") if part.startswith("<") and part.endswith(">")]
    if route_args != list(entry.args):
        problems.append(f"{where} ({entry.name}): args {list(entry.args)} do not match route {entry.route!r}")
    return entry


def _exchange(raw: Any, where: str, problems: List[str]) -> ExchangeEntry:
    f = _Fields(raw, where, problems)
    words = tuple(_routing_key_field(w, f"{where}.routingKey[{i}]", problems)
                  for i, w in enumerate(f.get("routingKey", list, default=[])))
    entry = ExchangeEntry(
        name=f.get("name", str, default=""), title=f.get("title", str, default=""),
        description=f.get("description", str, required=False, default=""),
        exchange=f.get("exchange", str, default=""), schema=f.get("schema", str, required=False, default=""),
        routing_key=words,
    )
    _check_entry_name(entry, where, problems)
    if sum(w.multiple_words for w in words) > 1:
        problems.append(f"{where} ({entry.name}): at most one routing-key field may span multiple words")
    return entry


def _routing_key_field(raw: Any, where: str, problems: List[str]) -> RoutingKeyField:
    f = _Fields(raw, where, problems)
    return RoutingKeyField(
        name=f.get("name", str, default=""), summary=f.get("summary", str, required=False, default=""),
        required=f.get("required", bool, required=False, default=False),
        multiple_words=f.get("multipleWords", bool, required=False, default=False),
        constant=f.get("constant", str, required=False),
    )
