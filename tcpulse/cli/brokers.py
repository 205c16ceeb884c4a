"""The `tcpulse` commands that talk to a broker: publish, replay, record and dead-letters.

Owns: their arguments (each with an example in `--help`), turning broker refusals into one
line, and progress lines for long record/replay runs.

Imports kombu only inside the commands; never imports requests.

They refuse the embedded broker: it lives inside one process, so what they would publish there
(or read from it) vanishes when the command exits; `tcpulse listen --replay` is its counterpart.

Example:
    >>> import argparse
    >>> guarded(cmd_replay)(argparse.Namespace(file="examples/messages/index-routes.jsonl", broker="memory://"))
    2
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple

from tcpulse.cli.base import (EXIT_OK, RuntimeFailure, UsageError, broker_address, broker_option, command_parser, connect,
                   guarded, on_broker, parse_fields, script_bindings)

PROGRESS_EVERY = 100
IN_PROCESS_ONLY = ("the embedded broker lives inside one process, so what `tcpulse {command}` does there "
                   "vanishes when it exits; to try handlers on it, use `tcpulse listen SCRIPT --broker "
                   "memory:// --replay FILE`")


def add_commands(subparsers: Any) -> None:
    """Add publish, record, replay and dead-letters to `subparsers` (from `add_subparsers`).

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> add_commands(parser.add_subparsers())
        >>> parser.parse_args(["replay", "m.jsonl"]).file
        'm.jsonl'
    """
    for add in (_add_publish, _add_record, _add_replay, _add_dead_letters):
        add(subparsers)


def _add_publish(subparsers: Any) -> None:
    p = command_parser(subparsers, "publish", "Publish one message (for local testing), waiting for the broker's confirm.",
                       "tcpulse publish QueueEvents.taskCompleted --routing-key primary.t1.0.wg.w1.p.wt.s.g1._ "
                       "--route index.project.a --body '{\"status\": {}}'")
    p.add_argument("exchange", help="'Service.name' such as QueueEvents.taskCompleted, or a full exchange name")
    p.add_argument("fields", nargs="*", metavar="field=value",
                   help="build the routing key from these fields (instead of --routing-key)")
    p.add_argument("--routing-key", help="the concrete routing key; it must fit the exchange's layout")
    p.add_argument("--route", action="append", default=[], help="a CC'd route without 'route.' (repeatable)")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", default="{}", help="the JSON object to send (default {})")
    body.add_argument("--body-file", help="read the JSON object from this file")
    body.add_argument("--sample", action="store_true",
                      help="send a body the exchange's schema accepts, its key carrying the fields given "
                           "(the others filled in): tcpulse.testing.sample")
    broker_option(p)
    _declare_option(p)
    p.set_defaults(func=guarded(cmd_publish))


def _add_record(subparsers: Any) -> None:
    p = command_parser(subparsers, "record", "Record messages from a broker into a JSON Lines file.",
                       "tcpulse record QueueEvents.taskCompleted taskGroupId=g --out done.jsonl --count 10")
    p.add_argument("exchange", nargs="?", help="'Service.name' or a full exchange name (or use --script)")
    p.add_argument("fields", nargs="*", metavar="field=value")
    p.add_argument("--script", help="record every binding of this handler script instead")
    p.add_argument("--out", required=True, help="the .jsonl file to write")
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, help="stop after this many seconds in all")
    broker_option(p)
    p.set_defaults(func=guarded(cmd_record))


def _add_replay(subparsers: Any) -> None:
    p = command_parser(subparsers, "replay", "Publish every message of a JSON Lines recording to a broker "
                       "(to replay into a listener on the embedded broker, use `listen --replay`).",
                       "tcpulse replay examples/messages/task-group.jsonl --broker amqp://guest:guest@localhost:5672//")
    p.add_argument("file")
    _declare_option(p)
    broker_option(p)
    p.set_defaults(func=guarded(cmd_replay))


def _add_dead_letters(subparsers: Any) -> None:
    p = command_parser(subparsers, "dead-letters", "List (as JSON lines) or requeue the dead letters of "
                       "listener NAME.", "tcpulse dead-letters task-watcher --requeue")
    p.add_argument("name", help="the listener's name: its queue is queue/<user>/NAME")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="print them, leaving them in place (default)")
    action.add_argument("--requeue", action="store_true", help="send them back to the listener's queue")
    p.add_argument("--limit", type=int, help="at most this many")
    broker_option(p)
    p.set_defaults(func=guarded(cmd_dead_letters))


def _declare_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--declare-exchanges", action="store_true",
                   help="create the exchanges published to, for a local RabbitMQ without Taskcluster's services "
                        "(a Pulse user may create only its own, exchange/<user>/...)")


def check_exchanges(conn: Any, address: Any, names: Iterable[str], create: bool,
                    where: Callable[[str], str] = lambda name: "") -> None:
    """Check that the exchanges `names` exist, creating the missing ones when `create` (only
    those: a Pulse user may not declare Taskcluster's exchanges even where they exist); a missing
    one is one line naming it, `where` it is used and --declare-exchanges.

    Example:
        >>> conn, address = connect("memory://")
        >>> check_exchanges(conn, address, ["exchange/nobody/v1/x"], create=False)
        Traceback (most recent call last):
        ...
        tcpulse.cli.base.RuntimeFailure: exchange 'exchange/nobody/v1/x' does not exist on memory://: is the service that publishes it running there? (for local development, --declare-exchanges creates it)
    """
    from tcpulse._listen.topology import MissingExchange, declare_exchange
    from tcpulse.errors import BrokerFailure

    for name in dict.fromkeys(names):
        try:
            try:
                declare_exchange(conn.channel(), address, name, passive=True)
            except MissingExchange:
                if not create:
                    raise
                declare_exchange(conn.channel(), address, name, passive=False)  # the refusal closed the last one
        except MissingExchange as exc:
            raise RuntimeFailure(where(name) + str(MissingExchange(exc.exchange, exc.broker,
                                                                   remedy="--declare-exchanges"))) from None
        except BrokerFailure as exc:
            raise RuntimeFailure(where(name) + str(exc)) from None


def outside_broker(broker: Any, command: str) -> Any:
    """The address of `broker` (resolved as the listener does), refusing the embedded broker.

    Example:
        >>> outside_broker("memory://", "publish")
        Traceback (most recent call last):
        ...
        tcpulse.cli.base.UsageError: memory://: the embedded broker lives inside one process, so what `tcpulse publish` does there vanishes when it exits; to try handlers on it, use `tcpulse listen SCRIPT --broker memory:// --replay FILE`
    """
    address = broker_address(broker)
    if address.is_memory:
        raise UsageError("memory://: " + IN_PROCESS_ONLY.format(command=command))
    return address


def cmd_publish(args: argparse.Namespace) -> int:
    """`tcpulse publish`: one message, its routes in the CC header, through `tcpulse.Publisher`.

    Example (needs a broker):
        >>> cmd_publish(argparse.Namespace(exchange="QueueEvents.taskFailed", fields=[], routing_key="primary.t",
        ...                                route=["index.a"], body="{}", body_file=None, broker=None))  # doctest: +SKIP
        published 1 message to exchange/taskcluster-queue/v1/task-failed with key primary.t and routes index.a
        0
    """
    from tcpulse.errors import BrokerFailure
    from tcpulse._broker.publishing import Publisher, outgoing

    fields = parse_fields(getattr(args, "fields", []))
    if getattr(args, "sample", False):
        message = _sample_message(args, fields)
    else:
        if args.routing_key is None and not fields:
            raise UsageError("give --routing-key KEY, or the key's fields as field=value words")
        message = outgoing(args.exchange, _load_body(args), args.routing_key, args.route, **fields)
    address = outside_broker(args.broker, "publish")
    conn, address = connect(address)
    with conn:
        check_exchanges(conn, address, [message.exchange], create=getattr(args, "declare_exchanges", False))
    try:
        with Publisher(address) as publisher:
            publisher.send(message)
    except BrokerFailure as exc:
        raise RuntimeFailure(str(exc)) from None
    print(f"published 1 message to {message.exchange} with key {message.routing_key}"
          + (f" and routes {', '.join(message.routes)}" if message.routes else ""))
    return EXIT_OK


def _sample_message(args: argparse.Namespace, fields: Dict[str, str]) -> Any:
    """`publish --sample`: the message of `tcpulse.testing.sample` for the exchange and fields."""
    from tcpulse._api.exchanges import find_exchange
    from tcpulse._broker.publishing import outgoing
    from tcpulse.testing import sample

    if args.routing_key is not None:
        raise UsageError("--sample builds the routing key from field=value words; leave out --routing-key")
    event = sample(find_exchange(args.exchange), **fields)
    return outgoing(args.exchange, event.body, event.routing_key, args.route)


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


def cmd_replay(args: argparse.Namespace) -> int:
    """`tcpulse replay`: every message of a recording, in order (see the module example). Every
    exchange is checked (or created, with --declare-exchanges) before the first message goes; a
    publish that fails names its line and how many were published before it."""
    from tcpulse._ops.recording import ReplayStopped, read, replay_into

    address = outside_broker(args.broker, "replay")
    messages = read(args.file)
    conn, address = connect(address)
    with conn:
        first_line = {}
        for message in messages:
            first_line.setdefault(message.exchange, message.line)
        check_exchanges(conn, address, first_line, create=args.declare_exchanges,
                        where=lambda name: f"{args.file} line {first_line[name]}: nothing was published: ")
        try:
            replay_into(conn, messages, progress=_progress("replayed"))
        except ReplayStopped as stopped:
            raise RuntimeFailure(f"{args.file} {stopped}; {len(messages) - stopped.published} not published "
                                 f"(on {address.redacted}); the published ones are not taken back") from None
    print(f"replayed {len(messages)} messages from {args.file} to {address.redacted}")
    return EXIT_OK


def _progress(verb: str) -> Callable[[int], None]:
    def report(count: int) -> None:
        if count % PROGRESS_EVERY == 0:
            print(f"{verb} {count} messages...", file=sys.stderr, flush=True)
    return report


def cmd_record(args: argparse.Namespace) -> int:
    """`tcpulse record`: consume the bindings into a JSON Lines file until --count or --timeout.

    Example (needs a broker):
        >>> cmd_record(argparse.Namespace(exchange="QueueEvents.taskFailed", fields=[], script=None,
        ...                               out="/dev/null", count=None, timeout=0.1, broker=None))  # doctest: +SKIP
        recorded 0 messages into /dev/null
        0
    """
    import uuid

    from tcpulse._ops.recording import record_from

    bindings = _record_bindings(args)
    conn, address = connect(outside_broker(args.broker, "record"))
    queue = f"queue/{address.user}/tcpulse-record-{uuid.uuid4().hex[:8]}"
    with conn, _open_out(args.out) as out:
        def ready() -> None:
            print(f"recording {len(bindings)} binding(s) from {address.redacted} into {args.out}"
                  " (Ctrl-C to stop)", file=sys.stderr, flush=True)
        progress = _Counting(_progress("recorded"))
        try:
            on_broker(address, lambda: record_from(conn, queue, bindings, out, count=args.count,
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
    """`tcpulse dead-letters NAME`: print the dead letters of listener NAME as JSON lines (at most
    `--limit`, default 100), or requeue them (all, or at most `--limit`) and say how many on
    stderr (stdout carries only data).

    Example:
        >>> guarded(cmd_dead_letters)(argparse.Namespace(name="nobody", broker="memory://", requeue=False, limit=None))
        2
    """
    from tcpulse._listen.deadletters import list_dead_letters, requeue_dead_letters
    from tcpulse.errors import BrokerFailure
    from tcpulse._listen.topology import ListenerNames

    connection, address = connect(outside_broker(args.broker, "dead-letters"))
    names = ListenerNames.of(address.user, args.name)
    queue = names.queue
    try:
        with connection:
            if args.requeue:
                sent = on_broker(address, lambda: requeue_dead_letters(connection, queue, args.limit,
                                                                       report=_to_stderr))
                print(f"requeued {sent} dead letter(s) from {names.dead_letter_queue} to {queue}", file=sys.stderr)
                return EXIT_OK
            records = on_broker(address, lambda: list_dead_letters(connection, queue,
                                                                   100 if args.limit is None else args.limit))
    except BrokerFailure as exc:
        raise RuntimeFailure(str(exc)) from None
    for record in records:
        print(json.dumps(record, sort_keys=True))
    # On stderr, so that stdout stays JSON lines only; an empty list must not look like no answer.
    print(f"{len(records)} dead letter{'' if len(records) == 1 else 's'} in {names.dead_letter_queue}"
          + (" (the oldest; --limit N for more)" if args.limit is None and len(records) == 100 else ""),
          file=sys.stderr)
    return EXIT_OK


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _record_bindings(args: argparse.Namespace) -> List[Tuple[str, str]]:
    from tcpulse._api.exchanges import find_exchange

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
