"""Counters a listener keeps about its own work, readable as a dict or as Prometheus text.

Also one histogram, `handler_seconds` (how long each handler's runs took, per handler), and
`render_prometheus(*metrics)`: the exposition of several listeners' metrics in one page, each
series carrying its listener's constant labels (`Metrics.labels`, e.g. `listener="watcher"`,
set when the listener starts), each family's HELP and TYPE once.
Handler names are kept as people read them (`readable`): `handler=` may be given either way.

Pure module: imports only the standard library. Thread-safe: handler threads and the
connection thread update the same counters.

Example:
    >>> m = Metrics()
    >>> m.inc("received")
    >>> m.inc("handler_errors", handler="app.completed")
    >>> m.get("received"), m.get("handler_errors", handler="app.completed")
    (1, 1)
"""
import bisect
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

# name -> help text; the counters every listener exposes, even at zero.
COUNTERS = {
    "received": "Messages this listener took on, each counted once: not again when a retry of it "
                "comes back, nor when it was prefetched and returned to the broker unstarted at shutdown.",
    "acked": "Messages acknowledged after every matching handler succeeded (or none matched).",
    "unmatched": "Messages that matched no handler (acknowledged).",
    "handled": "Handler runs that succeeded, by handler.",
    "retried": "Messages sent to a delayed retry.",
    "dead_lettered": "Messages parked in the dead-letter queue.",
    "handler_errors": "Exceptions raised by handlers, by handler.",
    "reconnects": "Connections re-established after the broker went away.",
    "loop_blocked": "Times an async handler kept the event loop from running for over 0.5 s.",
}

# name -> help text; gauges appear once first set (e.g. by tcpulse._listen.backlog.BacklogWatch).
GAUGES = {
    "queue_messages": "Messages waiting in the listener's queue at the last backlog poll.",
}

# Upper bounds (seconds) of the handler_seconds buckets: from a no-op to a handler that hangs.
HANDLER_SECONDS_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0)
HANDLER_SECONDS_HELP = "How long handler runs took, by handler (successes and failures alike)."

_Key = Tuple[str, Tuple[Tuple[str, str], ...]]


class Metrics:
    """A set of monotonically growing counters plus the time of the last message."""

    def __init__(self, prefix: str = "tcpulse", labels: Optional[Dict[str, str]] = None) -> None:
        self.prefix = prefix
        # Put on every rendered series; a listener sets {"listener": its label} when it starts.
        self.labels: Dict[str, str] = dict(labels or {})
        self._lock = threading.Lock()
        self._values: Dict[_Key, float] = {(name, ()): 0 for name in COUNTERS}
        self.last_message_at: Optional[float] = None
        self._gauges: Dict[str, float] = {}
        # handler -> [count per bucket (the last one is +Inf), sum of seconds]
        self._histogram: Dict[str, List[Any]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = _key(name, labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount
            if name == "received":
                self.last_message_at = time.time()

    def handler_ran(self, handler: str, seconds: float, failed: bool) -> None:
        """Count one run of `handler` (`handled` or `handler_errors`) and observe its duration.

        Example:
            >>> m = Metrics()
            >>> m.handler_ran("app.h", 0.2, failed=False)
            >>> m.get("handled", handler="app.h"), m.handler_seconds("app.h")
            (1, (1, 0.2))
        """
        handler = readable(handler)
        key = ("handler_errors" if failed else "handled", (("handler", handler),))
        with self._lock:
            self._values[key] = self._values.get(key, 0) + 1
            series = self._histogram.get(handler)
            if series is None:
                series = self._histogram[handler] = [[0] * (len(HANDLER_SECONDS_BUCKETS) + 1), 0.0]
            series[0][bisect.bisect_left(HANDLER_SECONDS_BUCKETS, seconds)] += 1
            series[1] += seconds

    def handler_seconds(self, handler: str) -> Tuple[int, float]:
        """(runs observed, total seconds) of `handler`."""
        with self._lock:
            counts, total = self._histogram.get(readable(handler), [[0], 0.0])
            return sum(counts), total

    def handler_histograms(self) -> Dict[str, Tuple[List[int], float]]:
        """handler -> (runs per bucket of HANDLER_SECONDS_BUCKETS, the last being +Inf; total seconds).

        Example:
            >>> m = Metrics(); m.handler_ran("app.h", 0.002, failed=False)
            >>> m.handler_histograms()["app.h"][0][:3]
            [0, 1, 0]
        """
        with self._lock:
            return {name: (list(counts), total) for name, (counts, total) in self._histogram.items()}

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get(_key(name, labels), 0)

    def total(self, name: str) -> float:
        """The sum of a counter over all its label values."""
        with self._lock:
            return sum(v for (n, _), v in self._values.items() if n == name)

    def by_label(self, name: str, label: str) -> Dict[str, float]:
        """A counter's value for each value of one label, e.g. handled runs per handler.

        Example:
            >>> m = Metrics()
            >>> m.inc("handled", handler="app.completed")
            >>> m.by_label("handled", "handler")
            {'app.completed': 1}
        """
        with self._lock:
            return {dict(labels)[label]: value for (n, labels), value in self._values.items()
                    if n == name and label in dict(labels)}

    def summary(self) -> str:
        """One line saying what a run did (`tcpulse listen` prints it; `Listener.run` logs it).

        Example:
            >>> m = Metrics(); m.inc("received"); m.inc("handled", handler="watch.completed")
            >>> m.summary()
            'received 1 message; handled: watch.completed 1; unmatched 0, retried 0, dead-lettered 0'
        """
        handled = sorted((name, int(value)) for name, value in self.by_label("handled", "handler").items())
        per_handler = ", ".join(f"{name} {count}" for name, count in handled) or "none"
        received = int(self.get("received"))
        return (f"received {received} message{'' if received == 1 else 's'}; handled: {per_handler}; "
                f"unmatched {int(self.get('unmatched'))}, retried {int(self.get('retried'))}, "
                f"dead-lettered {int(self.get('dead_lettered'))}")

    def set_gauge(self, name: str, value: float) -> None:
        """Set a value that can go down as well as up (unlike the counters)."""
        with self._lock:
            self._gauges[name] = value

    def gauge(self, name: str) -> Optional[float]:
        with self._lock:
            return self._gauges.get(name)

    def snapshot(self) -> Dict[str, float]:
        """Every counter as 'name' or 'name{label="value"}' -> value."""
        with self._lock:
            return {_series(name, labels): value for (name, labels), value in sorted(self._values.items())}

    def render_prometheus(self) -> str:
        """The counters in Prometheus' text exposition format (`render_prometheus(self)`)."""
        return render_prometheus(self)

    def families(self) -> Dict[str, Tuple[str, str, List[str]]]:
        """Metric name -> (help, type, sample lines), every sample carrying `labels`."""
        found: Dict[str, Tuple[str, str, List[str]]] = {}

        def add(metric: str, help_text: str, kind: str, line: str) -> None:
            found.setdefault(metric, (help_text, kind, []))[2].append(line)
        with self._lock:
            values = sorted(self._values.items())
            gauges = sorted(self._gauges.items())
            histogram = sorted((name, list(counts), total) for name, (counts, total) in self._histogram.items())
        for (name, labels), value in values:
            metric = f"{self.prefix}_{name}_total"
            add(metric, COUNTERS.get(name, name), "counter", f"{metric}{self._labelled(labels)} {value:g}")
        if self.last_message_at is not None:
            metric = f"{self.prefix}_last_message_age_seconds"
            add(metric, "Seconds since the last message was received.", "gauge",
                f"{metric}{self._labelled(())} {time.time() - self.last_message_at:.3f}")
        for name, value in gauges:
            metric = f"{self.prefix}_{name}"
            add(metric, GAUGES.get(name, name), "gauge", f"{metric}{self._labelled(())} {value:g}")
        metric = f"{self.prefix}_handler_seconds"
        for name, counts, total in histogram:
            labels = (("handler", name),)
            cumulative = 0
            for bound, count in zip((*HANDLER_SECONDS_BUCKETS, "+Inf"), counts):
                cumulative += count
                add(metric, HANDLER_SECONDS_HELP, "histogram",
                    f"{metric}_bucket{self._labelled(labels + (('le', str(bound)),))} {cumulative}")
            add(metric, HANDLER_SECONDS_HELP, "histogram", f"{metric}_sum{self._labelled(labels)} {total:.6f}")
            add(metric, HANDLER_SECONDS_HELP, "histogram", f"{metric}_count{self._labelled(labels)} {cumulative}")
        return found

    def _labelled(self, labels: Tuple[Tuple[str, str], ...]) -> str:
        merged = (*sorted(self.labels.items()), *labels)
        return _braces(merged)


def render_prometheus(*metrics: Metrics) -> str:
    """Several listeners' metrics as one Prometheus page: each family's HELP and TYPE once, then
    its series from every listener (told apart by their `labels`).

    Example:
        >>> a, b = Metrics(labels={"listener": "a"}), Metrics(labels={"listener": "b"})
        >>> b.inc("received", 2)
        >>> [line for line in render_prometheus(a, b).splitlines() if line.startswith("tcpulse_received")]
        ['tcpulse_received_total{listener="a"} 0', 'tcpulse_received_total{listener="b"} 2']
    """
    merged: Dict[str, Tuple[str, str, List[str]]] = {}
    for one in metrics:
        for metric, (help_text, kind, lines) in one.families().items():
            merged.setdefault(metric, (help_text, kind, []))[2].extend(lines)
    out: List[str] = []
    for metric, (help_text, kind, lines) in sorted(merged.items()):
        out += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", *lines]
    return "\n".join(out) + "\n"


def _braces(labels: Any) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def readable(text: str) -> str:
    """`text` with handler names as people read them: a function defined inside another reads
    `app.main.completed`, not `app.main.<locals>.completed`. For logs and metrics only: a
    handler's name itself (which retries record) keeps the `<locals>` part.

    Example:
        >>> readable("handled app.main.<locals>.completed, app.main.<locals>.make.<locals>.h")
        'handled app.main.completed, app.main.make.h'
    """
    return text.replace("<locals>.", "")


def _key(name: str, labels: Dict[str, str]) -> _Key:
    if "handler" in labels:
        labels = {**labels, "handler": readable(labels["handler"])}
    return name, tuple(sorted(labels.items()))


def _series(name: str, labels: Tuple[Tuple[str, str], ...]) -> str:
    return name + _braces(labels)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
