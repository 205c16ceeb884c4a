"""Record and replay Pulse messages as JSON Lines.

Owns: the file format (one message per line: `{"exchange": ..., "routing_key": ..., "routes":
[...], "body": {...}}` plus optional metadata keys, `routes` being the CC'd routes without their
`route.` prefix, as in `event.routes`), reading it with errors that name the file and line,
writing it, and moving messages between a broker and a file (`record_from`, `replay_into`).

Files are streamed, never held whole: `read` checks every line in one pass (so that a bad line
is reported before anything is published) and reads the file again for each use. An error quotes
at most a short excerpt of the bad value; a body is held to `tcpulse._listen.outcome`'s rules for bodies
(nesting at most MAX_DEPTH levels), as the listener would.

Imports kombu only inside the broker-facing functions; never imports requests or the listener.

Example:
    >>> import io
    >>> line = '{"exchange": "exchange/x", "routing_key": "primary.a", "routes": ["r.1"], "body": {}}'
    >>> [m.cc for m in read_lines(io.StringIO(line + "\\n"))]
    [['route.r.1']]
"""
import json
import reprlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, IO, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from tcpulse.errors import TaskclusterFailure
from tcpulse._api.hints import did_you_mean
from tcpulse._listen.outcome import MAX_DEPTH, Poison, decode_body, header_strings, too_deep

REQUIRED = ("exchange", "routing_key", "body")
ROUTE_PREFIX = "route."
# Longest line read: far above a message (the listener refuses bodies over 1 MiB), and a bound on
# what one line of a hostile file can make us hold.
MAX_LINE = 16 * 1024 * 1024
# An error quotes a bad value through this: a 10 MiB string must not become a 10 MiB message.
_EXCERPT = reprlib.Repr()
_EXCERPT.maxstring = _EXCERPT.maxother = 80
_EXCERPT.maxlist = _EXCERPT.maxdict = 5
_EXCERPT.maxlevel = 3


class RecordingError(TaskclusterFailure, ValueError):
    """A recording file that cannot be read: the message names the file, the line and the problem.

    Example:
        >>> parse_line("[]", "m.jsonl line 7")
        Traceback (most recent call last):
        ...
        tcpulse._ops.recording.RecordingError: m.jsonl line 7: expected a JSON object with exchange, routing_key, body (got list)
    """


@dataclass(frozen=True)
class Recorded:
    """One recorded message; `metadata` holds any other keys of its line (kept on rewrite);
    `line` is its line number in the file it was read from (0 when it was not read from one).

    Example:
        >>> Recorded("exchange/x", "primary.a", ("index.b",), {"n": 1}).cc
        ['route.index.b']
    """
    exchange: str
    routing_key: str
    routes: Tuple[str, ...]
    body: Dict[str, Any]
    metadata: Dict[str, Any] = field(default_factory=dict)
    line: int = field(default=0, compare=False)

    @property
    def cc(self) -> List[str]:
        """The routes as they travel in the AMQP `CC` header."""
        return [ROUTE_PREFIX + route for route in self.routes]

    def to_json(self) -> str:
        data = {"exchange": self.exchange, "routing_key": self.routing_key,
                "routes": list(self.routes), "body": self.body, **self.metadata}
        return json.dumps(data, sort_keys=False, separators=(",", ":"))

    @classmethod
    def from_delivery(cls, body: Dict[str, Any], delivery_info: Dict[str, Any],
                      headers: Optional[Dict[str, Any]]) -> "Recorded":
        """Build from what a consumer received (the CC header keeps its `route.` prefix)."""
        cc = header_strings((headers or {}).get("CC"))  # whatever a publisher sent: text items only
        routes = tuple(r[len(ROUTE_PREFIX):] for r in cc if r.startswith(ROUTE_PREFIX))
        return cls(delivery_info["exchange"], delivery_info["routing_key"], routes, body,
                   {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def read(path: Union[str, Path]) -> "Recording":
    """The messages of the recording at `path`, every line checked now; the first bad line
    raises `RecordingError`.

    Example:
        >>> read("/nonexistent.jsonl")
        Traceback (most recent call last):
        ...
        tcpulse._ops.recording.RecordingError: /nonexistent.jsonl: no such file
    """
    return Recording(path)


class Recording:
    """The messages of a JSON Lines file, read from the file each time they are iterated (a
    100 MB recording costs one line of memory); `len()` is their number, counted by the first
    pass, which checks every line.

    Example:
        >>> recording = Recording("examples/messages/index-routes.jsonl")
        >>> len(recording), next(iter(recording)).exchange
        (4, 'exchange/taskcluster-queue/v1/task-completed')
    """

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = str(path)
        self._count = sum(1 for _ in self)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Recorded]:
        try:
            with open(self.path, "rb") as handle:
                yield from read_lines(iter(lambda: handle.readline(MAX_LINE + 1), b""), self.path)
        except FileNotFoundError:
            raise RecordingError(f"{self.path}: no such file") from None
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot be read ({exc})") from None


def read_lines(lines: Iterable[Union[str, bytes]], name: str = "<input>") -> Iterator[Recorded]:
    """Parse JSON Lines (text, or bytes taken as UTF-8); blank lines are skipped, the first bad
    one raises `RecordingError`.

    Example:
        >>> [m.routing_key for m in read_lines(["", '{"exchange": "x", "routing_key": "k", "body": {}}'])]
        ['k']
        >>> list(read_lines([b'{"exchange": "\\xff"}'], "m.jsonl"))
        Traceback (most recent call last):
        ...
        tcpulse._ops.recording.RecordingError: m.jsonl line 1: not valid UTF-8 (byte 14)
    """
    for number, line in enumerate(lines, start=1):
        where = f"{name} line {number}"
        if len(line) > MAX_LINE:  # its rest would be read as the next line: stop here
            raise RecordingError(f"{where}: longer than {MAX_LINE} bytes (a message body is at most 1 MiB)")
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RecordingError(f"{where}: not valid UTF-8 (byte {exc.start})") from None
        if line.strip():
            yield replace(parse_line(line, where), line=number)


def parse_line(line: str, where: str) -> Recorded:
    """One message from one JSON line; `where` prefixes any error ("file.jsonl line 3").

    Example:
        >>> parse_line('{"exchange": "x", "routing_key": "k", "body": {}, "note": 1}', "here").metadata
        {'note': 1}
    """
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise RecordingError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise RecordingError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(data, dict):
        raise RecordingError(f"{where}: expected a JSON object with {', '.join(REQUIRED)} "
                             f"(got {type(data).__name__})")
    _check_required(data, where)
    routes = data.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, str) for r in routes):
        raise RecordingError(f"{where}: 'routes' must be a list of strings (got {_EXCERPT.repr(routes)})")
    deep = next((key for key, value in data.items() if too_deep(line, value)), None)
    if deep is not None:
        raise RecordingError(f"{where}: {deep!r} is JSON nested more than {MAX_DEPTH} levels deep")
    metadata = {k: v for k, v in data.items() if k not in (*REQUIRED, "routes")}
    return Recorded(data["exchange"], data["routing_key"], tuple(routes), data["body"], metadata)


def _check_required(data: Dict[str, Any], where: str) -> None:
    for name in REQUIRED:
        if name not in data:
            stray = next((key for key in data if key not in REQUIRED and did_you_mean(key, [name])), None)
            hint = f" It has {stray!r}.{did_you_mean(stray, [name])}" if stray is not None else ""
            raise RecordingError(f"{where}: field {name!r} is missing (each line needs "
                                 f"{', '.join(REQUIRED)}).{hint}")
    for name, kind, label in (("exchange", str, "a string"), ("routing_key", str, "a string"),
                              ("body", dict, "a JSON object")):
        if not isinstance(data[name], kind):
            raise RecordingError(f"{where}: {name!r} must be {label} (got {_EXCERPT.repr(data[name])})")
    if not data["exchange"]:
        raise RecordingError(f"{where}: 'exchange' must not be empty")


def write(out: IO[str], messages: Iterable[Recorded]) -> int:
    """Write `messages` as JSON Lines to the open text file `out`; returns how many.

    Example:
        >>> import sys
        >>> write(sys.stdout, [Recorded("exchange/x", "k", ("a",), {"n": 1})])
        {"exchange":"exchange/x","routing_key":"k","routes":["a"],"body":{"n":1}}
        1
    """
    count = 0
    for message in messages:
        out.write(message.to_json() + "\n")
        count += 1
    out.flush()
    return count


class ReplayStopped(TaskclusterFailure):
    """A replay that stopped at `message` (its `line`), `published` messages after the start,
    because of `error` (raised from it)."""

    def __init__(self, message: Recorded, published: int, error: BaseException) -> None:
        self.message, self.published, self.error = message, published, error
        super().__init__(f"line {message.line}: publishing to {message.exchange} failed ({published} "
                         f"published before it): {error}")


def replay_into(connection: Any, messages: Sequence[Recorded],
                progress: Optional[Callable[[int], None]] = None) -> int:
    """Publish `messages` to their exchanges on `connection` (a kombu Connection), with
    their routes in the CC header; returns how many were published. A failed publish raises
    `ReplayStopped`, naming the message's line and how many went before it.

    Example:
        >>> import kombu
        >>> with kombu.Connection("memory:///doc-replay", transport="tcpulse._broker.broker:Transport") as conn:
        ...     replay_into(conn, [Recorded("exchange/taskcluster-queue/v1/task-failed", "primary.t", (), {})])
        1
    """
    import kombu

    producer = kombu.Producer(connection.channel())
    for count, message in enumerate(messages, start=1):
        headers = {"CC": message.cc} if message.routes else {}
        try:
            producer.publish(message.body, exchange=message.exchange, routing_key=message.routing_key,
                             headers=headers, serializer="json", delivery_mode=2)
        except Exception as exc:  # whatever the broker or the connection raised, kept as the cause
            raise ReplayStopped(message, count - 1, exc) from exc
        if progress:
            progress(count)
    return len(messages)


def record_from(connection: Any, queue_name: str, bindings: Sequence[Tuple[str, str]], out: IO[str],
                count: Optional[int] = None, timeout: Optional[float] = None,
                progress: Optional[Callable[[int], None]] = None,
                ready: Optional[Callable[[], None]] = None) -> int:
    """Bind a queue of its own to `bindings` ((exchange, pattern) pairs, exchanges declared
    passively), write every message it receives to `out`, and stop after `count` messages or
    after `timeout` seconds in all; returns how many were recorded. `ready` is called once the
    queue is bound and consuming.

    A recording may run for days, so a lost connection is not the end of it: it reconnects with
    backoff, saying so on stderr, and goes on. The queue outlives its connection for
    `RECORD_QUEUE_EXPIRES` seconds (then the broker deletes it), so nothing published meanwhile
    is missed; it is deleted when the recording ends.

    Example:
        >>> import io, kombu
        >>> with kombu.Connection("memory:///doc-record", transport="tcpulse._broker.broker:Transport") as conn:
        ...     record_from(conn, "queue/guest/doc", [("exchange/taskcluster-queue/v1/task-failed", "#")],
        ...                 io.StringIO(), timeout=0.1)
        0
    """
    from tcpulse._broker.connection import lost_connection_errors

    writer = _Writer(out, count, progress)
    deadline = None if timeout is None else time.monotonic() + timeout
    lost = 0
    while True:
        try:
            _record_once(connection, queue_name, bindings, writer, deadline, ready if not lost else None)
            break
        except lost_connection_errors() as exc:
            lost += 1
            if not _reconnect(connection, exc, deadline):
                break
    _delete_quietly(connection, queue_name)
    return writer.written


RECORD_QUEUE_EXPIRES = 600  # seconds a recording's queue waits for it to reconnect
RECONNECT_CAP = 30.0  # longest wait between reconnection attempts, in seconds


def _record_once(connection: Any, queue_name: str, bindings: Sequence[Tuple[str, str]], writer: "_Writer",
                 deadline: Optional[float], ready: Optional[Callable[[], None]]) -> None:
    import kombu

    channel = connection.channel()
    queue = kombu.Queue(queue_name, durable=False, auto_delete=False, channel=channel,
                        queue_arguments={"x-expires": RECORD_QUEUE_EXPIRES * 1000})
    queue.declare()
    for exchange, pattern in bindings:
        channel.exchange_declare(exchange, type="topic", passive=True)
        queue.bind_to(exchange=exchange, routing_key=pattern)
    # Raw messages: the body check is the listener's own (`decode_body`), not kombu's decoder.
    with kombu.Consumer(channel, [queue], on_message=writer.on_message):
        if ready:
            ready()
        drain_until(connection, writer.full, deadline)


def _reconnect(connection: Any, exc: BaseException, deadline: Optional[float]) -> bool:
    """Reconnect after `exc`, waiting longer between attempts; False when the
    recording's time ran out first."""
    from tcpulse._broker.connection import lost_connection_errors

    print(f"lost the connection to the broker ({type(exc).__name__}: {exc}); reconnecting; the "
          "recording goes on", file=sys.stderr, flush=True)
    connection.collect()  # the broken transport: a fresh one is made below
    attempt = 0
    while deadline is None or time.monotonic() < deadline:
        attempt += 1
        time.sleep(min(RECONNECT_CAP, 0.5 * 2 ** (attempt - 1)))
        try:  # the socket's own error (kombu would wrap a refusal as OperationalError)
            connection.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        except lost_connection_errors() as again:
            print(f"cannot reach the broker yet ({again}); trying again", file=sys.stderr, flush=True)
            connection.collect()
            connection.maybe_switch_next()  # the next node, when the broker URL names several
            continue
        print("reconnected; recording again", file=sys.stderr, flush=True)
        return True
    return False


def _delete_quietly(connection: Any, queue_name: str) -> None:
    """Delete the recording's queue; when that fails (the connection is gone) `x-expires` will."""
    try:
        connection.channel().queue_delete(queue_name)
    except Exception:  # noqa: BLE001 - best effort: the broker expires the queue anyway
        pass


class _Writer:
    """Writes each consumed message as a line, up to `count`, acking every one."""

    def __init__(self, out: IO[str], count: Optional[int], progress: Optional[Callable[[int], None]]):
        self.out, self.count, self.progress, self.written = out, count, progress, 0

    def full(self) -> bool:
        return self.count is not None and self.written >= self.count

    def on_message(self, message: Any) -> None:
        try:
            body = decode_body(message.body)
        except Poison as exc:
            # A recording holds JSON objects only; say what was left out rather than stall on it.
            info = message.delivery_info
            print(f"skipped a message from {info.get('exchange')} {info.get('routing_key')!r}: {exc}",
                  file=sys.stderr)
        else:
            if not self.full():
                self.written += write(self.out, [Recorded.from_delivery(body, message.delivery_info, message.headers)])
                if self.progress:
                    self.progress(self.written)
        message.ack()


def drain_until(connection: Any, done: Callable[[], bool], deadline: Optional[float]) -> None:
    """Handle `connection`'s events until `done()` or the `deadline` (time.monotonic(); None: no end)."""
    import socket

    while not done():
        remaining = 1.0 if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            connection.drain_events(timeout=min(remaining, 1.0))
        except socket.timeout:
            pass
