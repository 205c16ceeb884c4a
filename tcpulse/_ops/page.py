"""The operator's page of the health port (`/`), and its data as JSON (`/page.json`).

Owns: what a person running listeners sees in a browser: for each listener the broker node it is
connected to and its uptime; received, handled and failed per minute; per-handler counts and
duration percentiles (estimated from the `handler_seconds` histogram); the backlog, the dead
letters and the recent errors. The page refreshes itself every few seconds, loads nothing from
elsewhere (inline style, no script), shows no secret (the node is its redacted address; errors
are the listener's own warning and error lines, cut short) and changes nothing: the port has no
authentication, so there are no buttons.

Rates come from samples of the counters taken whenever the page or its JSON is asked for (and
once at start), so they need no thread: the per-minute rate is the growth over the last minute
of samples, scaled up while fewer than 60 s of them exist.

Reads the listener only through `metrics`, `name`, `queue`, `is_ready()` and, when running, its
consumer's `node`; a supervisor of several processes (`tcpulse._listen.supervisor`) hands over the
children's snapshots instead (`page_snapshots()`). Imports only the standard library.

Example:
    >>> from tcpulse._ops.metrics import Metrics
    >>> class Idle:
    ...     name, queue, metrics = "w", "queue/u/w", Metrics()
    ...     def is_ready(self): return False
    >>> "<td>w</td>" in Page(Idle()).answer("/")[2]
    True
"""
import bisect
import html
import json
import logging
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from tcpulse._ops.metrics import HANDLER_SECONDS_BUCKETS

REFRESH_SECONDS = 5
RATE_WINDOW = 60.0  # seconds the per-minute rates look back
RECENT_ERRORS = 10
ERROR_TEXT = 300  # characters of an error line shown
PERCENTILES = (0.5, 0.95, 0.99)
ERROR_LOGGERS = ("tcpulse.listener", "tcpulse.delivery", "tcpulse.backlog")  # where a listener's warnings go
RATES = (("received", ("received",)), ("handled", ("handled",)), ("failed", ("handler_errors",)))


class RecentErrors(logging.Filter):
    """Keeps the last few warnings and errors a listener logs (on ERROR_LOGGERS). A filter on
    those loggers, not a handler: a handler there would count as logging being configured, and
    an application without any would no longer see warnings through Python's last resort."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: Deque[Tuple[float, str]] = deque(maxlen=RECENT_ERRORS)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.lines.append((record.created, _error_text(record)))
        return True


def _error_text(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f": {type(exc).__name__}: {exc}"
    except Exception:  # noqa: BLE001 - a log line that cannot be formatted must not break the page
        text = str(record.msg)
    return text if len(text) <= ERROR_TEXT else text[:ERROR_TEXT - 1] + "…"


_errors = RecentErrors()
_errors_installed = threading.Lock()


def _install_errors() -> RecentErrors:
    with _errors_installed:
        for name in ERROR_LOGGERS:
            logger = logging.getLogger(name)
            if _errors not in logger.filters:
                logger.addFilter(_errors)
    return _errors


class _Rates:
    """Samples of a listener's counters over the last minute."""

    def __init__(self) -> None:
        self.samples: Deque[Tuple[float, Dict[str, float]]] = deque()

    def per_minute(self, now: float, totals: Dict[str, float]) -> Dict[str, float]:
        self.samples.append((now, totals))
        while len(self.samples) > 2 and self.samples[1][0] <= now - RATE_WINDOW:
            self.samples.popleft()
        then, old = self.samples[0]
        elapsed = max(now - then, 1e-9)
        return {name: round((totals[name] - old[name]) * 60.0 / elapsed, 1) if elapsed >= 1 else 0.0
                for name in totals}


class Page:
    """The page of one health port: `answer(path)` -> (status, content type, body)."""

    def __init__(self, watched: Any) -> None:
        self.watched = watched
        self.started = time.time()
        self.errors = _install_errors()
        self._rates: Dict[int, _Rates] = {}
        self._lock = threading.Lock()
        self.snapshots()  # the first sample: rates count from the start

    def answer(self, path: str) -> Tuple[int, str, str]:
        snapshots = self.snapshots()
        if path == "/page.json":
            return 200, "application/json", json.dumps(snapshots, sort_keys=True)
        return 200, "text/html; charset=utf-8", render_html(snapshots)

    def snapshots(self) -> List[Dict[str, Any]]:
        """The data of the page: one dict per listener (see `snapshot`)."""
        children = getattr(self.watched, "page_snapshots", None)
        if children is not None:
            return children()
        listeners = getattr(self.watched, "listeners", None) or [self.watched]
        with self._lock:
            return [self.snapshot(listener) for listener in listeners]

    def snapshot(self, listener: Any) -> Dict[str, Any]:
        metrics, now = listener.metrics, time.time()
        totals = {label: sum(metrics.total(name) for name in names) for label, names in RATES}
        rates = self._rates.setdefault(id(listener), _Rates()).per_minute(now, totals)
        handled, failed = metrics.by_label("handled", "handler"), metrics.by_label("handler_errors", "handler")
        histograms = metrics.handler_histograms()
        handlers = [{"handler": name, "handled": int(handled.get(name, 0)), "failed": int(failed.get(name, 0)),
                     **percentiles(histograms.get(name, ([], 0.0))[0])}
                    for name in sorted(set(handled) | set(failed) | set(histograms))]
        consumer = getattr(listener, "_consumer", None)
        node = getattr(consumer, "node", None)
        return {"listener": getattr(listener, "name", None) or "(anonymous)", "queue": _safe_queue(listener),
                "process": None, "pid": None, "ready": bool(_safely(listener.is_ready)),
                "node": getattr(node, "redacted", None), "uptime_seconds": round(now - self.started, 1),
                "per_minute": rates, "totals": {k: int(v) for k, v in totals.items()},
                "handlers": handlers, "backlog": metrics.gauge("queue_messages"),
                "dead_letters": int(metrics.total("dead_lettered")), "retried": int(metrics.total("retried")),
                "errors": [[time.strftime("%H:%M:%S", time.gmtime(at)), text] for at, text in self.errors.lines]}


def _safely(call: Any) -> Any:
    try:
        return call()
    except Exception:  # noqa: BLE001 - the page must render whatever state the listener is in
        return None


def _safe_queue(listener: Any) -> Optional[str]:
    try:
        return listener.queue
    except Exception:  # noqa: BLE001 - an unresolvable broker: no queue name to show
        return None


def percentiles(counts: Sequence[int]) -> Dict[str, Optional[float]]:
    """p50, p95 and p99 in seconds from histogram bucket counts (HANDLER_SECONDS_BUCKETS, then
    +Inf), interpolated inside the bucket; beyond the last bound it reads as that bound.

    Example:
        >>> percentiles([0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0])["p50"]
        0.003
    """
    total = sum(counts)
    if not total:
        return {f"p{int(q * 100)}": None for q in PERCENTILES}
    cumulative, running = [], 0
    for count in counts:
        running += count
        cumulative.append(running)
    result = {}
    for q in PERCENTILES:
        rank = q * total
        index = bisect.bisect_left(cumulative, rank)
        bounds = (0.0, *HANDLER_SECONDS_BUCKETS)
        if index >= len(HANDLER_SECONDS_BUCKETS):
            value = HANDLER_SECONDS_BUCKETS[-1]
        else:
            low, high = bounds[index], bounds[index + 1]
            before = cumulative[index - 1] if index else 0
            value = low + (high - low) * (rank - before) / max(counts[index], 1)
        result[f"p{int(q * 100)}"] = round(value, 4)
    return result


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24;background:#fafbfc}
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left}
th{background:#eef1f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#57606a}
"""


def render_html(snapshots: List[Dict[str, Any]]) -> str:
    """The whole page for these snapshots (escaped: names and errors come from outside)."""
    body = "".join(_listener_html(s) for s in snapshots) or "<p>No listener.</p>"
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">"
            f"<title>tcpulse listeners</title><style>{_STYLE}</style></head><body>"
            f"<h1>tcpulse listeners</h1><p class=\"muted\">Refreshes every {REFRESH_SECONDS} s; read-only. "
            f"Data: <a href=\"/page.json\">/page.json</a>, <a href=\"/metrics\">/metrics</a>.</p>"
            f"{body}</body></html>")


def _e(value: Any) -> str:
    return html.escape("-" if value is None else str(value))


def _listener_html(s: Dict[str, Any]) -> str:
    title = _e(s["listener"]) + (f" (process {_e(s['process'])}, pid {_e(s['pid'])})" if s.get("process") is not None
                                 else "")
    state = "<span class=\"ok\">ready</span>" if s["ready"] else "<span class=\"bad\">not ready</span>"
    rates, totals = s["per_minute"], s["totals"]
    rows = "".join(f"<tr><td>{_e(h['handler'])}</td><td class=\"num\">{h['handled']}</td>"
                   f"<td class=\"num\">{h['failed']}</td>{_seconds(h['p50'])}{_seconds(h['p95'])}"
                   f"{_seconds(h['p99'])}</tr>" for h in s["handlers"])
    errors = "".join(f"<li><span class=\"muted\">{_e(at)}</span> {_e(text)}</li>" for at, text in s["errors"])
    return (f"<section><h2>{title} {state}</h2>"
            f"<table><tr><th>listener</th><td>{_e(s['listener'])}</td></tr><tr><th>queue</th><td>{_e(s['queue'])}</td></tr>"
            f"<tr><th>node</th><td>{_e(s['node'])}</td></tr><tr><th>uptime</th><td>{_uptime(s['uptime_seconds'])}</td></tr>"
            f"<tr><th>backlog</th><td class=\"num\">{_e(s['backlog'])}</td></tr>"
            f"<tr><th>dead letters</th><td class=\"num\">{s['dead_letters']}</td></tr>"
            f"<tr><th>retried</th><td class=\"num\">{s['retried']}</td></tr></table>"
            f"<table><tr><th></th><th>received</th><th>handled</th><th>failed</th></tr>"
            f"<tr><th>per minute</th>{''.join(_num(rates[k]) for k in ('received', 'handled', 'failed'))}</tr>"
            f"<tr><th>total</th>{''.join(_num(totals[k]) for k in ('received', 'handled', 'failed'))}</tr></table>"
            f"<table><tr><th>handler</th><th>handled</th><th>failed</th><th>p50</th><th>p95</th><th>p99</th></tr>"
            f"{rows or '<tr><td colspan=6 class=muted>no handler has run yet</td></tr>'}</table>"
            f"<h3>Recent errors</h3>{f'<ul>{errors}</ul>' if errors else '<p class=muted>none</p>'}</section>")


def _num(value: Any) -> str:
    return f"<td class=\"num\">{_e(value)}</td>"


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "<td class=\"num\">-</td>"
    return f"<td class=\"num\">{value * 1000:.1f} ms</td>" if value < 1 else f"<td class=\"num\">{value:.2f} s</td>"


def _uptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return _e(f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s")
