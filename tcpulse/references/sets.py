"""Reference sets: where the references come from, and which set the classes are built from.

Owns: the two shipped sets (`bundled`, today's Taskcluster, the default; `legacy-2018`, the 2018
service set), a deployment's own set in a folder written by `tcpulse references pull`, reading
one service's reference only when it is first asked for, and the active set (chosen by
`TCPULSE_REFERENCES` or `use_references`, fixed once a class has been built from it).

Two layouts are read by the same `ReferenceSet`: a deployment's (`references/manifest.json`
listing `/references/<service>/<version>/api.json` and `exchanges.json`, as a deployment serves
them and as `pull` writes them) and the 2018 set's flat folder of `*.json` files.

Pure module: imports only the standard library, `records` and `tcpulse.errors` (never kombu or
requests); the generators (`exchanges`, `services`) only read records from it.

Example:
    >>> open_set("bundled").get("Queue").service_name
    'queue'
    >>> open_set("legacy-2018").get("Queue").base_url
    'https://queue.taskcluster.net/v1/'
"""
import functools
import importlib
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from tcpulse.errors import InvalidReference, ReferenceSetError
from tcpulse.references.records import KINDS, Reference, class_name, load_file, read_json

BUNDLED = "bundled"
LEGACY = "legacy-2018"
SHIPPED = (BUNDLED, LEGACY)
ENV_VAR = "TCPULSE_REFERENCES"
MANIFEST = Path("references") / "manifest.json"
# The file name of a reference in a deployment's layout says its kind.
FILE_KINDS = {"api.json": "api", "exchanges.json": "exchanges"}


def shipped_dir() -> Path:
    """The folder holding the shipped sets (`bundled/`, `legacy-2018/`).

    An installed tcpulse carries them as the `tcpulse.apis` package data; a source checkout
    reads the repository's top-level `references/` folder directly.
    """
    try:
        apis = importlib.import_module("tcpulse.apis")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "references"
    # The folder has no __init__.py, so it imports as a namespace package, for which
    # importlib.resources.files() gives a MultiplexedPath whose str() is not a path.
    return Path(next(iter(apis.__path__)))


def manifest_paths(manifest: object, where: str) -> List[str]:
    """The reference paths a manifest lists (`{"references": ["/references/...", ...]}`)."""
    paths = manifest.get("references") if isinstance(manifest, dict) else None
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise InvalidReference(f"{where}: a manifest must be an object whose 'references' is a list "
                               f"of paths such as '/references/queue/v1/api.json'")
    return paths


def name_of_path(path: str) -> Optional[Tuple[str, str]]:
    """(class name, kind) of an API or exchanges reference path, None for any other reference.

    Example:
        >>> name_of_path("/references/worker-manager/v1/exchanges.json")
        ('WorkerManagerEvents', 'exchanges')
    """
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "references" or parts[3] not in FILE_KINDS:
        return None
    kind = FILE_KINDS[parts[3]]
    return class_name(parts[1], kind), kind


class ReferenceSet:
    """One set of references; a service's file is read when that service is first asked for."""

    def __init__(self, label: str, root: Path):
        self.label = label
        self.root = root
        self._index: Optional[Dict[str, Tuple[str, Path]]] = None
        self._loaded: Dict[str, Reference] = {}

    def __repr__(self) -> str:
        return f"<ReferenceSet {self.label} {self.root}>"

    def names(self, kind: Optional[str] = None) -> List[str]:
        """The class names of the set (of one kind when given), in manifest or file order."""
        return [name for name, (k, _) in self._entries().items() if kind in (None, k)]

    def get(self, name: str) -> Optional[Reference]:
        """The reference behind class `name`, read and checked on first use; None if absent."""
        if name not in self._loaded:
            found = self._entries().get(name)
            if found is None:
                return None
            reference = load_file(found[1])
            if (reference.name, reference.kind) != (name, found[0]):
                raise InvalidReference(
                    f"{found[1]}: its serviceName {reference.service_name!r} makes class "
                    f"{reference.name!r}, but the manifest lists it as {name!r}")
            self._loaded[name] = reference
        return self._loaded[name]

    def references(self, kind: Optional[str] = None) -> List[Reference]:
        """Every reference of the set (of one kind when given), read now."""
        return [ref for ref in map(self.get, self.names(kind)) if ref is not None]

    def _entries(self) -> Dict[str, Tuple[str, Path]]:
        if self._index is None:
            if (self.root / MANIFEST).is_file():
                self._index = self._from_manifest()
            else:
                self._index = self._from_flat_folder()
            if not self._index:
                raise InvalidReference(f"{self.root}: the {self.label} set holds no API or exchanges reference")
        return self._index

    def _from_manifest(self) -> Dict[str, Tuple[str, Path]]:
        where = self.root / MANIFEST
        index: Dict[str, Tuple[str, Path]] = {}
        for path in manifest_paths(read_json(where), str(where)):
            named = name_of_path(path)
            if named is None:
                continue
            if named[0] in index:
                raise InvalidReference(f"{where}: {path} and {index[named[0]][1]} both make class {named[0]}")
            index[named[0]] = (named[1], self.root / path.lstrip("/"))
        return index

    def _from_flat_folder(self) -> Dict[str, Tuple[str, Path]]:
        # The 2018 files carry their class name inside, so each is read to be indexed.
        index: Dict[str, Tuple[str, Path]] = {}
        for path in sorted(self.root.glob("*.json")):
            reference = load_file(path)
            if reference.name in index:
                raise InvalidReference(f"{path}: name {reference.name!r} is already used by {index[reference.name][1]}")
            index[reference.name] = (reference.kind, path)
            self._loaded[reference.name] = reference
        return index


@functools.lru_cache(maxsize=None)
def _open(label: str, root: Path) -> ReferenceSet:
    return ReferenceSet(label, root)


def open_set(choice: str) -> ReferenceSet:
    """A set by name (`bundled`, `legacy-2018`) or by folder (written by `tcpulse references pull`);
    the same set object for the same choice.

    Example:
        >>> open_set("bundled") is open_set("bundled")
        True
    """
    if choice in SHIPPED:
        return _open(choice, shipped_dir() / choice)
    folder = Path(choice).expanduser()
    if folder.is_dir() and ((folder / MANIFEST).is_file() or any(folder.glob("*.json"))):
        return _open(str(folder.resolve()), folder.resolve())
    from tcpulse._api.hints import did_you_mean

    problem = "is not a folder" if not folder.is_dir() else "has no references/manifest.json"
    raise ReferenceSetError(
        f"reference set {choice!r} {problem}: give 'bundled', 'legacy-2018' or a folder written by "
        f"'tcpulse references pull'.{did_you_mean(choice, list(SHIPPED))}")


class _Selection:
    """The set `use_references` chose (if any) and the set classes were built from (once any was)."""
    chosen: Optional[ReferenceSet] = None
    used: Optional[ReferenceSet] = None


_selection = _Selection()


def active_set() -> ReferenceSet:
    """The set classes are built from: `use_references`'s choice, else `TCPULSE_REFERENCES`,
    else the bundled set. Asking fixes it: `use_references` may not change it afterwards.

    Example:
        >>> active_set() is active_set()
        True
    """
    if _selection.used is None:
        _selection.used = _selection.chosen or _from_environment()
    return _selection.used


def selected_set() -> ReferenceSet:
    """The set `active_set` would give, without fixing it (for lookups that build no class, such
    as which service modules exist).

    Example:
        >>> selected_set() is active_set()
        True
    """
    return _selection.used or _selection.chosen or _from_environment()


def _from_environment() -> ReferenceSet:
    try:
        return open_set(os.environ.get(ENV_VAR) or BUNDLED)
    except ReferenceSetError as exc:
        raise ReferenceSetError(f"{ENV_VAR}: {exc}") from None


def use_references(choice: str) -> ReferenceSet:
    """Select the reference set by name or folder, before the first class is used; choosing
    the set already in use again is allowed.

    Example:
        >>> import tcpulse
        >>> tcpulse.use_references(active_set().label) is active_set()
        True
    """
    chosen = open_set(choice)
    if _selection.used is not None and _selection.used is not chosen:
        raise ReferenceSetError(
            f"use_references({choice!r}) comes after classes were built from the "
            f"{_selection.used.label} reference set; call it before the first use of any tcpulse "
            f"class, or set {ENV_VAR} before Python starts")
    _selection.chosen = chosen
    return chosen


def load_all(choice: Optional[str] = None) -> Dict[str, Reference]:
    """Every reference of a set (by name or folder; default: the active one), by class name,
    all read now.

    Example:
        >>> sorted(load_all("bundled"))[:3]
        ['Auth', 'AuthEvents', 'Github']
    """
    refset = open_set(choice) if choice else active_set()
    return {ref.name: ref for ref in refset.references()}


def why_missing(name: str) -> Optional[str]:
    """Why class `name` is absent from the active set when another shipped set has it, else None.

    Example:
        >>> "retired 2018 Taskcluster service" in (why_missing("TreeherderEvents") or "")
        True
    """
    active = active_set()
    others = [label for label in SHIPPED if label != active.label and name in open_set(label).names()]
    if not others:
        return None
    if others == [LEGACY]:
        return (f"{name} is a retired 2018 Taskcluster service, not in the {active.label} reference set; "
                f"to use it, select the 2018 set with {ENV_VAR}=legacy-2018 or "
                f"tcpulse.use_references('legacy-2018') before the first use of any class")
    return (f"{name} is not in the {active.label} reference set; the {others[0]} set has it "
            f"({ENV_VAR}={others[0]} or tcpulse.use_references({others[0]!r}) selects it)")

