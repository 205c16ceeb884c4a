"""The `tcpulse` command line: `tcpulse listen SCRIPT ...` plus the subcommands of
`tcpulse.commands` (exchanges, routing-key, bindings, publish, record, replay).

Owns: the top-level parser, `main()` (the console script), and the `listen` subcommand.
Exit codes: 0 ok, 1 runtime failure (e.g. broker unreachable), 2 usage error; an error is one
line on stderr, never a traceback.

Imports neither kombu nor requests itself (the listener loads kombu when it runs).

Example:
    >>> main(["routing-key", "QueueEvents.taskCompleted", "taskGroupId=g"])
    primary.*.*.*.*.*.*.*.g.#
    0
"""
import argparse
import logging
import sys
from typing import List, Optional

from .commands import EXIT_OK, RuntimeFailure, UsageError, _broker_option, add_commands, guarded
from .errors import BrokerFailure
from .runner import add_listen_options, run_listen

LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    """The `tcpulse` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="tcpulse", description="Listen to Taskcluster Pulse events and act on them.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_listen(subparsers)
    add_commands(subparsers)
    return parser


def _add_listen(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "listen", help="Run the handlers SCRIPT registers until SIGTERM/SIGINT.",
        description="Run the handlers SCRIPT registers (with @tcpulse.on, or on the Listener it "
                    "defines) until SIGTERM/SIGINT; the first signal finishes running handlers, "
                    "the second exits at once.",
        epilog="example:\n  tcpulse listen examples/task_group_watcher.py --queue watcher --concurrency 8\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", help="a Python file that registers handlers")
    _broker_option(p)
    p.add_argument("--queue", metavar="NAME", help="the listener's name: the queue is queue/<user>/NAME")
    p.add_argument("--concurrency", type=_positive_int, help="handler threads (default 1: in order)")
    p.add_argument("--prefetch", type=_positive_int, help="unacked messages the broker may send ahead")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    p.add_argument("--health-port", type=_port, metavar="P",
                   help="serve /live, /ready and /metrics (Prometheus) on 127.0.0.1:P")
    add_listen_options(p)
    p.set_defaults(func=guarded(cmd_listen))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 1 to 65535 (got {text!r})")
    return int(text)


def cmd_listen(args: argparse.Namespace) -> int:
    from .scripts import ScriptError, load_listener

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_json:
        from .health import JsonFormatter
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    try:
        listener = load_listener(args.script)
        listener.configure(name=args.queue, broker=args.broker, concurrency=args.concurrency,
                           prefetch=args.prefetch, health_port=args.health_port)
    except (ScriptError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    try:
        run_listen(listener, args)
    except (BrokerFailure, OSError) as exc:  # OSError: e.g. the health port is taken
        raise RuntimeFailure(str(exc)) from None
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the `tcpulse` console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
