"""Tools for the fault-injection and health tests: a private RabbitMQ node, a ledger of
message ids, a burst publisher that survives broker faults, and a `tcpulse listen` process.

The shared broker on 5672 is used by every other test running beside these ones, so faults
that hit a whole broker (`stop_app`, `close_all_connections`) are injected only into a private
node started here (its own node name, ports, cookie, Mnesia and log directories under a temp
dir), never into the shared one.

Imports kombu (test-only module); the package under test is reached through its public API
and its console script.
"""
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from rabbitmq_cluster import RABBIT_BIN, Cluster, Node, new_cookie  # noqa: E402 - the script is not a package

EXCHANGE = "exchange/taskcluster-queue/v1/task-completed"
# primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>.<reserved>
ROUTING_KEY = "primary.{id}.0.wg.wid.prov.wtype.sched.group.fault._"


# Below Linux's ephemeral range (32768-60999): a port the kernel hands out for bind(0) or for an
# outgoing connection can be taken again between our pick and a broker node's own bind, which a
# busy test run did (a node failed with could_not_start_listener).
PORT_RANGE = (20000, 32000)


def free_ports(count: int) -> List[int]:
    """`count` distinct ports on 127.0.0.1 that nothing is bound to, each held until all are picked."""
    held: List[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", random.randrange(*PORT_RANGE)))
            except OSError:  # taken: pick another
                sock.close()
                continue
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


class PrivateRabbit(Node):
    """A RabbitMQ node of our own on 127.0.0.1, safe to stop, start and disconnect at will
    (scripts/rabbitmq_cluster.py's `Node` under a temp dir, with its own cookie and free ports)."""

    def __init__(self) -> None:
        base = Path(tempfile.mkdtemp(prefix="tcpulse-fault-"))
        new_cookie(base / "home")
        super().__init__(base, base / "home", f"tcpfault{os.getpid()}x{uuid.uuid4().hex[:4]}@localhost",
                         *free_ports(2))
        self.prepare()

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")

    def close_all_connections(self, reason: str = "fault injection") -> None:
        self.ctl("close_all_connections", reason)

    def add_pulse_user(self, prefix: str = "fault") -> "NodeUser":
        return add_pulse_user([self], prefix)


def add_pulse_user(nodes: List[Node], prefix: str) -> "NodeUser":
    """A user with Pulse's permissions (see tests/conftest.py), made through the first of `nodes`
    (a cluster shares its users); its URL names every node, ';'-separated."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    password = "p/@%" + uuid.uuid4().hex[:8]
    nodes[0].ctl("add_user", name, password)
    nodes[0].ctl("set_permissions", "-p", "/", name, f"^(queue/{name}/.*|exchange/{name}/.*)",
                 f"^(queue/{name}/.*|exchange/{name}/.*)", f"^(queue/{name}/.*|exchange/.*)")
    return NodeUser(nodes, name, password)


class NodeUser:
    """A Pulse-like user of private nodes; the password never shows in its repr."""

    def __init__(self, nodes: List[Node], name: str, password: str) -> None:
        from urllib.parse import quote

        self.name = name
        self.password = password
        self.urls = [f"amqp://{quote(name, safe='')}:{quote(password, safe='')}@127.0.0.1:{node.port}//"
                     for node in nodes]
        self.url = ";".join(self.urls)

    def __repr__(self) -> str:
        return f"NodeUser({self.name!r})"


class Ledger:
    """Ids published vs ids handled (one file line per handler run) and dead-lettered."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.published: List[int] = []
        self.dead_lettered: collections.Counter = collections.Counter()
        self.show: Callable[[str], None] = print

    def handled_file(self, label: str) -> Path:
        return self.directory / f"handled-{label}.txt"

    def handled_by(self, label: str) -> collections.Counter:
        path = self.handled_file(label)
        lines = path.read_text().split() if path.exists() else []
        return collections.Counter(int(line) for line in lines)

    def handled(self) -> collections.Counter:
        total: collections.Counter = collections.Counter()
        for path in self.directory.glob("handled-*.txt"):
            total.update(int(line) for line in path.read_text().split())
        return total

    def lost(self) -> List[int]:
        seen = set(self.handled()) | set(self.dead_lettered)
        return sorted(set(self.published) - seen)

    def duplicates(self) -> Dict[int, int]:
        return {mid: n for mid, n in self.handled().items() if n > 1}

    def report(self, scenario: str) -> str:
        handled = self.handled()
        dups = self.duplicates()
        line = (f"[{scenario}] published {len(set(self.published))} ids; handled {len(handled)} distinct "
                f"({sum(handled.values())} handler runs), dead-lettered {len(self.dead_lettered)}, "
                f"lost {len(self.lost())}, duplicated {len(dups)} ids ({sum(dups.values()) - len(dups)} extra runs)")
        self.show(line)
        return line


class BurstPublisher:
    """Publish persistent messages `{"id": n}` in batches; a batch counts as published once a
    synchronous round trip on the same channel returns after it (the broker processes a
    channel's commands in order). A batch cut by a fault is published again after reconnecting,
    so the broker may hold an id twice, but never lose one the ledger calls published."""

    def __init__(self, url: str, ledger: Ledger, batch: int = 500, pause: float = 0.0) -> None:
        self.url = url
        self.ledger = ledger
        self.batch = batch
        self.pause = pause
        self.republished = 0
        self.error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None

    def publish(self, ids: Iterable[int], max_faults: int = 200) -> None:
        import kombu

        ids = list(ids)
        conn = None
        position = 0
        while position < len(ids):
            chunk = ids[position:position + self.batch]
            try:
                if conn is None:
                    conn = kombu.Connection(self.url, connect_timeout=2)
                    conn.ensure_connection(max_retries=200, interval_start=0.2, interval_step=0.2, interval_max=0.5)
                    channel = conn.default_channel
                self._send(channel, chunk)
            except (OSError, *kombu.Connection(self.url).connection_errors, *kombu.Connection(self.url).channel_errors):
                # A broker fault cut this batch: reconnect and send all of it again.
                self.republished += len(chunk)
                max_faults -= 1
                if max_faults < 0:
                    raise
                _close_quietly(conn)
                conn = None
                time.sleep(0.2)
                continue
            self.ledger.published.extend(chunk)
            position += len(chunk)
            if self.pause:
                time.sleep(self.pause)
        _close_quietly(conn)

    def _send(self, channel, chunk: List[int]) -> None:
        import amqp

        for mid in chunk:
            body = json.dumps({"id": mid, "status": {"taskId": str(mid)}})
            message = amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2)
            channel.basic_publish(message, exchange=EXCHANGE, routing_key=ROUTING_KEY.format(id=mid))
        channel.exchange_declare(EXCHANGE, "topic", durable=True, passive=True)

    def start(self, ids: Iterable[int]) -> "BurstPublisher":
        def run() -> None:
            try:
                self.publish(ids)
            except BaseException as exc:  # noqa: BLE001 - reported by join()
                self.error = exc
        self._thread = threading.Thread(target=run, name="burst-publisher", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError("publisher did not finish in time")
        if self.error is not None:
            raise self.error

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()


def scenario(directory: Path, capsys) -> Tuple[Path, Ledger]:
    """The fault-test listener script written under `directory`, and a ledger there whose report
    is printed past pytest's capture."""
    script = directory / "listener.py"
    script.write_text(LISTENER_SCRIPT)
    ledger = Ledger(directory)
    ledger.show = lambda line: show(capsys, line)
    return script, ledger


def show(capsys, line: str) -> None:
    """Print past pytest's capture: the numbers a scenario measures belong in every CI log."""
    with capsys.disabled():
        print("\n  " + line)


def _close_quietly(conn) -> None:
    if conn is not None:
        try:
            conn.release()
        except Exception:  # noqa: BLE001
            pass


def declare_exchange(guest_url: str) -> None:
    """Declare the Taskcluster exchange as the service would (a Pulse user declares it passively)."""
    import kombu

    with kombu.Connection(guest_url) as conn:
        kombu.Exchange(EXCHANGE, type="topic", durable=True)(conn.channel()).declare()


LISTENER_SCRIPT = '''
"""A fault-test listener: appends each handled id to $LEDGER_FILE (unbuffered, so kill -9 keeps it)."""
import os, time
import tcpulse

FD = os.open(os.environ["LEDGER_FILE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
DELAY = float(os.environ.get("HANDLER_DELAY", "0"))
FAIL_UNTIL = int(os.environ.get("FAIL_UNTIL_ATTEMPT", "0"))
FAIL_EVERY = int(os.environ.get("FAIL_EVERY", "0"))

app = tcpulse.Listener(retry_delays=(float(os.environ.get("RETRY_DELAY", "1")),), max_attempts=5)


@app.on(tcpulse.QueueEvents.taskCompleted(taskGroupId="group"))
def handled(event):
    mid = event.body["id"]
    if DELAY:
        time.sleep(DELAY)
    if FAIL_EVERY and mid % FAIL_EVERY == 0 and event.attempt < FAIL_UNTIL:
        raise RuntimeError(f"transient failure of {mid} on attempt {event.attempt}")
    os.write(FD, f"{mid}\\n".encode())
'''


def drain_ids(url: str, queue: str) -> collections.Counter:
    """Take every message off `queue` (e.g. a dead-letter queue) and count the ids of their bodies."""
    import kombu

    ids: collections.Counter = collections.Counter()
    with kombu.Connection(url) as conn:
        simple = conn.SimpleQueue(kombu.Queue(queue, no_declare=True))
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                return ids
            ids[json.loads(message.body)["id"]] += 1
            message.ack()


def quiet_metrics(process: "ListenerProcess", timeout: float = 30) -> Dict[str, float]:
    """The listener's counters once they stopped moving (three reads 0.5 s apart agree)."""
    def counters() -> Dict[str, float]:
        return {k: v for k, v in process.metrics().items() if "age_seconds" not in k}
    reads = [counters()]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        reads = [*reads[-2:], counters()]
        if len(reads) == 3 and reads[0] == reads[1] == reads[2]:
            return reads[-1]
    raise AssertionError(f"listener {process.label}'s counters kept moving for {timeout} s")


def counter(metrics: Dict[str, float], name: str) -> float:
    """A counter summed over its labels: counter(m, 'handled') adds every handler's series."""
    prefix = f"tcpulse_{name}_total"
    return sum(v for k, v in metrics.items() if k == prefix or k.startswith(prefix + "{"))


class ListenerProcess:
    """`tcpulse listen` in a subprocess with a health port, writing to the ledger file `label`."""

    def __init__(self, script: Path, url: str, queue: str, ledger: Ledger, label: str,
                 extra_args: Iterable[str] = (), env: Optional[Dict[str, str]] = None) -> None:
        self.label = label
        self.health_port = free_port()
        self.log_path = ledger.directory / f"listener-{label}.log"
        command = [sys.executable, "-m", "tcpulse", "listen", str(script), "--broker", url, "--queue", queue,
                   "--health-port", str(self.health_port), "--log-level", "info", *extra_args]
        full_env = dict(os.environ, LEDGER_FILE=str(ledger.handled_file(label)), PYTHONUNBUFFERED="1", **(env or {}))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    def get(self, path: str) -> Tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: self._ready(), timeout, f"listener {self.label} to be ready", self)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"listener {self.label} exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        try:
            return self.get("/ready")[0] == 200
        except OSError:
            return False

    def metrics(self) -> Dict[str, float]:
        return parse_prometheus(self.get("/metrics")[1])

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def parse_prometheus(text: str) -> Dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = f"\nlistener log (end):\n{process.log()[-4000:]}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(0.1)
