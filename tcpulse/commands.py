"""The `tcpulse` subcommands other than `listen`: exchanges, routing-key, bindings, publish,
record, replay and dead-letters (the last four do their work in `tcpulse.brokercli`).

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
import os
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

from .errors import TaskclusterFailure, TaskclusterTopicExchangeFailure
from .recording import RecordingError
from .scripts import ScriptError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


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
    from .brokercli import cmd_publish

    p.set_defaults(func=guarded(cmd_publish))


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
    from .brokercli import cmd_record

    p.set_defaults(func=guarded(cmd_record))


def _add_replay(subparsers: Any) -> None:
    p = _parser(subparsers, "replay", "Publish every message of a JSON Lines recording to a broker "
                "(to replay into a listener on the embedded broker, use `listen --replay`).",
                "tcpulse replay examples/messages/task-group.jsonl --broker amqp://guest:guest@localhost:5672//")
    p.add_argument("file")
    _broker_option(p)
    from .brokercli import cmd_replay

    p.set_defaults(func=guarded(cmd_replay))


def _add_dead_letters(subparsers: Any) -> None:
    p = _parser(subparsers, "dead-letters", "List (as JSON lines) or requeue the dead letters of listener NAME.",
                "tcpulse dead-letters task-watcher --requeue")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="print them, leaving them in place (default)")
    action.add_argument("--requeue", action="store_true", help="send them back to the listener's queue")
    p.add_argument("--limit", type=int, help="at most this many")
    _broker_option(p)
    from .brokercli import cmd_dead_letters

    p.set_defaults(func=guarded(cmd_dead_letters))


def _broker_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", help="amqp://..., amqps://... or memory:// (default: PULSE_URL, "
                        "PULSE_USERNAME/PULSE_PASSWORD, else amqp://guest:guest@localhost:5672//)")


# -- commands without a broker -----------------------------------------------------------------
def _cmd_exchanges(args: argparse.Namespace) -> int:
    from .exchanges import _did_you_mean, exchanges

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
    for exchange, pattern in script_bindings(args.script):
        print(f"{exchange}  {pattern}")
    return EXIT_OK


def script_bindings(path: str) -> List[Tuple[str, str]]:
    """The unique (exchange, pattern) pairs of the listener a handler script defines.

    Example:
        >>> script_bindings("examples/index_route_listener.py")
        [('exchange/taskcluster-queue/v1/task-completed', 'route.index.project.example.#')]
    """
    from .scripts import load_listener

    listener = load_listener(path)
    return [(b.exchange, b.routing_key_pattern) for b in listener.bindings()]
