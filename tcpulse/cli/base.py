"""What every `tcpulse` subcommand shares: exit codes, the two failure kinds, the guard that
turns them into one stderr line, the parser factory (each command's `--help` ends with an
example), the `--broker` option, `field=value` words, whole numbers and
retry delays as option values, and connecting to a broker.

Owns: the command line's conventions. Exit codes: 0 ok, 1 runtime failure (e.g. broker
unreachable), 2 usage error; an error is one line on stderr, never a traceback.

Imports kombu only inside `connect` and `on_broker`; never imports requests. Nothing in the
library imports `tcpulse.cli`.

Example:
    >>> parse_fields(["taskGroupId=g"])
    {'taskGroupId': 'g'}
"""
import argparse
import functools
import os
import sys
from typing import Any, Callable, Dict, List, Sequence, Tuple

from tcpulse.errors import InvalidReference, ReferenceSetError, TaskclusterFailure, TaskclusterTopicExchangeFailure
from tcpulse._ops.recording import RecordingError
from tcpulse._listen.scripts import ScriptError

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
        except (UsageError, RecordingError, ScriptError, TaskclusterTopicExchangeFailure, ReferenceSetError) as exc:
            return fail(str(exc), EXIT_USAGE)
        except (RuntimeFailure, InvalidReference) as exc:  # a selected reference set that is broken
            return fail(str(exc), EXIT_FAILURE)
        except KeyboardInterrupt:
            return fail("interrupted", EXIT_FAILURE)
        except BrokenPipeError:  # `tcpulse exchanges | head`: the reader left; not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
    return run


def fail(message: str, code: int) -> int:
    """Print one error line on stderr and return `code`.

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     fail("no such file", EXIT_USAGE)
        2
        >>> err.getvalue()
        'tcpulse: error: no such file\\n'
    """
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


def command_parser(subparsers: Any, name: str, help_text: str, example: str,
                   description: str = "") -> argparse.ArgumentParser:
    """A subcommand's parser whose `--help` ends with `example`.

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> command_parser(parser.add_subparsers(), "hello", "Say hello.", "tcpulse hello").prog
        'tcpulse hello'
    """
    parser = subparsers.add_parser(name, help=help_text, description=description or help_text,
                                   epilog=f"example:\n  {example}\n",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.__class__ = _IntermixedParser
    return parser


def broker_option(parser: argparse.ArgumentParser) -> None:
    """The `--broker URL` option of every command that talks to a broker."""
    parser.add_argument("--broker", help="amqp://..., amqps://... or memory:// (default: PULSE_URL, "
                        "PULSE_USERNAME/PULSE_PASSWORD, else amqp://guest:guest@localhost:5672//)")


def parse_fields(items: Sequence[str]) -> Dict[str, str]:
    """`['a=1', 'b=x']` -> `{'a': '1', 'b': 'x'}`; anything without '=' is a usage error.

    Example:
        >>> parse_fields(["taskGroupId=g", "runId=0"])
        {'taskGroupId': 'g', 'runId': '0'}
    """
    fields = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"expected field=value, such as taskGroupId=abc (got {item!r})")
        fields[name] = value
    return fields


def script_bindings(path: str) -> List[Tuple[str, str]]:
    """The unique (exchange, pattern) pairs of the listeners a handler script defines.

    Example:
        >>> script_bindings("examples/index_route_listener.py")
        [('exchange/taskcluster-queue/v1/task-completed', 'route.index.project.example.#')]
    """
    from tcpulse._listen.scripts import load_listeners

    pairs = [(b.exchange, b.routing_key_pattern) for listener in load_listeners(path) for b in listener.bindings()]
    return list(dict.fromkeys(pairs))


def connect(broker: Any, confirm_each_publish: bool = True) -> Tuple[Any, Any]:
    """A connected kombu Connection for `broker` (resolved as the listener does), and the
    broker's address (its `redacted` form is safe to print); an unreachable broker is a
    `RuntimeFailure` within seconds. `confirm_each_publish=False` for a caller that waits for
    publisher confirms itself, a batch at a time (`tcpulse migrate`).

    Example:
        >>> conn, address = connect("memory://")
        >>> address.redacted, conn.connected
        ('memory://', True)
        >>> conn.release()
    """
    address = broker_address(broker)
    options = {} if address.is_memory else {"connect_timeout": 5,
                                             "transport_options": {"confirm_publish": confirm_each_publish}}
    from tcpulse._broker.connection import connect_any

    try:  # one try per node: a CLI user wants the error now
        return connect_any(address, **options), address
    except Exception as exc:  # kombu/amqp raise many kinds here; all mean "cannot connect"
        raise RuntimeFailure(f"cannot connect to the broker at {address.redacted}: {reason(exc)}") from None


def broker_address(broker: Any) -> Any:
    """The broker `broker` names (resolved as the listener does); a bad URL is a `UsageError`.

    Example:
        >>> broker_address("memory://").is_memory
        True
    """
    from tcpulse._broker.connection import resolve_broker

    try:
        return resolve_broker(broker, source="--broker")
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def reason(exc: BaseException) -> str:
    """The first line of an exception's text (its type name when it has none).

    Example:
        >>> reason(OSError("refused\\nmore detail"))
        'refused'
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def on_broker(address: Any, action: Callable[[], Any]) -> Any:
    """Run `action`; a broker error becomes one `RuntimeFailure` naming the broker (redacted) and
    saying truthfully what happened: the connection was lost, or the broker refused.

    Example:
        >>> on_broker(None, lambda: 42)
        42
    """
    from tcpulse._broker.connection import broker_errors, lost_connection_errors

    try:
        return action()
    except lost_connection_errors() as exc:
        raise RuntimeFailure(f"lost the connection to the broker at {address.redacted}: {reason(exc)}") from None
    except broker_errors() as exc:
        raise RuntimeFailure(f"the broker at {address.redacted} refused: {reason(exc)}") from None


def positive_int(text: str, least: int = 1) -> int:
    """An option's whole number >= `least` (an argparse `type`).

    Example:
        >>> positive_int("8")
        8
    """
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {least} (got {text!r})")
    return value


def whole_number(text: str) -> int:
    """An option's whole number >= 0 (an argparse `type`).

    Example:
        >>> whole_number("0")
        0
    """
    return positive_int(text, least=0)


def parse_delays(text: str) -> Tuple[float, ...]:
    """`--retry-delays 5,30,120`: seconds, each a number >= 0.

    Example:
        >>> parse_delays("0.5, 10")
        (0.5, 10.0)
    """
    try:
        delays = tuple(float(part) for part in text.split(","))
    except ValueError:
        delays = ()
    if not delays or any(not 0 <= d < float("inf") for d in delays):
        raise argparse.ArgumentTypeError(f"expected seconds separated by commas, such as 5,30,120 (got {text!r})")
    return delays
