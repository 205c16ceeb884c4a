"""The `tcpulse references` commands: pull a deployment's references, list a set, diff two sets.

Owns: their arguments (each with an example in `--help`), their output and their exit codes:
a pull that cannot finish (deployment unreachable, no manifest, a malformed reference) is one
line naming the URL and the problem, exit 1; an unknown set is a usage error, exit 2.

Imports neither kombu nor requests (a pull fetches with the standard library).

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="tcpulse")
    >>> add_commands(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["references", "diff", "legacy-2018"]).second
    'bundled'
"""
import argparse
import functools
import os
from pathlib import Path
from typing import Any, Callable

from tcpulse.cli.base import EXIT_OK, RuntimeFailure, UsageError, command_parser, guarded


def add_commands(subparsers: Any) -> None:
    """Add `references pull|list|diff` to `subparsers` (from `add_subparsers`).

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> add_commands(parser.add_subparsers())
        >>> parser.parse_args(["references", "list", "--set", "legacy-2018"]).set
        'legacy-2018'
    """
    # A plain parser: the intermixed parsing of command_parser cannot hold subcommands.
    group = subparsers.add_parser("references", help="pull, list and compare Taskcluster reference sets",
                                  description="Pull, list and compare Taskcluster reference sets (bundled, "
                                  "legacy-2018, or a deployment's own).",
                                  epilog="example:\n  tcpulse references pull --root-url https://tc.example.com\n",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = group.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    p = command_parser(actions, "pull", "Fetch a deployment's references (and the schemas they name), check "
                       "them and write them to a folder in one step.",
                       "tcpulse references pull --root-url https://tc.example.com")
    p.add_argument("--root-url", default=os.environ.get("TASKCLUSTER_ROOT_URL"),
                   help="the deployment's rootUrl (default: TASKCLUSTER_ROOT_URL)")
    p.add_argument("--dir", type=Path, help="where to write the set (default: a folder per deployment under "
                   "$XDG_CACHE_HOME or ~/.cache, tcpulse/references/)")
    p.set_defaults(func=guarded(_pull_errors(cmd_pull)))

    p = command_parser(actions, "list", "Print a set's services, methods and exchanges, one a line.",
                       "tcpulse references list --set legacy-2018")
    p.add_argument("--set", help="bundled, legacy-2018 or a folder (default: TCPULSE_REFERENCES, else bundled)")
    p.set_defaults(func=guarded(cmd_list))

    p = command_parser(actions, "diff", "Print what one set has that the other lacks: services, methods, "
                       "exchanges and routing-key fields.", "tcpulse references diff ~/.cache/tcpulse/references/tc.example.com")
    p.add_argument("first", metavar="SET", help="bundled, legacy-2018 or a folder")
    p.add_argument("second", metavar="SET2", nargs="?", default="bundled", help="the other side (default: bundled)")
    p.set_defaults(func=guarded(cmd_diff))


def _pull_errors(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A pull that cannot finish is a runtime failure (exit 1); `guarded` handles the rest."""
    from tcpulse.references.pull import PullError

    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except PullError as exc:
            raise RuntimeFailure(str(exc)) from exc
    return run


def cmd_pull(args: argparse.Namespace) -> int:
    """`tcpulse references pull --root-url URL [--dir DIR]`: one summary line naming the folder."""
    from tcpulse.references.pull import pull

    if not args.root_url:
        raise UsageError("references pull needs --root-url URL (or TASKCLUSTER_ROOT_URL), the deployment's rootUrl")
    print(pull(args.root_url, args.dir).summary())
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """`tcpulse references list [--set S]`."""
    from tcpulse.references import active_set, open_set
    from tcpulse.references.compare import describe

    for line in describe(open_set(args.set) if args.set else active_set()):
        print(line)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    """`tcpulse references diff S [S2]`: one line per difference, or one line saying there is none."""
    from tcpulse.references import open_set
    from tcpulse.references.compare import differences

    first, second = open_set(args.first), open_set(args.second)
    lines = differences(first, second)
    print("\n".join(lines) if lines else f"no differences between {first.label} and {second.label}")
    return EXIT_OK
