"""The `tcpulse` command line: one module per group of commands.

- `listen`: run a handler script (`tcpulse listen SCRIPT ...`);
- `routing`: exchanges, routing-key and bindings, which need no broker;
- `brokers`: publish, record, replay and dead-letters, which talk to a broker;
- `operate`: tail and status, watching what arrives and what a listener holds;
- `queues`: delete and migrate, maintenance of a listener's queues;
- `references`: pull a deployment's references, list a reference set, diff two;
- `base`: what they share (exit codes, one-line errors, connecting).

Owns: the top-level parser and `main()` (the console script); exit codes and one-line errors
are `base`'s. Nothing in the library imports this package.

Example:
    >>> main(["routing-key", "QueueEvents.taskCompleted", "taskGroupId=g"])
    primary.*.*.*.*.*.*.*.g.#
    0
"""
import argparse
import sys
from typing import List, Optional

from tcpulse.cli import brokers, listen, operate, queues, references, routing

COMMAND_GROUPS = (listen, routing, brokers, operate, queues, references)


def build_parser() -> argparse.ArgumentParser:
    """The `tcpulse` parser with every subcommand.

    Example:
        >>> build_parser().parse_args(["exchanges", "QueueEvents"]).service
        'QueueEvents'
    """
    from tcpulse import __version__

    parser = argparse.ArgumentParser(prog="tcpulse", description="Listen to Taskcluster Pulse events and act on them.")
    parser.add_argument("--version", action="version", version=f"tcpulse {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for group in COMMAND_GROUPS:
        group.add_commands(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the `tcpulse` console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what `listen --processes` passes to its children
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
