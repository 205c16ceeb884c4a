"""A fake Queue + Object + storage service on 127.0.0.1, built on the Hawk-verifying server, for
the download tests and the download benchmark.

Queue: `latestArtifact` and `artifact` answer what a test stored (s3, reference, object, error).
Object: `startDownload` (PUT, Hawk-verified: only the artifact's temporary credentials are
accepted) answers the `getUrl` method with the storage URL, its expiry and the object's hashes.
Storage: `/storage/<key>` serves the bytes (optionally gzip-encoded), first through any scripted
failures (a status, or a connection cut mid-body); `/redirect/<key>` redirects there. Every
request is recorded (`requests`), so a test can check that storage never saw an Authorization.
"""
import datetime
import gzip
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote

import pytest

import tcpulse
from hawkserver import CLIENTS, HawkServer, Seen, Stream, running

QUEUE, OBJECT = "/api/queue/v1", "/api/object/v1"


@dataclass
class Blob:
    """Stored bytes: `data`, or `chunks` (a generator function) of `length` bytes for big ones."""
    data: bytes = b""
    content_type: Optional[str] = "application/octet-stream"  # None: no Content-Type header
    gzip: bool = False
    chunks: Optional[Callable[[], Iterable[bytes]]] = None
    length: int = 0
    hashes: Dict[str, str] = field(default_factory=dict)
    failures: List[Any] = field(default_factory=list)  # an int status, or ("cut", n) for n bytes then close

    def __post_init__(self) -> None:
        if self.chunks is None:
            self.length = len(self.data)
            self.hashes = self.hashes or {name: hashlib.new(name, self.data).hexdigest() for name in ("sha256", "sha512")}

    def body(self) -> Tuple[Callable[[], Iterable[bytes]], int]:
        if self.chunks is not None:
            return self.chunks, self.length
        data = gzip.compress(self.data) if self.gzip else self.data
        return (lambda: [data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""]), len(data)


def generated(size: int) -> Blob:
    """A big blob made on the fly (never held in memory), with its hashes computed once."""
    pattern = bytes(range(256)) * 256  # 64 KiB

    def chunks() -> Iterable[bytes]:
        full, rest = divmod(size, len(pattern))
        yield from itertools.repeat(pattern, full)
        if rest:
            yield pattern[:rest]

    hashes = {name: hashlib.new(name) for name in ("sha256", "sha512")}
    for chunk in chunks():
        for digest in hashes.values():
            digest.update(chunk)
    return Blob(chunks=chunks, length=size, hashes={name: d.hexdigest() for name, d in hashes.items()})


class ArtifactServer(HawkServer):
    def __init__(self) -> None:
        super().__init__()
        self.artifacts: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
        self.latest: Dict[str, str] = {}
        self.blobs: Dict[str, Blob] = {}
        self.objects: Dict[str, Tuple[str, Dict[str, str]]] = {}  # object name -> (blob key, credentials)
        self.url_lifetime = datetime.timedelta(hours=1)
        self.start_downloads = 0
        self.responder = self.route

    @property
    def queue(self) -> Any:
        return tcpulse.Queue({"rootUrl": self.url, "maxRetries": 0})

    def store(self, task: str, run: int, name: str, storage: str, blob: Optional[Blob] = None,
              latest: bool = True, **error: str) -> None:
        """Store an artifact of `storage` type (s3, reference, object, error) for a task's run."""
        key = f"{task}/{run}/{name}"
        if blob is not None:
            self.blobs[key] = blob
        if storage == "s3":
            answer: Dict[str, Any] = {"storageType": "s3", "url": f"{self.url}/storage/{key}?X-Amz-Signature=sig"}
        elif storage == "reference":
            answer = {"storageType": "reference", "url": f"{self.url}/redirect/{key}"}
        elif storage == "object":
            start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
            credentials = tcpulse.createTemporaryCredentials(
                "issuer", CLIENTS["issuer"], start, start + datetime.timedelta(hours=1),
                [f"object:download:t/{key}"], name=f"task-client/{task}/{run}")
            self.objects[f"t/{key}"] = (key, credentials)
            answer = {"storageType": "object", "name": f"t/{key}", "credentials": credentials}
        else:
            answer = {"storageType": "error", **error}
        self.artifacts[(task, str(run), name)] = answer
        if latest:
            self.latest[task] = str(run)

    def storage_requests(self) -> List[Seen]:
        return [seen for seen in self.requests if seen.path.startswith(("/storage/", "/redirect/"))]

    def route(self, seen: Seen) -> Tuple[Any, ...]:
        parts = [unquote(part) for part in seen.path.split("/")]
        if seen.path.startswith(QUEUE + "/task/"):
            return self._artifact(parts[5:])
        if seen.path.startswith(OBJECT + "/start-download/") and seen.method == "PUT":
            return self._start_download(seen, parts[5])
        if seen.path.startswith("/redirect/"):
            return 302, b"", {"Location": "/storage/" + seen.path[len("/redirect/"):]}
        if seen.path.startswith("/storage/"):
            return self._storage(seen.path[len("/storage/"):])
        return 404, {"message": f"no route {seen.method} {seen.path}"}

    def _artifact(self, parts: List[str]) -> Tuple[Any, ...]:
        if parts[1] == "artifact-content":  # latestArtifact: task/<taskId>/artifact-content/<name>
            task, run, name = parts[0], self.latest.get(parts[0], ""), parts[2]
        else:  # artifact: task/<taskId>/runs/<runId>/artifact-content/<name>
            task, run, name = parts[0], parts[2], parts[4]
        answer = self.artifacts.get((task, run, name))
        return (200, answer) if answer else (404, {"message": f"no artifact {name} of {task} run {run or '?'}"})

    def _start_download(self, seen: Seen, name: str) -> Tuple[Any, ...]:
        key, credentials = self.objects.get(name, ("", {}))
        if seen.client_id != credentials.get("clientId"):
            return 403, {"message": f"{seen.client_id} may not download {name}"}
        if seen.json() != {"acceptDownloadMethods": {"getUrl": True}}:
            return 406, {"message": "no acceptable download method"}
        self.start_downloads += 1
        expires = datetime.datetime.now(datetime.timezone.utc) + self.url_lifetime
        return 200, {"method": "getUrl", "url": f"{self.url}/storage/{key}",
                     "expires": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                     "hashes": self.blobs[key].hashes}

    def _storage(self, key: str) -> Tuple[Any, ...]:
        blob = self.blobs.get(key)
        if blob is None:
            return 404, {"message": "NoSuchKey"}
        headers = {"Content-Type": blob.content_type, **({"Content-Encoding": "gzip"} if blob.gzip else {})}
        failure = blob.failures.pop(0) if blob.failures else None
        if isinstance(failure, int):
            return failure, {"message": "storage is having a bad day"}
        chunks, length = blob.body()
        cut = failure[1] if failure else None
        return 200, Stream(chunks, length, cut), headers


@pytest.fixture
def artifact_server():
    with running(ArtifactServer()) as srv:
        yield srv
