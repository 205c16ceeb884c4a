"""The `tcpulse` subcommands other than `listen`: exchanges, routing-key, bindings, publish,
record, replay and dead-letters (whose work `tcpulse.delivery` does).

Owns: their argparse definitions (each with an example in `--help`), their output, and turning
every expected failure into one line on stderr with exit code 2 (usage: unknown exchange or
field, missing or malformed file) or 1 (runtime: broker unreachable or refusing). `tcpulse.cli`
adds them to its parser with `add_commands(subparsers)`; each sets `func`, which returns the
exit code.

Imports kombu only when a command talks to a broker; never imports requests.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="tcpulse")
    >>> add_commands(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["routing-key", "QueueEvents.taskCompleted", "taskGroupId=g"])
    >>> args.func(args)
    primary.*.*.*.*.*.*.*.g.#
    0
"""
import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import TaskclusterFailure, TaskclusterTopicExchangeFailure
from .recording import RecordingError
from .scripts import ScriptError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
PROGRESS_EVERY = 100


class UsageError(TaskclusterFailure):
    """Bad command-line input: exit code 2.

    Example:
        >>> guarded(lambda args: (_ for _ in ()).throw(UsageError("bad")))(None)
        2
    """


class RuntimeFailure(TaskclusterFailure):
    """The command could not do its work (e.g. the broker is unreachable): exit code 1.

    Example:
        >>> guarded(lambda args: (_ for _ in ()).throw(RuntimeFailure("down")))(None)
        1
    """


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command, turning expected failures into one stderr line and an exit code.

    Example:
        >>> guarded(lambda args: int("x"))(None)
        Traceback (most recent call last):
        ...
        ValueError: invalid literal for int() with base 10: 'x'
    """
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (UsageError, RecordingError, ScriptError, TaskclusterTopicExchangeFailure) as exc:
            return _fail(str(exc), EXIT_USAGE)
        except RuntimeFailure as exc:
            return _fail(str(exc), EXIT_FAILURE)
        except KeyboardInterrupt:
            return _fail("interrupted", EXIT_FAILURE)
        except BrokenPipeError:  # `tcpulse exchanges | head`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
    return run


def _fail(message: str, code: int) -> int:
    print(f"tcpulse: error: {message}", file=sys.stderr)
    return code


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options follow `field=value` words: `routing-key X taskId=a --publish`."""

    _inside = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inside:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def _parser(subparsers: Any, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=help_text, description=help_text,
                                   epilog=f"example:\n  {example}\n",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.__class__ = _IntermixedParser
    return parser


def add_commands(subparsers: Any) -> None:
    """Add every subcommand this module owns to `subparsers` (from `add_subparsers`).

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> add_commands(parser.add_subparsers())
        >>> parser.parse_args(["replay", "m.jsonl"]).file
        'm.jsonl'
    """
    for add in (_add_exchanges, _add_routing_key, _add_bindings, _add_publish, _add_record,
                _add_replay, _add_dead_letters):
        add(subparsers)


def _add_exchanges(subparsers: Any) -> None:
    p = _parser(subparsers, "exchanges", "List the Taskcluster exchanges and their routing-key fields.",
                "tcpulse exchanges QueueEvents")
    p.add_argument("service", nargs="?", help="only this exchange class, e.g. QueueEvents")
    p.set_defaults(func=guarded(_cmd_exchanges))


def _add_routing_key(subparsers: Any) -> None:
    p = _parser(subparsers, "routing-key", "Print the binding pattern for EXCHANGE and fields "
                "(a concrete key when every required field is given).",
                "tcpulse routing-key QueueEvents.taskCompleted taskGroupId=fQ3Zb2yYQ5yD6oZ6Q0Fq1A")
    p.add_argument("exchange", help="'Service.name' such as QueueEvents.taskCompleted, or a full exchange name")
    p.add_argument("fields", nargs="*", metavar="field=value")
    p.add_argument("--publish", action="store_true",
                   help="print the concrete key a publisher sends (every required field must be given)")
    p.set_defaults(func=guarded(_cmd_routing_key))


def _add_bindings(subparsers: Any) -> None:
    p = _parser(subparsers, "bindings", "Print the (exchange, pattern) pairs SCRIPT's handlers bind, "
                "without connecting.", "tcpulse bindings examples/task_group_watcher.py")
    p.add_argument("script")
    p.set_defaults(func=guarded(_cmd_bindings))


def _add_publish(subparsers: Any) -> None:
    p = _parser(subparsers, "publish", "Publish one message (for local testing).",
                "tcpulse publish QueueEvents.taskCompleted --routing-key primary.t1.0.wg.w1.p.wt.s.g1._ "
                "--route index.project.a --body '{\"status\": {}}'")
    p.add_argument("exchange", help="'Service.name' such as QueueEvents.taskCompleted, or a full exchange name")
    p.add_argument("--routing-key", required=True)
    p.add_argument("--route", action="append", default=[], help="a CC'd route without 'route.' (repeatable)")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", default="{}", help="the JSON object to send (default {})")
    body.add_argument("--body-file", help="read the JSON object from this file")
    _broker_option(p)
    p.set_defaults(func=guarded(_cmd_publish))


def _add_record(subparsers: Any) -> None:
    p = _parser(subparsers, "record", "Record messages from a broker into a JSON Lines file.",
                "tcpulse record QueueEvents.taskCompleted taskGroupId=g --out done.jsonl --count 10")
    p.add_argument("exchange", nargs="?", help="'Service.name' or a full exchange name (or use --script)")
    p.add_argument("fields", nargs="*", metavar="field=value")
    p.add_argument("--script", help="record every binding of this handler script instead")
    p.add_argument("--out", required=True, help="the .jsonl file to write")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, help="stop after this many seconds in all")
    _broker_option(p)
    p.set_defaults(func=guarded(_cmd_record))


def _add_replay(subparsers: Any) -> None:
    p = _parser(subparsers, "replay", "Publish every message of a JSON Lines recording to a broker "
                "(to replay into a listener on the embedded broker, use `listen --replay`).",
                "tcpulse replay examples/messages/task-group.jsonl --broker amqp://guest:guest@localhost:5672//")
    p.add_argument("file")
    _broker_option(p)
    p.set_defaults(func=guarded(_cmd_replay))


def _add_dead_letters(subparsers: Any) -> None:
    p = _parser(subparsers, "dead-letters", "List (as JSON lines) or requeue the dead letters of listener NAME.",
                "tcpulse dead-letters task-watcher --requeue")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="print them, leaving them in place (default)")
    action.add_argument("--requeue", action="store_true", help="send them back to the listener's queue")
    p.add_argument("--limit", type=int, help="at most this many")
    _broker_option(p)
    p.set_defaults(func=guarded(_cmd_dead_letters))


def _broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="amqp://..., amqps://... or memory:// (default: PULSE_URL, "
                        "PULSE_USERNAME/PULSE_PASSWORD, else amqp://guest:guest@localhost:5672//)")


# -- commands without a broker -----------------------------------------------------------------
def _cmd_exchanges(args: argparse.Namespace) -> int:
    from .exchanges import exchanges

    found = [ex for ex in exchanges() if args.service in (None, ex.service)]
    if not found:
        services = sorted({ex.service for ex in exchanges()})
        raise UsageError(f"{args.service!r} is not an exchange class.{_did_you_mean(args.service, services)} "
                         f"Exchange classes: {', '.join(services)}")
    for ex in found:
        words = [f.constant or ("<" + f.name + (".#>" if f.multiple_words else ">")) for f in ex.fields]
        print(f"{ex.service}.{ex.name}  {ex.exchange}\n    {'.'.join(words)}")
    return EXIT_OK


def _cmd_routing_key(args: argparse.Namespace) -> int:
    from .exchanges import find_exchange

    exchange = find_exchange(args.exchange)
    fields = parse_fields(args.fields)
    required = {f.name for f in exchange.fields if f.required and f.constant is None}
    if args.publish or (required and required <= set(fields)):
        print(exchange.routing_key(**fields))
    else:
        print(exchange(**fields).routing_key_pattern)
    return EXIT_OK


def parse_fields(items: Sequence[str]) -> Dict[str, str]:
    """`['a=1', 'b=x']` -> `{'a': '1', 'b': 'x'}`; anything without '=' is a usage error.

    Example:
        >>> parse_fields(["taskGroupId=g"])
        {'taskGroupId': 'g'}
    """
    fields = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"expected field=value, such as taskGroupId=abc (got {item!r})")
        fields[name] = value
    return fields


def _cmd_bindings(args: argparse.Namespace) -> int:
    for exchange, pattern in _script_bindings(args.script):
        print(f"{exchange}  {pattern}")
    return EXIT_OK


def _script_bindings(path: str) -> List[Tuple[str, str]]:
    """The unique (exchange, pattern) pairs of the listener a handler script defines."""
    from .scripts import load_listener

    listener = load_listener(path)
    return [(b.exchange, b.routing_key_pattern) for b in listener.bindings()]


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


# -- commands that talk to a broker ------------------------------------------------------------
def connect(broker: Optional[str]) -> Tuple[Any, str]:
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


def _cmd_publish(args: argparse.Namespace) -> int:
    from .recording import Recorded, replay_into

    exchange = _exchange_name(args.exchange)
    body = _load_body(args)
    routes = [r[len("route."):] if r.startswith("route.") else r for r in args.route]
    message = Recorded(exchange, args.routing_key, tuple(routes), body)
    conn, address = connect(args.broker)
    with conn:
        _on_broker(address, lambda: replay_into(conn, [message]))
    print(f"published 1 message to {exchange} with key {args.routing_key}"
          + (f" and routes {', '.join(routes)}" if routes else ""))
    return EXIT_OK


def _exchange_name(text: str) -> str:
    """A full exchange name from 'Service.name' or a full name ('exchange/...' names that
    tcpulse has no reference for, such as a user's own exchange, pass through)."""
    from .exchanges import find_exchange

    if text.startswith("exchange/"):
        return text
    return find_exchange(text).exchange


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


def _cmd_replay(args: argparse.Namespace) -> int:
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


def _cmd_record(args: argparse.Namespace) -> int:
    import uuid

    from .recording import record_from

    bindings = _record_bindings(args)
    conn, address = connect(args.broker)
    queue = f"queue/{address.user}/tcpulse-record-{uuid.uuid4().hex[:8]}"
    with conn, open(args.out, "w", encoding="utf-8") as out:
        def ready() -> None:
            print(f"recording {len(bindings)} binding(s) from {address.redacted} into {args.out}"
                  " (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            count = _on_broker(address, lambda: record_from(
                conn, queue, bindings, out, count=args.count, timeout=args.timeout,
                progress=_progress("recorded"), ready=ready))
        except KeyboardInterrupt:
            count = sum(1 for _ in open(args.out, encoding="utf-8"))
    print(f"recorded {count} messages into {args.out}")
    return EXIT_OK


def _cmd_dead_letters(args: argparse.Namespace) -> int:
    from .delivery import dead_letters_cli

    return dead_letters_cli(args.name, broker=args.broker, requeue=args.requeue, limit=args.limit)


def _record_bindings(args: argparse.Namespace) -> List[Tuple[str, str]]:
    from .exchanges import find_exchange

    if args.script and (args.exchange or args.fields):
        raise UsageError("give either EXCHANGE [field=value ...] or --script SCRIPT, not both")
    if args.script:
        return _script_bindings(args.script)
    if not args.exchange:
        raise UsageError("give EXCHANGE [field=value ...] (such as QueueEvents.taskCompleted) or --script SCRIPT")
    if args.exchange.startswith("exchange/") and not args.fields:
        return [(args.exchange, "#")]
    binding = find_exchange(args.exchange)(**parse_fields(args.fields))
    return [(binding.exchange, binding.routing_key_pattern)]
