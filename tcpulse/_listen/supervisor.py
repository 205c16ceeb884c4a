"""Several processes of one listener script: `tcpulse listen SCRIPT --processes N` and
`tcpulse.supervise(SCRIPT, processes=N, ...)`.

Owns: running N child `tcpulse listen SCRIPT ...` processes on the same named queue (competing
consumers, so CPU-bound handlers use more than one core), restarting a child that dies (after
0.5 s, doubling per quick successive death of that child up to 30 s), giving up when children
die more than CRASH_LIMIT times within CRASH_WINDOW seconds (exit 1, naming that rate), and
passing SIGTERM/SIGINT on: every child drains and exits, and the supervisor exits 0 when they all
did so cleanly; a second signal is passed on too (the children then exit at once).

One health port for all (`health_port`): `/metrics` is every child's series with a `process`
label (0 .. N-1) plus the supervisor's own restarts; `/ready` is 200 only while every child
answers ready; `/` and `/page.json` show each child's page data. Each child serves its own
health port on 127.0.0.1 at a free port the supervisor picks; the supervisor reads those.

Children run in sessions of their own, so a terminal's Ctrl-C reaches the supervisor alone (it
forwards one SIGTERM, rather than each child getting a second signal and quitting mid-handler);
on Linux a child is also sent SIGTERM if the supervisor itself dies.

Imports only the standard library and tcpulse's health and page modules; never kombu.

Example (needs a broker):
    >>> supervise("app.py", 2, "--queue", "builds", health_port=8080)   # doctest: +SKIP
    0
"""
import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Deque, Dict, List, Optional, Sequence

log = logging.getLogger("tcpulse.supervisor")

CRASH_LIMIT = 5  # deaths within CRASH_WINDOW seconds before the supervisor gives up
CRASH_WINDOW = 60.0
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 30.0  # seconds before a restart, doubling per quick death
STABLE_AFTER = 60.0  # a child that lived this long starts its backoff afresh when it dies
STOP_WAIT = 60.0  # seconds children get to drain after the signal before they are killed
POLL = 0.1
PEER_TIMEOUT = 2.0  # seconds to wait for a child's health answer
EXIT_USAGE = 2
PROCESS_VARIABLE = "TCPULSE_PROCESS"  # a child's slot number, for its log lines


class _Child:
    """One slot's current process."""

    def __init__(self, slot: int, command: List[str]) -> None:
        self.slot = slot
        self.port = _free_port()
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*command, "--health-port", str(self.port)], start_new_session=True,
                                     env={**os.environ, PROCESS_VARIABLE: str(slot)}, preexec_fn=_die_with_parent)
        log.info("started process %d (pid %d)", slot, self.proc.pid)

    def get(self, path: str) -> Optional[str]:
        """The child's health answer at `path`, or None when it does not answer 200."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=PEER_TIMEOUT) as resp:
                return resp.read().decode("utf-8")
        except (OSError, urllib.error.URLError):
            return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG (1): SIGTERM this child when the supervisor dies (even by SIGKILL).
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the child outlives a killed supervisor


class Supervisor:
    """Runs `processes` children of `tcpulse listen script *listen_args`; `run()` returns the
    exit code. `health_port`: the one health port of them all (None: none)."""

    def __init__(self, script: str, processes: int, listen_args: Sequence[str] = (),
                 health_port: Optional[int] = None) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an integer >= 1 (got {processes!r})")
        self.command = [sys.executable, "-m", "tcpulse", "listen", str(script), *listen_args]
        self.processes = processes
        self.health_port = health_port
        self.children: Dict[int, Optional[_Child]] = {}
        self.restart_at: Dict[int, float] = {}
        self.quick_deaths: Dict[int, int] = collections.defaultdict(int)
        self.deaths: Deque[float] = collections.deque()
        self.restarts = 0
        self.finished: set = set()  # slots whose child exited 0 on its own (e.g. --exit-when-idle)
        self.metrics = _Aggregated(self)
        self._signals = 0
        self._terminated: set = set()  # pids already sent SIGTERM for the signal
        self._lock = threading.RLock()  # also taken by the signal handler, on the same thread

    # -- what the health server reads ------------------------------------------------------
    def live_children(self) -> List[_Child]:
        with self._lock:
            return [c for c in self.children.values() if c is not None and c.proc.poll() is None]

    def is_ready(self) -> bool:
        """Every slot has a running child that answers ready."""
        children = self.live_children()
        return len(children) == self.processes and all(c.get("/ready") is not None for c in children)

    def page_snapshots(self) -> List[Dict[str, Any]]:
        import json

        snapshots = []
        for child in self.live_children():
            text = child.get("/page.json")
            for snapshot in json.loads(text) if text else [_unreachable(child)]:
                snapshots.append({**snapshot, "process": child.slot, "pid": child.proc.pid})
        return snapshots

    # -- running ---------------------------------------------------------------------------
    def run(self) -> int:
        health = None
        if self.health_port is not None:
            from tcpulse._ops.health import HealthServer
            health = HealthServer(self, self.health_port).start()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.processes):
                self._start(slot)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if health is not None:
                health.stop()

    def _start(self, slot: int) -> None:
        with self._lock:
            self.children[slot] = _Child(slot, self.command)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        children = self.live_children()
        log.info("%s: passing SIGTERM to %d process(es)%s", name, len(children),
                 "; they exit at once" if self._signals > 1 else ", which finish their running handlers")
        for child in children:
            self._terminated.add(child.proc.pid)
            _signal(child, signal.SIGTERM)

    def _watch(self) -> int:
        while not self._signals:
            now = time.monotonic()
            for slot, child in list(self.children.items()):
                if child is not None and child.proc.poll() is not None:
                    verdict = self._exited(slot, child, now)
                    if verdict is not None:
                        return self._stop_all(verdict)
            for slot, when in list(self.restart_at.items()):
                if now >= when and not self._signals:
                    del self.restart_at[slot]
                    self.restarts += 1
                    self._start(slot)
            if len(self.finished) == self.processes:
                return 0
            time.sleep(POLL)
        return self._stop_all(0)

    def _exited(self, slot: int, child: _Child, now: float) -> Optional[int]:
        """Handle a child's exit: the supervisor's exit code when it must give up, else None."""
        code = child.proc.returncode
        with self._lock:
            self.children[slot] = None
        if code == 0:
            log.info("process %d (pid %d) finished", slot, child.proc.pid)
            self.finished.add(slot)
            return None
        if code == EXIT_USAGE:
            log.error("process %d (pid %d) refused its command line (exit 2): not restarting", slot, child.proc.pid)
            return EXIT_USAGE
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - CRASH_WINDOW:
            self.deaths.popleft()
        if len(self.deaths) > CRASH_LIMIT:
            log.error("giving up: processes died %d times within %g s (the limit is %d per %g s)",
                      len(self.deaths), CRASH_WINDOW, CRASH_LIMIT, CRASH_WINDOW)
            return 1
        self.quick_deaths[slot] = 0 if now - child.started > STABLE_AFTER else self.quick_deaths[slot] + 1
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** max(self.quick_deaths[slot] - 1, 0))
        log.warning("process %d (pid %d) died (%s); restarting it in %.1f s", slot, child.proc.pid,
                    _how(code), delay)
        self.restart_at[slot] = now + delay
        return None

    def _stop_all(self, code: int) -> int:
        """SIGTERM what still runs (unless a signal already did), wait for every child, return
        `code`, or 1 when a child did not exit cleanly after a signal."""
        for child in self.live_children():  # all, or one started as the signal came
            if child.proc.pid not in self._terminated:
                _signal(child, signal.SIGTERM)
        self.restart_at.clear()
        deadline = time.monotonic() + STOP_WAIT
        clean = True
        for child in [c for c in self.children.values() if c is not None]:
            try:
                child.proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("process %d (pid %d) did not stop within %g s: killing it", child.slot,
                          child.proc.pid, STOP_WAIT)
                child.proc.kill()
                child.proc.wait()
            clean = clean and child.proc.returncode == 0
        if self._signals and code == 0:
            return 0 if clean else 1
        return code


def _signal(child: _Child, signum: int) -> None:
    try:
        child.proc.send_signal(signum)
    except ProcessLookupError:
        pass  # it exited meanwhile


def _how(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _unreachable(child: _Child) -> Dict[str, Any]:
    """Page data for a child that does not answer (starting, or stuck)."""
    return {"listener": "(not answering)", "queue": None, "ready": False, "node": None,
            "uptime_seconds": round(time.monotonic() - child.started, 1),
            "per_minute": {"received": 0, "handled": 0, "failed": 0}, "totals": {"received": 0, "handled": 0, "failed": 0},
            "handlers": [], "backlog": None, "dead_letters": 0, "retried": 0, "errors": []}


class _Aggregated:
    """`/metrics` of the supervisor: each child's series with a `process` label, plus its own."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def render_prometheus(self) -> str:
        families: Dict[str, List[str]] = {}
        samples: Dict[str, List[str]] = collections.defaultdict(list)
        for child in sorted(self.supervisor.live_children(), key=lambda c: c.slot):
            family = ""
            for line in (child.get("/metrics") or "").splitlines():
                if line.startswith("# "):
                    family = line.split()[2]
                    families.setdefault(family, [])
                    if line not in families[family]:
                        families[family].append(line)
                elif line:
                    samples[family].append(with_label(line, "process", str(child.slot)))
        lines = [line for family, meta in families.items() for line in (*meta, *samples[family])]
        lines += ["# HELP tcpulse_supervisor_restarts_total Child processes restarted after they died.",
                  "# TYPE tcpulse_supervisor_restarts_total counter",
                  f"tcpulse_supervisor_restarts_total {self.supervisor.restarts}",
                  "# HELP tcpulse_supervisor_processes Child processes running now.",
                  "# TYPE tcpulse_supervisor_processes gauge",
                  f"tcpulse_supervisor_processes {len(self.supervisor.live_children())}"]
        return "\n".join(lines) + "\n"


def with_label(sample: str, name: str, value: str) -> str:
    """A Prometheus sample line with one more label, first.

    Example:
        >>> with_label('tcpulse_handled_total{handler="a"} 3', "process", "1")
        'tcpulse_handled_total{process="1",handler="a"} 3'
        >>> with_label("tcpulse_received_total 5", "process", "0")
        'tcpulse_received_total{process="0"} 5'
    """
    series, _, number = sample.rpartition(" ")
    if series.endswith("}"):
        metric, _, labels = series.partition("{")
        return f'{metric}{{{name}="{value}",{labels} {number}'
    return f'{series}{{{name}="{value}"}} {number}'


def supervise(script: str, processes: int, *listen_args: str, health_port: Optional[int] = None) -> int:
    """Run `processes` processes of `tcpulse listen script *listen_args` as competing consumers
    until SIGTERM/SIGINT; returns the exit code (0 when every child drained and exited cleanly).
    The listener must be named (`--queue NAME` or `Listener("name")`): processes share its queue.

    Example (needs a broker):
        >>> import sys, tcpulse
        >>> sys.exit(tcpulse.supervise("app.py", 4, "--queue", "builds", health_port=8080))   # doctest: +SKIP
    """
    return Supervisor(script, processes, listen_args, health_port).run()
