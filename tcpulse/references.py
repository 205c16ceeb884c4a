"""Loading the Taskcluster reference documents into frozen records.

Owns: finding the shipped reference files, checking each one as it is read, and turning it
into `Reference`, `FunctionEntry`, `ExchangeEntry` and `RoutingKeyField` records that the
generated exchange and client classes are built from.

Pure module: imports only the standard library (never kombu or requests).

Example:
    >>> from tcpulse.references import load_all
    >>> load_all()["QueueEvents"].entries[0].name
    'taskDefined'
"""
import functools
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from .errors import InvalidReference

KINDS = ("api", "exchanges")


@dataclass(frozen=True)
class RoutingKeyField:
    """One word (or, for `multiple_words`, the trailing run of words) of a routing key."""
    name: str
    summary: str
    required: bool
    multiple_words: bool
    constant: Optional[str] = None


@dataclass(frozen=True)
class ExchangeEntry:
    """A topic exchange a service publishes to, with its routing-key layout."""
    name: str
    title: str
    description: str
    exchange: str
    schema: str
    routing_key: Tuple[RoutingKeyField, ...]


@dataclass(frozen=True)
class FunctionEntry:
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


@dataclass(frozen=True)
class Reference:
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


def reference_dir() -> Path:
    """The folder that holds the reference JSON files.

    An installed tcpulse carries them as the `tcpulse.apis` package data; a source checkout
    reads the repository's top-level `references/` folder directly.
    """
    try:
        apis = importlib.import_module("tcpulse.apis")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "references"
    # The folder has no __init__.py, so it imports as a namespace package, for which
    # importlib.resources.files() gives a MultiplexedPath whose str() is not a path.
    return Path(next(iter(apis.__path__)))


@functools.lru_cache(maxsize=None)
def load_all(directory: Optional[str] = None) -> Dict[str, Reference]:
    """Every reference in `directory` (default: the shipped ones), by class name."""
    folder = Path(directory) if directory else reference_dir()
    refs: Dict[str, Reference] = {}
    for path in sorted(folder.glob("*.json")):
        ref = load_file(path)
        if ref.name in refs:
            raise InvalidReference(f"{path}: name {ref.name!r} is already used by {refs[ref.name].path}")
        refs[ref.name] = ref
    if not refs:
        raise InvalidReference(f"{folder}: no reference files (*.json) found")
    return refs


def load_file(path: Union[str, Path]) -> Reference:
    """Read and check one reference file; every problem in it is reported in one error."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidReference(f"{path}: cannot be read as JSON ({exc})") from exc
    problems: List[str] = []
    ref = _build_reference(doc, str(path), problems)
    if problems:
        raise InvalidReference(f"{path}: " + "; ".join(problems))
    assert ref is not None
    return ref


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


def _build_reference(doc: Any, path: str, problems: List[str]) -> Optional[Reference]:
    top = _Fields(doc, "file", problems)
    name = top.get("name", str, default="")
    kind = top.get("kind", str, default="")
    if kind and kind not in KINDS:
        problems.append(f"file.kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if name and not name.isidentifier():
        problems.append(f"file.name must be a Python identifier (got {name!r})")
    body = _Fields(top.get("reference", dict, default={}), "reference", problems)
    raw_entries = body.get("entries", list, default=[])
    if kind == "api":
        entries = tuple(_function(e, f"reference.entries[{i}]", problems) for i, e in enumerate(raw_entries))
    else:
        entries = tuple(_exchange(e, f"reference.entries[{i}]", problems) for i, e in enumerate(raw_entries))
    _check_unique_names(entries, problems)
    ref = Reference(
        name=name, kind=kind, path=path,
        title=body.get("title", str, default=""),
        description=body.get("description", str, required=False, default=""),
        service_name=body.get("serviceName", str, default=""),
        api_version=body.get("apiVersion", str, required=False, default="v1"),
        base_url=body.get("baseUrl", str, required=kind == "api"),
        exchange_prefix=body.get("exchangePrefix", str, required=kind == "exchanges"),
        entries=entries,
    )
    return ref


def _check_unique_names(entries: Tuple[Any, ...], problems: List[str]) -> None:
    seen = set()
    for entry in entries:
        if entry.name in seen:
            problems.append(f"entry name {entry.name!r} appears more than once")
        seen.add(entry.name)


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
