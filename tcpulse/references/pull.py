"""Pulling a deployment's own references into a reference-set folder.

Owns: `pull(root_url, directory)`: fetch `<rootUrl>/references/manifest.json`, every API and
exchanges reference it lists (logs and metrics references are skipped), and every schema they
name with the schemas those refer to; check each; write the set atomically (a failed pull leaves
the folder as it was); the default folder per deployment under the user's cache directory; and
`PullError`, one line naming the URL and the problem.

A deployment's answers are not trusted to be small or quick: each document is capped at
MAX_DOCUMENT_BYTES, a set at MAX_SCHEMAS schemas, and the whole pull at DEADLINE seconds (a
server that sends a byte every few seconds never trips a per-read timeout). The new set replaces
the old one in a single step (both folders swapped by the kernel where it can), under a lock on
the parent folder, so a reader never finds the folder empty and concurrent pulls queue up.

The folder is in the deployment's own layout (`references/manifest.json`,
`references/<service>/<version>/api.json`, `schemas/...`), so `sets.ReferenceSet` reads it like
the bundled set.

Imports only the standard library (urllib for HTTP), `records`, `sets`, `tcpulse.errors` and
`tcpulse._rest.artifacts` (its redirect rule); only the command line imports it.
"""
import contextlib
import dataclasses
import datetime
import errno
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set

from tcpulse._rest.artifacts import downgrade_refusal
from tcpulse.errors import InvalidReference, TaskclusterFailure
from tcpulse.references.records import Reference, parse_document
from tcpulse.references.sets import MANIFEST, manifest_paths, name_of_path

TIMEOUT = 30.0
DEADLINE = 300.0  # seconds for a whole pull; today's deployments take about 2 s
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024  # the largest of today's references is 51 kB
MAX_SCHEMAS = 2000  # today's deployments name 166
FETCHERS = 8
# Path segments a deployment's reference or schema path may have: no '..', no empty segment.
SAFE_PATH = re.compile(r"^/(references|schemas)(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+\.json$")


class PullError(TaskclusterFailure):
    """A pull that could not finish; the message is one line naming the URL (or folder) and why."""


@dataclasses.dataclass(frozen=True)
class PullResult:
    """What a pull wrote, for its summary line."""
    root_url: str
    directory: Path
    references: List[Reference]
    schemas: int

    def summary(self) -> str:
        """One line: services, exchanges and methods pulled, and the folder they are in."""
        apis = [ref for ref in self.references if ref.kind == "api"]
        events = [ref for ref in self.references if ref.kind == "exchanges"]
        return (f"pulled {len(apis)} services ({sum(len(r.entries) for r in apis)} methods) and "
                f"{len(events)} exchange sets ({sum(len(r.entries) for r in events)} exchanges) with "
                f"{self.schemas} schemas from {self.root_url} into {self.directory}")


def default_dir(root_url: str) -> Path:
    """The folder a deployment's set goes to unless told: one per rootUrl under the user's cache.

    Example:
        >>> default_dir("https://tc.example.com/x/").parts[-3:]
        ('tcpulse', 'references', 'tc.example.com-x')
    """
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    parsed = urllib.parse.urlsplit(root_url)
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{parsed.netloc}{parsed.path}").strip("-")
    return Path(cache) / "tcpulse" / "references" / slug


def pull(root_url: str, directory: Optional[Path] = None, timeout: float = TIMEOUT,
         deadline: float = DEADLINE) -> PullResult:
    """Fetch and check a deployment's references, then write them to `directory` in one step;
    `timeout` bounds each read, `deadline` the whole pull (seconds)."""
    root = root_url.rstrip("/")
    if urllib.parse.urlsplit(root).scheme not in ("http", "https"):
        raise PullError(f"--root-url must be the deployment's http(s) rootUrl (got {root_url!r})")
    target = Path(directory) if directory else default_dir(root)
    fetch = _Fetcher(root, timeout, deadline)
    manifest_url = f"{root}/{MANIFEST.as_posix()}"
    manifest = fetch.json("/" + MANIFEST.as_posix(), hint="; is --root-url the deployment's rootUrl?")
    try:
        listed = manifest_paths(manifest, manifest_url)
    except InvalidReference as exc:
        raise PullError(str(exc)) from exc
    paths = [path for path in listed if name_of_path(path) is not None]
    if not paths:
        raise PullError(f"{manifest_url}: lists no API or exchanges reference (*/api.json, */exchanges.json)")
    documents = dict(zip(paths, fetch.many(paths)))
    references = [_checked(fetch.url(path), path, doc) for path, doc in documents.items()]
    schemas = _schemas(fetch, references)
    new_manifest = {"$schema": manifest.get("$schema", ""), "references": paths}
    _write(target, {**documents, **schemas, "/" + MANIFEST.as_posix(): new_manifest}, root)
    return PullResult(root, target, references, len(schemas))


class _Fetcher:
    """GETs JSON documents under one rootUrl, several at a time."""

    def __init__(self, root: str, timeout: float, deadline: float):
        self.root = root
        self.timeout = timeout
        self.deadline = deadline
        self.ends = time.monotonic() + deadline
        self.opener = urllib.request.build_opener(_NoDowngrade())

    def url(self, path: str) -> str:
        return self.root + path

    def json(self, path: str, hint: str = "") -> Any:
        if not SAFE_PATH.match(path):
            raise PullError(f"{self.url(path)}: not a path under /references/ or /schemas/ that tcpulse can store")
        url = self.url(path)
        try:
            with self.opener.open(url, timeout=self._read_timeout(url)) as response:
                body = self._read(url, response)
        except urllib.error.HTTPError as exc:
            raise PullError(f"{url}: HTTP {exc.code} {exc.reason}{hint}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PullError(f"{url}: cannot reach the deployment ({reason})") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise PullError(f"{url}: not JSON ({exc})") from exc
        except RecursionError as exc:
            raise PullError(f"{url}: JSON nested too deep to read") from exc

    def _read_timeout(self, url: str) -> float:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise PullError(f"{url}: the pull took longer than {self.deadline:g} s; gave up")
        return min(self.timeout, left)

    def _read(self, url: str, response: Any) -> bytes:
        """The body, a piece at a time, so that neither its size nor a slow sender escapes the caps."""
        chunks: List[bytes] = []
        size = 0
        while True:
            self._read_timeout(url)  # each read waits at most `timeout`; this bounds their sum
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                raise PullError(f"{url}: larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; not a reference or schema")
            chunks.append(chunk)

    def many(self, paths: Iterable[str]) -> List[Any]:
        with ThreadPoolExecutor(FETCHERS) as pool:
            return list(pool.map(self.json, paths))


class _NoDowngrade(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but never from https to anything else: the pulled set becomes code."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Optional[urllib.request.Request]:
        refusal = downgrade_refusal(req.full_url, newurl)
        if refusal:
            fp.close()
            raise PullError(f"{req.full_url}: {refusal}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _checked(url: str, path: str, doc: Any) -> Reference:
    """The reference of one fetched document, which must be the kind and service its path says."""
    try:
        reference = parse_document(doc, url)
    except InvalidReference as exc:
        raise PullError(str(exc)) from exc
    expected = name_of_path(path)
    if (reference.name, reference.kind) != expected:
        raise PullError(f"{url}: is the {reference.kind} reference of serviceName "
                        f"{reference.service_name!r}, but its path says {expected[1]} of {path.split('/')[2]!r}")
    return reference


def _schemas(fetch: _Fetcher, references: List[Reference]) -> Dict[str, Any]:
    """Every schema the references name, and every schema those refer to, by path."""
    wanted = {path for ref in references for path in _named_schemas(ref)}
    found: Dict[str, Any] = {}
    while wanted:
        batch = sorted(wanted)
        for path, schema in zip(batch, fetch.many(batch)):
            if not isinstance(schema, dict):
                raise PullError(f"{fetch.url(path)}: a schema must be a JSON object (got {type(schema).__name__})")
            found[path] = schema
        wanted = {ref for path in batch for ref in _referred(path, found[path])} - set(found)
        if len(found) + len(wanted) > MAX_SCHEMAS:
            raise PullError(f"{fetch.root}: the references name more than {MAX_SCHEMAS} schemas; "
                            f"not pulling a set that large")
    return found


def _named_schemas(reference: Reference) -> Set[str]:
    names = [getattr(entry, key, None) for entry in reference.entries for key in ("input", "output", "schema")]
    base = f"/schemas/{reference.service_name}/"
    return {path for name in names if name for path in [_resolve(base, name)] if path}


def _referred(path: str, schema: Any) -> Set[str]:
    """The deployment paths of the `$ref`s anywhere in a schema (fragments and other hosts left out)."""
    found: Set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            resolved = _resolve(path, ref) if isinstance(ref, str) else None
            if resolved:
                found.add(resolved)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _resolve(base: str, ref: str) -> Optional[str]:
    """`ref` (relative, or absolute on the deployment) as a deployment path; None for a fragment
    of the same document or a schema on another host."""
    ref = ref.split("#", 1)[0]
    if not ref or urllib.parse.urlsplit(ref).scheme:
        return None
    return urllib.parse.urljoin(base, ref)


def _write(target: Path, files: Dict[str, Any], root: str) -> None:
    """Write the set beside `target`, then swap it in, so `target` is always a whole set."""
    if target.exists() and not (target / MANIFEST).is_file() and any(target.iterdir()):
        raise PullError(f"{target}: exists and is not a reference set; give --dir a new or empty folder")
    staging: Optional[Path] = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.pulling-", dir=target.parent))
        for path, doc in files.items():
            out = staging / path.lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        source = {"rootUrl": root, "pulled": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        (staging / "source.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        _swap(staging, target)
    except OSError as exc:
        raise PullError(f"{target}: cannot write the reference set ({exc})") from exc
    finally:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _swap(staging: Path, target: Path) -> None:
    """Put `staging` in `target`'s place; `staging` then holds the previous set (if any), for
    the caller to remove."""
    with _locked(target.parent):
        if not target.exists():
            staging.rename(target)
        elif not _exchange(staging, target):
            # Two renames where the kernel cannot swap: restore the old set if the second fails.
            previous = staging.with_name(staging.name + ".previous")
            target.rename(previous)
            try:
                staging.rename(target)
            except OSError:
                previous.rename(target)
                raise
            previous.rename(staging)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (concurrent pulls into it take turns)."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two folders in one step (Linux's renameat2 with RENAME_EXCHANGE); False where the
    system offers no such call."""
    import ctypes

    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_cwd, rename_exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(error, os.strerror(error), str(second))
