"""The health endpoints of running listeners: `/live`, `/ready` and `/metrics` over HTTP.

Owns what each path answers for the listeners of one process (`answer`), served three ways: a
small threaded HTTP server bound to 127.0.0.1 by default (`HealthServer`), so that an
orchestrator (Kubernetes probes, systemd watchdog scripts, Prometheus) can ask a long-running
listener how it is doing; and a WSGI and an ASGI application (`wsgi_app`, `asgi_app`) for an
application that has one port and mounts them in its own web server (no web framework needed:
both are plain callables of those specifications).

Must not import kombu, requests or the listener: it only needs objects with `is_ready()`
and a `metrics` attribute (a `tcpulse._ops.metrics.Metrics`), so it stays cheap and testable.

- `/live`    200 while the process serves requests at all.
- `/ready`   200 only while every listener is connected and consuming, else 503.
- `/metrics` every listener's counters in Prometheus' text exposition format, each series
             labelled with its listener.
- `/`        the operator's page (`tcpulse._ops.page`), and its data at `/page.json` (HealthServer).

A connection that sends no request for `idle_timeout` seconds is closed: each connection has a
thread, and one held open forever would keep it forever.

Example:
    >>> from tcpulse._ops.metrics import Metrics
    >>> class Idle:
    ...     metrics = Metrics()
    ...     def is_ready(self): return False
    >>> server = HealthServer(Idle(), port=0).start()
    >>> import urllib.request, urllib.error
    >>> try:
    ...     urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ready")
    ... except urllib.error.HTTPError as exc:
    ...     exc.code
    503
    >>> server.stop()
"""
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union

from tcpulse._ops.metrics import render_prometheus

log = logging.getLogger("tcpulse.health")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_HOST = "127.0.0.1"
IDLE_TIMEOUT = 10.0  # seconds a connection may wait before sending its request


class Watched(Protocol):
    """What the health server needs from a listener."""

    metrics: Any

    def is_ready(self) -> bool: ...


Answer = Tuple[int, str, str]  # status, content type, body
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def answer(watched: Sequence[Watched], path: str) -> Answer:
    """What `path` answers for the listeners `watched` (status, content type, body).

    Example:
        >>> from tcpulse._ops.metrics import Metrics
        >>> class Up:
        ...     metrics = Metrics()
        ...     def is_ready(self): return True
        >>> class Down(Up):
        ...     def is_ready(self): return False
        >>> answer([Up(), Up()], "/ready")[0], answer([Up(), Down()], "/ready")[0]
        (200, 503)
    """
    if path == "/live":
        return 200, TEXT, "live\n"
    if path == "/ready":
        waiting = sum(not _safely_ready(one) for one in watched)
        if not waiting:
            return 200, TEXT, "ready\n"
        which = f"{waiting} of {len(watched)} listeners " if len(watched) > 1 else ""
        return 503, TEXT, f"not ready: {which}not connected to the broker or not consuming\n"
    if path == "/metrics":
        # One watched object may render its own (a supervisor's aggregate of its children's).
        text = watched[0].metrics.render_prometheus() if len(watched) == 1 else \
            render_prometheus(*(one.metrics for one in watched))
        return 200, PROMETHEUS_CONTENT_TYPE, text
    return 404, TEXT, f"no such path {path!r}; try /, /live, /ready or /metrics\n"


def _several(listeners: Union[Watched, Iterable[Watched]]) -> List[Watched]:
    return [listeners] if hasattr(listeners, "is_ready") else list(listeners)  # type: ignore[list-item]


def wsgi_app(*listeners: Watched) -> Callable[[Dict[str, Any], Any], List[bytes]]:
    r"""A WSGI application answering `/live`, `/ready` and `/metrics` for `listeners`, to mount in
    an application's own web server (its path is read below the mount point, `PATH_INFO`).

    Example:
        >>> from tcpulse._ops.metrics import Metrics
        >>> class Up:
        ...     metrics = Metrics()
        ...     def is_ready(self): return True
        >>> seen = []
        >>> wsgi_app(Up())({"PATH_INFO": "/ready", "REQUEST_METHOD": "GET"}, lambda s, h: seen.append(s))
        [b'ready\n']
        >>> seen
        ['200 OK']
    """
    watched = list(listeners)

    def application(environ: Dict[str, Any], start_response: Any) -> List[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        status, content_type, body = _for_method(method, watched, environ.get("PATH_INFO") or "/")
        payload = body.encode("utf-8")
        start_response(f"{status} {REASONS[status]}", [(name, value) for name, value in _headers(content_type, payload)])
        return [] if method == "HEAD" else [payload]
    return application


def asgi_app(*listeners: Watched) -> Callable[..., Any]:
    r"""An ASGI application (HTTP scopes; lifespan events are acknowledged) answering `/live`,
    `/ready` and `/metrics` for `listeners`, to mount in an asyncio application's web server.
    The path is read below the mount point (`root_path` is removed when the server kept it).

    Example:
        >>> import asyncio
        >>> from tcpulse._ops.metrics import Metrics
        >>> class Up:
        ...     metrics = Metrics()
        ...     def is_ready(self): return True
        >>> sent = []
        >>> async def receive(): return {"type": "http.request"}
        >>> async def send(message): sent.append(message)
        >>> asyncio.run(asgi_app(Up())({"type": "http", "path": "/live", "method": "GET"}, receive, send))
        >>> sent[0]["status"], sent[1]["body"]
        (200, b'live\n')
    """
    watched = list(listeners)

    async def application(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                reply = {"lifespan.startup": "lifespan.startup.complete",
                         "lifespan.shutdown": "lifespan.shutdown.complete"}.get(message["type"])
                if reply:
                    await send({"type": reply})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        path, root = scope.get("path") or "/", scope.get("root_path") or ""
        if root and path.startswith(root + "/"):
            path = path[len(root):]
        method = scope.get("method", "GET")
        status, content_type, body = _for_method(method, watched, path)
        payload = body.encode("utf-8")
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                   for name, value in _headers(content_type, payload)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else payload})
    return application


def _for_method(method: str, watched: Sequence[Watched], path: str) -> Answer:
    if method not in ("GET", "HEAD"):
        return 405, TEXT, f"{method} not allowed; the health endpoints answer GET and HEAD\n"
    return answer(watched, path)


def _headers(content_type: str, payload: bytes) -> List[Tuple[str, str]]:
    # Probes and scrapers must always see the current state, never a cached one.
    return [("Content-Type", content_type), ("Content-Length", str(len(payload))), ("Cache-Control", "no-store")]


class HealthServer:
    """Serve `/`, `/live`, `/ready` and `/metrics` for `listeners` (one, or several run together)
    on `host:port` (port 0: any free).

    Example:
        >>> from tcpulse._ops.metrics import Metrics
        >>> class Busy:
        ...     metrics = Metrics()
        ...     def is_ready(self): return True
        >>> with HealthServer(Busy(), port=0) as server:
        ...     import urllib.request
        ...     urllib.request.urlopen(f"http://127.0.0.1:{server.port}/ready").status
        200
    """

    def __init__(self, listeners: Union[Watched, Iterable[Watched]], port: int, host: str = DEFAULT_HOST,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.listeners = _several(listeners)
        self.idle_timeout = idle_timeout
        self.host = host
        self.requested_port = port
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The port actually bound (differs from the requested one when that was 0)."""
        if self._server is None:
            return self.requested_port
        return self._server.server_address[1]

    def start(self) -> "HealthServer":
        """Bind and serve from a daemon thread; a port in use raises OSError naming it."""
        try:
            self._server = ThreadingHTTPServer((self.host, self.requested_port), _handler_for(self.listeners, self.idle_timeout))
        except OSError as exc:
            raise OSError(f"health endpoint cannot listen on {self.host}:{self.requested_port}: "
                          f"{exc.strerror or exc}") from exc
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tcpulse-health",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        log.info("health endpoint on http://%s:%d/ (/live, /ready, /metrics)", self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "HealthServer":
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _handler_for(listeners: List[Watched], idle_timeout: float) -> type:
    from tcpulse._ops.page import Page

    class Handler(_HealthHandler):
        watched = listeners
        page = Page(listeners[0] if len(listeners) == 1 else SimpleNamespace(listeners=listeners))
        timeout = idle_timeout  # StreamRequestHandler sets it on the socket: an idle read ends
    return Handler


class _HealthHandler(BaseHTTPRequestHandler):
    watched: List[Watched]
    page: Any
    server_version = "tcpulse-health"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._respond(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(with_body=False)

    def _respond(self, with_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        status, content_type, body = self.page.answer(path) if path in ("/", "/page.json") else \
            answer(self.watched, path)
        payload = body.encode("utf-8")
        self.send_response(status)
        for name, value in _headers(content_type, payload):
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        # Probes hit these paths every few seconds; access lines would drown the listener's log.
        log.debug("health %s - %s", self.address_string(), format % args)


def _safely_ready(watched: Watched) -> bool:
    # A probe must get an answer even if the flag is momentarily inconsistent.
    try:
        return bool(watched.is_ready())
    except Exception:  # noqa: BLE001
        log.exception("is_ready() raised; answering not ready")
        return False
