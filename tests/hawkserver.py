"""A real Taskcluster-like HTTP server on 127.0.0.1 for the REST client tests (the `server`
fixture); tests/test_client_server.py proves the server itself rejects what it must.

It checks every request's Hawk header with mohawk.Receiver, decodes the `ext`, verifies the
certificate of temporary credentials the way the auth service does (computed here, not with
tcpulse code), counts TCP connections, and answers from a per-test script: (status, body) or
(status, body, extra headers), e.g. a redirect's Location; a `Stream` body is sent in chunks.
"""
import base64
import contextlib
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import mohawk
import mohawk.bewit
import mohawk.exc
import pytest

CLIENTS = {"tester": "tester-secret-token", "issuer": "issuer-secret-token"}
DROP = 0  # a scripted status that closes the connection without answering


@dataclass
class Seen:
    """One request as the server saw it."""
    method: str
    path: str
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    body: bytes
    arrived: float
    client_id: Optional[str] = None
    ext: Optional[Dict[str, Any]] = None
    auth_error: Optional[str] = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Stream:
    """An answer body sent chunk by chunk with its full Content-Length; with `cut_after`, the
    connection closes after that many bytes (a download that breaks mid-stream)."""
    chunks: Callable[[], Iterable[bytes]]
    length: int
    cut_after: Optional[int] = None


def issuer_signature(issuer_token: str, cert: Dict[str, Any], name: Optional[str]) -> str:
    """The certificate signature as the auth service documents it, computed independently."""
    parts = ["version:%d" % cert["version"]]
    if name:
        parts += ["clientId:" + name, "issuer:" + cert["issuer"]]
    parts += ["seed:" + cert["seed"], "start:%d" % cert["start"], "expiry:%d" % cert["expiry"], "scopes:"]
    parts += cert["scopes"]
    mac = hmac.new(issuer_token.encode(), "\n".join(parts).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def derived_token(issuer_token: str, seed: str) -> str:
    mac = hmac.new(issuer_token.encode(), seed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().replace("=", "")


def decode_ext(header: str) -> Optional[Dict[str, Any]]:
    found = re.search(r'ext="([^"]*)"', header)
    if not found:
        return None
    raw = found.group(1)
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


class HawkServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: List[Seen] = []
        self.connections = 0
        self.script: List[Tuple[Any, ...]] = []
        self.responder: Optional[Callable[[Seen], Tuple[Any, ...]]] = None
        self.delay = 0.0
        self.lock = threading.Lock()
        self.nonces: set = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, seen: Seen) -> Tuple[Any, ...]:
        if seen.auth_error:
            return 401, {"message": f"Authentication failed: {seen.auth_error}"}
        with self.lock:
            if self.script:
                return self.script.pop(0)
        if self.responder:
            return self.responder(seen)
        return 200, {"path": seen.path}

    def seen_nonce(self, client_id: str, nonce: str, timestamp: str) -> bool:
        """Replays are refused, as a real service would refuse them."""
        with self.lock:
            seen = (client_id, nonce, timestamp) in self.nonces
            self.nonces.add((client_id, nonce, timestamp))
        return seen

    def credentials_for(self, client_id: str, ext: Optional[Dict[str, Any]]) -> Dict[str, str]:
        cert = (ext or {}).get("certificate")
        if cert is None:
            return {"id": client_id, "key": CLIENTS[client_id], "algorithm": "sha256"}
        name = client_id if "issuer" in cert else None
        issuer_token = CLIENTS[cert.get("issuer", client_id)]
        if cert["signature"] != issuer_signature(issuer_token, cert, name):
            raise LookupError("certificate signature is wrong")
        return {"id": client_id, "key": derived_token(issuer_token, cert["seed"]), "algorithm": "sha256"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls
    server: HawkServer

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        seen = Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body, time.monotonic())
        if "Authorization" in self.headers:
            self._check_hawk(seen)
        elif "bewit" in seen.query:
            self._check_bewit(seen)
        with self.server.lock:
            self.server.requests.append(seen)
        status, answer, *extra = self.server.answer(seen)
        time.sleep(self.server.delay)
        if status == DROP:
            self.close_connection = True
            return
        given = {"Content-Type": "application/json", **(extra[0] if extra else {})}
        headers = {name: value for name, value in given.items() if value is not None}  # None: leave it out
        if isinstance(answer, Stream):
            self._stream(status, answer, headers)
            return
        data = answer if isinstance(answer, bytes) else b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, status: int, stream: "Stream", headers: Dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(stream.length))
        self.end_headers()
        sent = 0
        for chunk in stream.chunks():
            if stream.cut_after is not None and sent + len(chunk) > stream.cut_after:
                self.wfile.write(chunk[:stream.cut_after - sent])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)
            sent += len(chunk)

    def _check_hawk(self, seen: Seen) -> None:
        header = self.headers["Authorization"]
        try:
            seen.ext = decode_ext(header)
            receiver = mohawk.Receiver(
                lambda client_id: self.server.credentials_for(client_id, seen.ext), header,
                f"http://{self.headers['Host']}{self.path}", self.command,
                content=seen.body, content_type=self.headers.get("Content-Type", ""),
                seen_nonce=self.server.seen_nonce)
            seen.client_id = receiver.parsed_header["id"]
        except (mohawk.exc.HawkFail, LookupError, KeyError, ValueError) as exc:
            seen.auth_error = f"{type(exc).__name__}: {exc}"

    def _check_bewit(self, seen: Seen) -> None:
        # The wire form is base64url without padding; mohawk's check reads standard base64.
        raw = seen.query["bewit"][0]
        standard = base64.b64encode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))).decode()
        try:
            bewit = mohawk.bewit.parse_bewit(standard)
            seen.ext = json.loads(base64.urlsafe_b64decode(bewit.ext))
            url = f"http://{self.headers['Host']}{self.path}".replace(raw, standard)
            mohawk.bewit.check_bewit(url, lambda client_id: self.server.credentials_for(client_id, seen.ext))
            seen.client_id = bewit.id
        except (mohawk.exc.HawkFail, LookupError, KeyError, ValueError) as exc:
            seen.auth_error = f"{type(exc).__name__}: {exc}"

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


@contextlib.contextmanager
def running(srv: ThreadingHTTPServer) -> Iterator[Any]:
    """Serve `srv` on a thread for the duration of the block."""
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def server():
    with running(HawkServer()) as srv:
        yield srv


@pytest.fixture
def other_server():
    """A second server, on another port (another origin): where a redirect points."""
    with running(HawkServer()) as srv:
        yield srv
