"""`tcpulse listen SCRIPT`: run the handlers a script registers (every `Listener` it defines, as
`tcpulse.run` does), with what the command adds around the run: logging setup, `--replay FILE`,
`--exit-when-idle`, `--declare-exchanges`, `--adopt`, the delivery options as flags over the
script's own values (for each listener), and the summary line (one per listener) printed when the
run ends.

Owns: the listen options; publishing a recording into the listeners' brokers once they are
consuming (on `memory://` that is the same process, so a replay needs nothing else running);
deciding when the listeners are idle (no message for `--idle-seconds` and nothing waiting in
their queues or their retry holding queues).

Imports kombu only through `base.connect` (the listener loads it when it runs); never imports requests.

Example:
    >>> LOG_LEVELS[0]
    'debug'
"""
import argparse
import logging
import os
import sys
import threading
import time
from typing import Any, List, Optional, Tuple

from tcpulse._broker.connection import broker_errors
from tcpulse.errors import BrokerFailure
from tcpulse._ops.logsetup import LOG_FORMAT
from tcpulse._listen.supervisor import PROCESS_VARIABLE
from tcpulse._listen.topology import MissingExchange
from tcpulse.cli.base import (EXIT_OK, RuntimeFailure, UsageError, broker_address, broker_option, connect, guarded,
                   parse_delays, positive_int, whole_number)

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error")
POLL = 0.05  # seconds between idle checks on the embedded broker
REMOTE_POLL = 0.2  # ... and on a real one, where each check costs a round trip per queue
FILTERED_SHOWN = 5  # lines of filtered-out messages the replay summary names
ASSIST_JOIN_TIMEOUT = 10.0  # seconds the replay/idle thread gets to finish once the listener stopped


def add_commands(subparsers: Any) -> None:
    """Add `listen` to `subparsers` (from `add_subparsers`).

    Example:
        >>> parser = argparse.ArgumentParser(prog="tcpulse")
        >>> add_commands(parser.add_subparsers())
        >>> parser.parse_args(["listen", "h.py", "--exit-when-idle"]).idle_seconds
        1.0
    """
    p = subparsers.add_parser(
        "listen", help="Run the handlers SCRIPT registers until SIGTERM/SIGINT.",
        description="Run the handlers SCRIPT registers (with @tcpulse.on, or on the Listener it "
                    "defines) until SIGTERM/SIGINT; the first signal finishes running handlers, "
                    "the second exits at once.",
        epilog="example:\n  tcpulse listen examples/task_group_watcher.py --queue watcher --concurrency 8\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("script", help="a Python file that registers handlers")
    broker_option(p)
    p.add_argument("--queue", metavar="NAME", help="the listener's name: the queue is queue/<user>/NAME")
    p.add_argument("--adopt", action="store_true",
                   help="take over the listener's queue if another tool declared it (or with other arguments): "
                        "in place, keeping its messages, moved to tcpulse's layout")
    p.add_argument("--auto-delete", action="store_true", default=None,
                   help="a development queue: the broker removes the named queue once its last consumer goes")
    p.add_argument("--queue-type", choices=("classic", "quorum"),
                   help="the queue's type (default: the script's, else classic); quorum queues are "
                        "replicated over a RabbitMQ cluster and need --queue or a named Listener")
    p.add_argument("--delivery-limit", type=positive_int, metavar="N",
                   help="dead-letter a message delivered N times without an ack, the last time alone (its "
                        "process died on it each time; default 20)")
    p.add_argument("--concurrency", type=positive_int, help="handler threads (default: the script's, else 1: in order)")
    p.add_argument("--prefetch", type=whole_number,
                   help="unacked messages the broker may send ahead (0: no limit, with a warning)")
    p.add_argument("--max-attempts", type=positive_int, metavar="N",
                   help="tries per message before it is dead-lettered (default: the script's, else 5)")
    p.add_argument("--retry-delays", type=parse_delays, metavar="S,S,...",
                   help="seconds before attempt 2, 3, ...; the last repeats (default: the script's, "
                        "else 5,30,120,600)")
    p.add_argument("--max-length", type=positive_int, metavar="N",
                   help="the queue's x-max-length: beyond it the oldest messages go to the dead-letter queue")
    p.add_argument("--validate", choices=("off", "warn", "dead-letter"),
                   help="check each body against its exchange's JSON schema: log what does not match (warn) "
                        "or park it in the dead-letter queue (default: the script's, else off)")
    p.add_argument("--max-body-bytes", type=positive_int, metavar="N",
                   help="dead-letter bodies longer than N bytes unread (default: the script's, else 1048576)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    p.add_argument("--health-port", type=_port, metavar="P",
                   help="serve /live, /ready and /metrics (Prometheus) on 127.0.0.1:P")
    p.add_argument("--processes", type=positive_int, default=1, metavar="N",
                   help="run N processes of the listener on its queue (competing consumers, for CPU-bound "
                        "handlers); a supervisor restarts those that die and serves one --health-port for all")
    p.add_argument("--replay", metavar="FILE",
                        help="publish this JSON Lines recording once the listener consumes "
                             "(with --broker memory:// nothing else needs to run)")
    p.add_argument("--exit-when-idle", action="store_true",
                        help="stop once no message arrived for --idle-seconds and none waits in the "
                             "listener's queue or its retry holding queues")
    p.add_argument("--idle-seconds", type=float, default=1.0, metavar="S",
                        help="how long without a message counts as idle (default 1.0)")
    p.add_argument("--declare-exchanges", action="store_true",
                        help="create the exchanges the handlers bind to, for a local RabbitMQ without "
                             "Taskcluster's services (on Pulse they exist, and users may not create them)")
    p.set_defaults(func=guarded(cmd_listen))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 1 to 65535 (got {text!r})")
    return int(text)


def cmd_listen(args: argparse.Namespace) -> int:
    from tcpulse._listen.scripts import ScriptError, load_listeners

    # A child of `--processes` says which one it is on every line (the supervisor sets the variable).
    process = os.environ.get(PROCESS_VARIABLE)
    logging.basicConfig(level=args.log_level.upper(),
                        format=LOG_FORMAT.replace("%(name)s", f"%(name)s[process {process}]") if process else LOG_FORMAT)
    if args.log_json:
        from tcpulse._ops.logsetup import JsonFormatter
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    try:
        listeners = load_listeners(args.script)
        if args.queue and len(listeners) > 1:
            raise UsageError(f"--queue names one listener, and {args.script} defines {len(listeners)} "
                             f"({', '.join(l.label for l in listeners)}): name each in the script")
        for listener in listeners:
            listener.configure(name=args.queue, broker=broker_address(args.broker) if args.broker else None,
                               concurrency=args.concurrency, prefetch=args.prefetch, health_port=args.health_port,
                               queue_type=args.queue_type, delivery_limit=args.delivery_limit,
                               max_attempts=args.max_attempts, retry_delays=args.retry_delays,
                               max_length=args.max_length, auto_delete=args.auto_delete,
                               max_body_bytes=args.max_body_bytes, adopt=True if args.adopt else None,
                               validate=args.validate)
            listener.broker  # noqa: B018 - a bad PULSE_URL, not overridden by --broker, is reported here
    except (ScriptError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    if args.processes > 1:
        return _supervise(listeners, args)
    try:
        run_listen(listeners, args)
    except MissingExchange as exc:
        raise RuntimeFailure(str(MissingExchange(exc.exchange, exc.broker, remedy="--declare-exchanges"))) from None
    except (BrokerFailure, OSError) as exc:  # OSError: e.g. the health port is taken
        raise RuntimeFailure(str(exc)) from None
    return EXIT_OK


def _supervise(listeners: List[Any], args: argparse.Namespace) -> int:
    """`--processes N`: the checked listeners run in N children of a supervisor."""
    from tcpulse._listen.supervisor import supervise

    if any(listener.name is None for listener in listeners):
        raise UsageError("--processes needs a named listener, whose queue the processes share: give --queue NAME "
                         "or Listener('name') in the script")
    if any(listener.broker.is_memory for listener in listeners):
        raise UsageError("--processes needs a broker the processes can share; the embedded broker (memory://) "
                         "lives inside one process")
    if args.replay:
        raise UsageError("--replay with --processes would publish the recording once per process; replay it "
                         "with `tcpulse replay FILE` instead")
    try:
        return supervise(args.script, args.processes, *child_arguments(getattr(args, "argv", []), args.script),
                         health_port=args.health_port)
    except OSError as exc:  # the health port is taken
        raise RuntimeFailure(str(exc)) from None


def child_arguments(argv: List[str], script: str) -> List[str]:
    """The options of `listen` that each child of `--processes` gets (SCRIPT apart): all but
    `--processes` and `--health-port` (the supervisor picks each child's port).

    Example:
        >>> child_arguments(["listen", "--queue", "q", "app.py", "--processes=3", "--health-port", "9000"], "app.py")
        ['--queue', 'q']
    """
    rest = argv[argv.index("listen") + 1:] if "listen" in argv else []
    if script in rest:
        rest.remove(script)
    kept: List[str] = []
    skip = False
    for item in rest:
        if skip:
            skip = False
        elif item in ("--processes", "--health-port"):
            skip = True
        elif not item.startswith(("--processes=", "--health-port=")):
            kept.append(item)
    return kept


def run_listen(listeners: Any, args: argparse.Namespace) -> None:
    """Run `listeners` (one, or a list run together) with the replay and idle options of `args`,
    then print the summary (each line after its listener's label when there are several).

    Example:
        >>> import tcpulse
        >>> app = tcpulse.Listener(broker="memory://")
        >>> app.on(tcpulse.QueueEvents.taskFailed)(print) and None
        >>> run_listen(app, argparse.Namespace(replay=None, exit_when_idle=True, idle_seconds=0.1))
        received 0 messages; handled: none; unmatched 0, retried 0, dead-lettered 0
    """
    from tcpulse._listen.runner import run
    from tcpulse._ops.recording import read

    listeners = list(listeners) if isinstance(listeners, (list, tuple)) else [listeners]
    messages = read(args.replay) if getattr(args, "replay", None) else None
    if getattr(args, "declare_exchanges", False):
        for listener in listeners:
            listener.configure(declare_exchanges=True)
    errors: List[BaseException] = []
    for listener in listeners:
        listener._log_summary = False  # printed below, on stdout
    finished = threading.Event()
    helper: Optional[threading.Thread] = None
    if messages is not None or getattr(args, "exit_when_idle", False):
        helper = threading.Thread(target=_assist, args=(listeners, args, messages, errors, finished),
                                  name="tcpulse-listen-assist", daemon=True)
        helper.start()
    try:
        run(*listeners)
    finally:
        finished.set()
        if helper is not None:  # an error it raises as the listener stops must still be seen below
            helper.join(ASSIST_JOIN_TIMEOUT)
    for listener in listeners:
        label = f"{listener.label}: " if len(listeners) > 1 else ""
        print(label + listener.metrics.summary(), flush=True)
    if errors:
        raise errors[0]


def _assist(listeners: List[Any], args: argparse.Namespace, messages: Optional[list],
            errors: List[BaseException], finished: threading.Event) -> None:
    try:
        if not _wait_ready(listeners, finished):
            return
        if messages is not None:
            # Into each broker once: listeners of one broker share its exchanges.
            for listener in {_where(l.broker): l for l in listeners}.values():
                _replay(listener, messages)
        if args.exit_when_idle:
            _stop_when_idle(listeners, args.idle_seconds)
    except Exception as exc:  # reported by run_listen after the listener stopped
        errors.append(exc if isinstance(exc, RuntimeFailure) else RuntimeFailure(f"replay failed: {exc}"))
        for listener in listeners:
            listener.stop()


def _where(address: Any) -> Tuple[Any, ...]:
    return address.scheme, address.host, address.port, address.vhost


def _wait_ready(listeners: List[Any], finished: threading.Event) -> bool:
    while not all(listener.is_ready() for listener in listeners):
        if finished.wait(POLL):
            return False
    return True


def _replay(listener: Any, messages: Any) -> None:
    from tcpulse._ops.recording import ReplayStopped, replay_into

    conn, address = connect(listener.broker)
    with conn:
        try:
            replay_into(conn, messages)
        except ReplayStopped as stopped:
            raise RuntimeFailure(f"replaying {messages.path} into {address.redacted} failed at {stopped}") from None
    print(f"replayed {len(messages)} messages into {address.redacted}{_filtered(listener, messages)}",
          file=sys.stderr, flush=True)


def _filtered(listener: Any, messages: Any) -> str:
    """Why fewer messages may arrive than were replayed: those no binding of the listener's
    queue matches, which the broker drops, counted with the lines of the first few."""
    lines = [m.line for m in messages if not listener.registry.select(m.exchange, m.routing_key, m.cc)]
    if not lines:
        return ""
    shown = ", ".join(map(str, lines[:FILTERED_SHOWN])) + (", ..." if len(lines) > FILTERED_SHOWN else "")
    return (f"; {len(lines)} of them (line{'s' if len(lines) > 1 else ''} {shown}) match no handler's binding, "
            "so the broker did not deliver them to this listener")


def _stop_when_idle(listeners: List[Any], idle_seconds: float) -> None:
    waiting = [_Waiting(listener) for listener in listeners]
    last, quiet_since = None, time.monotonic()
    try:
        while all(listener.is_ready() for listener in listeners):
            seen = [(listener.metrics.snapshot(), queues.count()) for listener, queues in zip(listeners, waiting)]
            if seen != last or any(count for _, count in seen):
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= idle_seconds:
                for listener in listeners:
                    listener.stop()
                return
            time.sleep(max(queues.poll for queues in waiting))
    finally:
        for queues in waiting:
            queues.close()


class _Waiting:
    """Counts the messages waiting for the listener in its queue and its retry holding queues:
    in-process on the embedded broker, by passive declares on a real one. A real broker will not
    show an anonymous listener's exclusive queues to another connection: then only the quiet
    time counts."""

    def __init__(self, listener: Any):
        from tcpulse._broker.connection import resolve_broker

        self.queues = [listener.queue, *listener.retry_queues()]
        self.address = resolve_broker(listener.broker)
        self.poll = POLL if self.address.is_memory else REMOTE_POLL
        self.conn = None
        if not self.address.is_memory:
            self.queues = self.queues if listener.name else []
            self.conn = connect(listener.broker)[0]

    def count(self) -> int:
        if self.conn is None:
            from tcpulse._broker.embedded import broker_for

            depths = broker_for(self.address.vhost).depths()
            return sum(depths.get(name, 0) for name in self.queues)
        try:
            channel = self.conn.default_channel
            return sum(channel.queue_declare(queue=name, passive=True).message_count for name in self.queues)
        except broker_errors() as exc:
            log.warning("cannot count the messages waiting in %s (%s); --exit-when-idle now goes by "
                        "quiet time alone", ", ".join(self.queues), exc)
            self.queues = []
            return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.release()

