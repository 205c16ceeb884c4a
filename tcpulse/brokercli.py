"""The `tcpulse` subcommands that talk to a broker: publish, replay, record and dead-letters.

Owns: connecting the way the listener does (`connect`: one try, an unreachable broker is a
one-line `RuntimeFailure` within seconds, the password never shown), turning broker refusals
into one line, and progress lines for long record/replay runs. `tcpulse.commands` defines their
arguments and adds them to the parser.

Imports kombu only inside `connect` and the commands; never imports requests.

Example:
    >>> import argparse
    >>> cmd_replay(argparse.Namespace(file="examples/messages/index-routes.jsonl", broker="memory://"))
    replayed 4 messages from examples/messages/index-routes.jsonl to memory://
    0
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .commands import EXIT_OK, RuntimeFailure, UsageError, parse_fields, script_bindings

PROGRESS_EVERY = 100


def connect(broker: Optional[str]) -> Tuple[Any, Any]:
    """A connected kombu Connection for `broker` (resolved as the listener does), and the
    broker's address (its `redacted` form is safe to print); an unreachable broker is a
    `RuntimeFailure` within seconds.

    Example:
        >>> conn, address = connect("memory://")
        >>> address.redacted, conn.connected
        ('memory://', True)
        >>> conn.release()
    """
    from .connection import resolve_broker

    try:
        address = resolve_broker(broker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    options = {} if address.is_memory else {"connect_timeout": 5,
                                             "transport_options": {"confirm_publish": True}}
    conn = address.connection(**options)
    try:
        conn.ensure_connection(max_retries=0)  # one try: a CLI user wants the error now
    except Exception as exc:  # kombu/amqp raise many kinds here; all mean "cannot connect"
        raise RuntimeFailure(f"cannot connect to the broker at {address.redacted}: {_reason(exc)}") from None
    return conn, address


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def broker_errors() -> Tuple[type, ...]:
    """The exceptions a broker operation may raise (kombu and py-amqp load only when asked).

    Example:
        >>> OSError in broker_errors()
        True
    """
    import amqp.exceptions
    import kombu.exceptions

    return (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError)


def cmd_publish(args: argparse.Namespace) -> int:
    """`tcpulse publish`: one message, its routes in the CC header.

    Example:
        >>> cmd_publish(argparse.Namespace(exchange="QueueEvents.taskFailed", routing_key="primary.t",
        ...                                route=["index.a"], body="{}", body_file=None, broker="memory://"))
        published 1 message to exchange/taskcluster-queue/v1/task-failed with key primary.t and routes index.a
        0
    """
    from .exchanges import exchange_name_of
    from .recording import Recorded, replay_into

    exchange = exchange_name_of(args.exchange)
    body = _load_body(args)
    routes = [r[len("route."):] if r.startswith("route.") else r for r in args.route]
    message = Recorded(exchange, args.routing_key, tuple(routes), body)
    conn, address = connect(args.broker)
    with conn:
        _on_broker(address, lambda: replay_into(conn, [message]))
    print(f"published 1 message to {exchange} with key {args.routing_key}"
          + (f" and routes {', '.join(routes)}" if routes else ""))
    return EXIT_OK


def _load_body(args: argparse.Namespace) -> Dict[str, Any]:
    source, text = "--body", args.body
    if args.body_file:
        source, text = f"--body-file {args.body_file}", _read_text(args.body_file)
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise UsageError(f"{source}: the body must be a JSON object (got {type(body).__name__})")
    return body


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read ({exc})") from None


def _on_broker(address: Any, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except broker_errors() as exc:
        raise RuntimeFailure(f"the broker at {address.redacted} refused: {_reason(exc)}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    """`tcpulse replay`: every message of a recording, in order (see the module example)."""
    from .recording import read, replay_into

    messages = read(args.file)
    conn, address = connect(args.broker)
    with conn:
        _on_broker(address, lambda: replay_into(conn, messages, progress=_progress("replayed")))
    print(f"replayed {len(messages)} messages from {args.file} to {address.redacted}")
    return EXIT_OK


def _progress(verb: str) -> Callable[[int], None]:
    def report(count: int) -> None:
        if count % PROGRESS_EVERY == 0:
            print(f"{verb} {count} messages...", file=sys.stderr, flush=True)
    return report


def cmd_record(args: argparse.Namespace) -> int:
    """`tcpulse record`: consume the bindings into a JSON Lines file until --count or --timeout.

    Example:
        >>> cmd_record(argparse.Namespace(exchange="QueueEvents.taskFailed", fields=[], script=None,
        ...                               out="/dev/null", count=None, timeout=0.1, broker="memory://"))
        recorded 0 messages into /dev/null
        0
    """
    import uuid

    from .recording import record_from

    bindings = _record_bindings(args)
    conn, address = connect(args.broker)
    queue = f"queue/{address.user}/tcpulse-record-{uuid.uuid4().hex[:8]}"
    with conn, _open_out(args.out) as out:
        def ready() -> None:
            print(f"recording {len(bindings)} binding(s) from {address.redacted} into {args.out}"
                  " (Ctrl-C to stop)", file=sys.stderr, flush=True)
        progress = _Counting(_progress("recorded"))
        try:
            _on_broker(address, lambda: record_from(conn, queue, bindings, out, count=args.count,
                                                     timeout=args.timeout, progress=progress, ready=ready))
        except KeyboardInterrupt:
            pass  # Ctrl-C is how an open-ended recording ends
    print(f"recorded {progress.count} messages into {args.out}")
    return EXIT_OK


class _Counting:
    """A progress callback that also remembers the last count (for the summary after Ctrl-C)."""

    def __init__(self, report: Callable[[int], None]):
        self.report, self.count = report, 0

    def __call__(self, count: int) -> None:
        self.count = count
        self.report(count)


def _open_out(path: str) -> Any:
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot be written ({exc.strerror})") from None


def cmd_dead_letters(args: argparse.Namespace) -> int:
    """`tcpulse dead-letters NAME`: list or requeue them (the work is `tcpulse.delivery`'s).

    Example:
        >>> cmd_dead_letters(argparse.Namespace(name="nobody", broker="memory://", requeue=False, limit=None))
        1
    """
    from .delivery import dead_letters_cli

    return dead_letters_cli(args.name, broker=args.broker, requeue=args.requeue, limit=args.limit)


def _record_bindings(args: argparse.Namespace) -> List[Tuple[str, str]]:
    from .exchanges import find_exchange

    if args.script and (args.exchange or args.fields):
        raise UsageError("give either EXCHANGE [field=value ...] or --script SCRIPT, not both")
    if args.script:
        return script_bindings(args.script)
    if not args.exchange:
        raise UsageError("give EXCHANGE [field=value ...] (such as QueueEvents.taskCompleted) or --script SCRIPT")
    if args.exchange.startswith("exchange/") and not args.fields:
        return [(args.exchange, "#")]
    binding = find_exchange(args.exchange)(**parse_fields(args.fields))
    return [(binding.exchange, binding.routing_key_pattern)]
