"""The `tcpulse` commands for watching listeners at work: `tail` and `status`.

Owns: their arguments (each with an example in `--help`) and exit codes: `tail` ends with 0
after `--count` messages, after `--timeout`, and on Ctrl-C or SIGTERM; `status` of a listener
that never ran is a runtime failure (1).

Imports kombu only through `base.connect`; never imports requests. Like `record`, both refuse
the embedded broker (it lives inside one process).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="tcpulse")
    >>> add_commands(parser.add_subparsers())
    >>> parser.parse_args(["tail", "QueueEvents.taskFailed", "taskGroupId=g", "--count", "3"]).count
    3
"""
import argparse
import json
import signal
import sys
from typing import Any

from tcpulse.cli.base import (EXIT_OK, RuntimeFailure, broker_option, command_parser, connect, guarded, on_broker,
                   parse_fields, positive_int)
from tcpulse.cli.brokers import outside_broker


def add_commands(subparsers: Any) -> None:
    """Add tail and status to `subparsers` (from `add_subparsers`)."""
    p = command_parser(subparsers, "tail", "Print the messages arriving on an exchange, one line each, until "
                       "--count, --timeout or Ctrl-C (a queue of its own, gone when it ends).",
                       "tcpulse tail QueueEvents.taskCompleted taskGroupId=fQ3 --route 'index.project.#' --count 10")
    p.add_argument("exchange", help="'Service.name' such as QueueEvents.taskCompleted, or a full exchange name")
    p.add_argument("fields", nargs="*", metavar="field=value", help="narrow the primary key to these fields")
    p.add_argument("--route", action="append", default=[], metavar="PATTERN",
                   help="also take messages CC'd to this route pattern (without 'route.'; repeatable)")
    p.add_argument("--count", type=positive_int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print recording lines (for `listen --replay`)")
    broker_option(p)
    p.set_defaults(func=guarded(cmd_tail))

    p = command_parser(subparsers, "status", "Show listener NAME's queue, holding queues, dead letters and "
                       "recorded bindings.", "tcpulse status task-watcher --json")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    broker_option(p)
    p.set_defaults(func=guarded(cmd_status))


def cmd_tail(args: argparse.Namespace) -> int:
    """`tcpulse tail`: see the module docstring and `tcpulse._ops.tailing`."""
    from tcpulse._ops.tailing import tail, tail_bindings

    bindings = tail_bindings(args.exchange, parse_fields(args.fields), args.route)
    conn, address = connect(outside_broker(args.broker, "tail"))

    def ready(queue: str) -> None:
        what = "; ".join(f"{exchange} {pattern}" for exchange, pattern in bindings)
        print(f"tailing {what} on {address.redacted} through {queue} (Ctrl-C to stop)", file=sys.stderr, flush=True)

    # SIGTERM ends a tail as Ctrl-C does: the queue goes, the exit code is 0.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with conn:
            printed = on_broker(address, lambda: tail(conn, address.user, bindings, sys.stdout, as_json=args.json,
                                                      count=args.count, timeout=args.timeout, ready=ready))
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"tail ended after {printed} message{'' if printed == 1 else 's'}", file=sys.stderr)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`tcpulse status NAME`: see `tcpulse._ops.status`."""
    from tcpulse._ops.status import listener_status, render

    conn, address = connect(outside_broker(args.broker, "status"))
    with conn:
        try:
            status = on_broker(address, lambda: listener_status(conn, address.user, args.name))
        except LookupError as exc:
            raise RuntimeFailure(str(exc.args[0])) from None
    print(json.dumps(status, sort_keys=True) if args.json else render(status))
    return EXIT_OK
