"""A fake Object service and a separate fake storage server on 127.0.0.1, for the upload tests and
the upload benchmark.

Object service (a Hawk-verifying server, tests/hawkserver.py): `createUpload` records the
proposal and picks `dataInline` when it was proposed and `offer_inline` is on (the object is then
stored from it), else `putUrl`: a URL on the storage server with a signature in its query, and
the headers the PUT must carry; `finishUpload` records the hashes it is given. Calls without
valid Hawk credentials are refused (401), as the service would.

Storage (another server, another origin): PUT `/bucket/<name>` reads the body as it arrives
(Content-Length or chunked), hashing and counting it without keeping it (only small bodies are
kept), first through any scripted failures: a status (answered after the body was read) or
`DROP` (the connection closed after part of the body, unanswered). Every request is recorded
with its headers, so a test can check that storage never saw an Authorization.
"""
import base64
import datetime
import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from hawkserver import HawkServer, Seen, running

OBJECT = "/api/object/v1"
DROP = "drop"
KEEP_BODY_BELOW = 1024 * 1024


def digests(data: bytes) -> Dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in ("sha256", "sha512")}


@dataclass
class Put:
    """One request as the storage server saw it; `complete` when the whole body arrived."""
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    length: int = 0
    hashes: Dict[str, str] = field(default_factory=dict)
    body: Optional[bytes] = None
    complete: bool = False


class StorageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StorageHandler)
        self.requests: List[Put] = []
        self.failures: List[Any] = []  # statuses, or DROP
        self.stored: Dict[str, Put] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StorageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StorageServer

    def log_message(self, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        parts = urlsplit(self.path)
        put = Put(self.command, parts.path, parse_qs(parts.query), dict(self.headers))
        with self.server.lock:
            self.server.requests.append(put)
            failure = self.server.failures.pop(0) if self.server.failures else None
        if failure == DROP:
            self.rfile.read(min(1024, int(self.headers.get("Content-Length") or 1024)))
            self.close_connection = True
            return
        self._read_body(put)
        status = failure or 200
        if status == 200:
            with self.server.lock:
                self.server.stored[unquote(parts.path[len("/bucket/"):])] = put
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read_body(self, put: Put) -> None:
        hashes = {name: hashlib.new(name) for name in ("sha256", "sha512")}
        kept = bytearray()
        for chunk in self._body_chunks():
            for digest in hashes.values():
                digest.update(chunk)
            put.length += len(chunk)
            if put.length < KEEP_BODY_BELOW:
                kept += chunk
        put.hashes = {name: digest.hexdigest() for name, digest in hashes.items()}
        put.body = bytes(kept) if put.length < KEEP_BODY_BELOW else None
        put.complete = True

    def _body_chunks(self) -> Any:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return
                yield self.rfile.read(size)
                self.rfile.readline()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining:
            chunk = self.rfile.read(min(remaining, 1024 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk


class ObjectService(HawkServer):
    def __init__(self, storage: StorageServer) -> None:
        super().__init__()
        self.storage = storage
        self.offer_inline = True
        self.created: List[Dict[str, Any]] = []
        self.finished: List[Dict[str, Any]] = []
        self.inline: Dict[str, bytes] = {}
        self.responder = self.route

    def route(self, seen: Seen) -> Tuple[Any, ...]:
        if seen.client_id is None:
            return 401, {"message": "the Object service needs credentials"}
        name = unquote(seen.path.rsplit("/", 1)[1])
        if seen.method == "PUT" and seen.path.startswith(OBJECT + "/upload/"):
            return 200, self._create(name, seen.json())
        if seen.method == "POST" and seen.path.startswith(OBJECT + "/finish-upload/"):
            self.finished.append({"name": name, **seen.json()})
            return 200, {}
        return 404, {"message": f"no route {seen.method} {seen.path}"}

    def _create(self, name: str, request: Dict[str, Any]) -> Dict[str, Any]:
        self.created.append({"name": name, **request})
        proposed = request["proposedUploadMethods"]
        answer = {"expires": request["expires"], "projectId": request["projectId"], "uploadId": request["uploadId"]}
        if self.offer_inline and "dataInline" in proposed:
            self.inline[name] = base64.b64decode(proposed["dataInline"]["objectData"])
            return {**answer, "uploadMethod": {"dataInline": True}}
        put = proposed["putUrl"]
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        return {**answer, "uploadMethod": {"putUrl": {
            "url": f"{self.storage.url}/bucket/{name}?X-Amz-Signature=storage-signature",
            "expires": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "headers": {"Content-Type": put["contentType"], "Content-Length": str(put["contentLength"])}}}}

    def object_hashes(self, name: str) -> Dict[str, str]:
        """The hashes of what the service or storage actually received for `name`."""
        if name in self.inline:
            return digests(self.inline[name])
        return self.storage.stored[name].hashes


@pytest.fixture
def object_service():
    with running(StorageServer()) as storage, running(ObjectService(storage)) as service:
        yield service
