"""The health endpoint of a running listener: `/live`, `/ready` and `/metrics` over HTTP.

Owns a small threaded HTTP server bound to 127.0.0.1 by default, so that an orchestrator
(Kubernetes probes, systemd watchdog scripts, Prometheus) can ask a long-running listener
how it is doing.

Must not import kombu, requests or the listener: it only needs an object with `is_ready()`
and a `metrics` attribute (a `tcpulse._ops.metrics.Metrics`), so it stays cheap and testable.

- `/live`    200 while the process serves requests at all.
- `/ready`   200 only while the listener is connected and consuming, else 503.
- `/metrics` the listener's counters in Prometheus' text exposition format.
- `/`        the operator's page (`tcpulse.page`), and its data at `/page.json`.

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
from typing import Any, Optional, Protocol, Tuple

log = logging.getLogger("tcpulse.health")

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_HOST = "127.0.0.1"
IDLE_TIMEOUT = 10.0  # seconds a connection may wait before sending its request


class Watched(Protocol):
    """What the health server needs from a listener."""

    metrics: Any

    def is_ready(self) -> bool: ...


class HealthServer:
    """Serve `/live`, `/ready` and `/metrics` for `listener` on `host:port` (port 0: any free).

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

    def __init__(self, listener: Watched, port: int, host: str = DEFAULT_HOST,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.listener = listener
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
            self._server = ThreadingHTTPServer((self.host, self.requested_port), _handler_for(self.listener, self.idle_timeout))
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


def _handler_for(listener: Watched, idle_timeout: float) -> type:
    from tcpulse._ops.page import Page

    class Handler(_HealthHandler):
        watched = listener
        page = Page(listener)
        timeout = idle_timeout  # StreamRequestHandler sets it on the socket: an idle read ends
    return Handler


class _HealthHandler(BaseHTTPRequestHandler):
    watched: Watched
    page: Any
    server_version = "tcpulse-health"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._respond(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(with_body=False)

    def _respond(self, with_body: bool) -> None:
        status, content_type, body = self._answer(self.path.split("?", 1)[0])
        payload = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(payload)

    def _answer(self, path: str) -> Tuple[int, str, str]:
        if path == "/live":
            return 200, "text/plain; charset=utf-8", "live\n"
        if path == "/ready":
            ready = _safely_ready(self.watched)
            return (200, "text/plain; charset=utf-8", "ready\n") if ready else \
                   (503, "text/plain; charset=utf-8", "not ready: not connected to the broker or not consuming\n")
        if path == "/metrics":
            return 200, PROMETHEUS_CONTENT_TYPE, self.watched.metrics.render_prometheus()
        if path in ("/", "/page.json"):
            return self.page.answer(path)
        return 404, "text/plain; charset=utf-8", f"no such path {path!r}; try /, /live, /ready or /metrics\n"

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
