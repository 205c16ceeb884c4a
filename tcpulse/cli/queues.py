"""`tcpulse delete NAME` and `tcpulse migrate NAME --to quorum|classic`: maintenance of a
listener's queues while no listener runs on them (the library side is `tcpulse._ops.maintenance`).

Owns: their options and output (one line per thing removed or moved, on stdout). The embedded
broker lives inside one process, so `memory://` is refused (`brokers.outside_broker`). Imports kombu only when a
command runs.

Example:
    >>> parser = argparse.ArgumentParser(prog="tcpulse")
    >>> add_commands(parser.add_subparsers())
    >>> parser.parse_args(["migrate", "w", "--to", "quorum", "--retry-delays", "5,30"]).retry_delays
    (5.0, 30.0)
"""
import argparse
from typing import Any

from tcpulse._listen.outcome import DEFAULT_RETRY_DELAYS
from tcpulse.cli.base import (EXIT_OK, RuntimeFailure, UsageError, broker_option, command_parser, connect, guarded, on_broker,
                   parse_delays, positive_int)
from tcpulse.cli.brokers import outside_broker


def add_commands(subparsers: Any) -> None:
    """Add `delete` and `migrate` to `subparsers`."""
    p = command_parser(subparsers, "delete", "Delete a listener's queues and delivery exchange.",
                       "tcpulse delete task-watcher --include-dead-letters",
                       "Delete what listener NAME declared: its queue, retry holding queues, binding record "
                       "and delivery exchange (its dead-letter queue too with --include-dead-letters), "
                       "printing each. Stop every listener on the queue first.")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    p.add_argument("--include-dead-letters", action="store_true", help="also delete the dead-letter queue")
    _retry_delays_option(p)
    broker_option(p)
    p.set_defaults(func=guarded(cmd_delete))

    p = command_parser(subparsers, "migrate", "Move a listener's queues to the other queue type.",
                       "tcpulse migrate task-watcher --to quorum",
                       "Move listener NAME's queue, holding and dead-letter queues to quorum (or back to "
                       "classic) without losing a message; what is published meanwhile waits in "
                       "queue/<user>/NAME/migrating. Stop every listener on the queue first; if the "
                       "migration is interrupted, run it again. Give the options the listener uses.")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    p.add_argument("--to", required=True, choices=("quorum", "classic"))
    p.add_argument("--max-length", type=positive_int, metavar="N", help="the listener's max_length")
    p.add_argument("--delivery-limit", type=positive_int, metavar="N",
                   help="the listener's delivery_limit (quorum; default 20)")
    _retry_delays_option(p)
    broker_option(p)
    p.set_defaults(func=guarded(cmd_migrate))


def _retry_delays_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retry-delays", type=parse_delays, default=DEFAULT_RETRY_DELAYS, metavar="S,S,...",
                        help="the listener's retry_delays, which name its holding queues (default 5,30,120,600)")


def cmd_delete(args: argparse.Namespace) -> int:
    from tcpulse._ops.maintenance import delete_listener

    _run(args, lambda conn, address: delete_listener(conn, address, args.name, args.include_dead_letters,
                                                     args.retry_delays))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from tcpulse._ops.maintenance import migrate

    _run(args, lambda conn, address: migrate(conn, address, args.name, args.to, max_length=args.max_length,
                                             delivery_limit=args.delivery_limit, retry_delays=args.retry_delays))
    return EXIT_OK


def _run(args: argparse.Namespace, action: Any) -> None:
    from tcpulse.errors import BrokerFailure

    connection, address = connect(outside_broker(args.broker, args.command), confirm_each_publish=False)
    try:
        with connection:
            on_broker(address, lambda: action(connection, address))
    except BrokerFailure as exc:
        raise RuntimeFailure(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
