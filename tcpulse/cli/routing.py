"""The `tcpulse` commands that need no broker: exchanges, routing-key and bindings.

Owns: their arguments (each with an example in `--help`) and their output.

Imports neither kombu nor requests.

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
from typing import Any

from tcpulse.cli.base import EXIT_OK, UsageError, command_parser, guarded, parse_fields, script_bindings


def add_commands(subparsers: Any) -> None:
    """Add exchanges, routing-key and bindings to `subparsers` (from `add_subparsers`).

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> add_commands(parser.add_subparsers())
        >>> parser.parse_args(["bindings", "handlers.py"]).script
        'handlers.py'
    """
    p = command_parser(subparsers, "exchanges", "List the Taskcluster exchanges and their routing-key fields.",
                       "tcpulse exchanges QueueEvents")
    p.add_argument("service", nargs="?", help="only this exchange class, e.g. QueueEvents")
    p.set_defaults(func=guarded(cmd_exchanges))

    p = command_parser(subparsers, "routing-key", "Print the binding pattern for EXCHANGE and fields "
                       "(a concrete key when every required field is given).",
                       "tcpulse routing-key QueueEvents.taskCompleted taskGroupId=fQ3Zb2yYQ5yD6oZ6Q0Fq1A")
    p.add_argument("exchange", help="'Service.name' such as QueueEvents.taskCompleted, or a full exchange name")
    p.add_argument("fields", nargs="*", metavar="field=value")
    p.add_argument("--publish", action="store_true",
                   help="print the concrete key a publisher sends (every required field must be given)")
    p.set_defaults(func=guarded(cmd_routing_key))

    p = command_parser(subparsers, "bindings", "Print the (exchange, pattern) pairs SCRIPT's handlers bind, "
                       "without connecting.", "tcpulse bindings examples/task_group_watcher.py")
    p.add_argument("script")
    p.set_defaults(func=guarded(cmd_bindings))


def cmd_exchanges(args: argparse.Namespace) -> int:
    """`tcpulse exchanges [SERVICE]`: each exchange, its full name and its key layout."""
    from tcpulse._api.exchanges import exchanges
    from tcpulse._api.hints import did_you_mean

    found = [ex for ex in exchanges() if args.service in (None, ex.service)]
    if not found:
        services = sorted({ex.service for ex in exchanges()})
        raise UsageError(f"{args.service!r} is not an exchange class.{did_you_mean(args.service, services)} "
                         f"Exchange classes: {', '.join(services)}")
    for ex in found:
        words = [f.constant or ("<" + f.name + (".#>" if f.multiple_words else ">")) for f in ex.fields]
        print(f"{ex.service}.{ex.name}  {ex.exchange}\n    {'.'.join(words)}")
    return EXIT_OK


def cmd_routing_key(args: argparse.Namespace) -> int:
    """`tcpulse routing-key EXCHANGE [field=value ...] [--publish]` (see the module example)."""
    from tcpulse._api.exchanges import find_exchange

    exchange = find_exchange(args.exchange)
    fields = parse_fields(args.fields)
    required = {f.name for f in exchange.fields if f.required and f.constant is None}
    if args.publish or (required and required <= set(fields)):
        print(exchange.routing_key(**fields))
    else:
        print(exchange(**fields).routing_key_pattern)
    return EXIT_OK


def cmd_bindings(args: argparse.Namespace) -> int:
    """`tcpulse bindings SCRIPT`: one `exchange  pattern` line per binding."""
    for exchange, pattern in script_bindings(args.script):
        print(f"{exchange}  {pattern}")
    return EXIT_OK
