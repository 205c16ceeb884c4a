"""Where a listener's delivery path lives on the broker, found the same way by everything.

Owns: the lock that lets one connection at a time read or change a listener's layout
(`layout_lock`), reading the binding record (`take_record` for a starting listener, which keeps
it unacked until it writes the next; `peek_record` for the tools), finding a listener's delivery
exchange for the tools (`locate`: its secret comes from the binding record; a listener that has
not moved yet keeps the legacy name), recording a new secret before anything uses it
(`settle_secret`), and reading the one a listener queue names when its record was deleted
(`probe_secret`). What a starting listener does with them is `tcpulse._ops.maintenance.prepare`.

Why a lock: the secret lives in one place, the binding record, which a reader takes off its
queue to read it (AMQP has no peek). A listener starting while another process holds the record
would see none, pick a new secret and find its queue declared with another one; two listeners
starting at once on a new queue would pick two. The lock is an exclusive queue
`queue/<user>/<name>/lock`: the broker lets one connection declare it, and removes it when that
connection closes, even after kill -9, so it never outlives its holder.

Imports kombu (through the channels it is given); never requests or the listener.

Example:
    >>> import kombu
    >>> from tcpulse._listen.topology import ListenerNames
    >>> with kombu.Connection("memory:///doc-layout", transport="tcpulse._broker.broker:Transport") as conn:
    ...     locate(conn, ListenerNames("queue/alice/watcher")).exchange
    'exchange/alice/watcher/delivery'
"""
import contextlib
import logging
import re
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import kombu
from amqp.exceptions import NotFound

from tcpulse.errors import BrokerFailure
from tcpulse._listen.stale import Record, read_records, write_record
from tcpulse._listen.topology import ListenerNames, new_secret, queue_arguments, refusal_text

log = logging.getLogger("tcpulse.listener")

LOCK_WAIT = 120.0  # seconds to wait for another connection's setup before giving up
LOCK_POLL = 0.2
_CURRENT_DLX = re.compile(r"inequivalent arg 'x-dead-letter-exchange' .* but current is '([^']*?)(?:(')|\.\.\.$)")


def connection_of(channel: Any) -> Any:
    """Something with `channel()` and `drain_events(timeout=)` on `channel`'s broker connection
    (py-amqp's connection; on memory:// the kombu Connection behind the transport)."""
    connection = channel.connection
    return connection if hasattr(connection, "channel") else connection.client


@contextlib.contextmanager
def channel_on(connection: Any) -> Iterator[Any]:
    """A channel of `connection`, closed on the way out (a refused declaration closes it first)."""
    channel = connection.channel()
    try:
        yield channel
    finally:
        try:
            channel.close()
        except Exception:  # closed already by the broker's refusal
            pass


def count(connection: Any, queue: str) -> Optional[int]:
    """Messages ready in `queue`, or None when there is no such queue."""
    with channel_on(connection) as channel:
        try:
            return channel.queue_declare(queue, passive=True).message_count
        except NotFound:
            return None


def consumers(connection: Any, queue: str) -> int:
    """How many consumers `queue` has (0 when there is no such queue)."""
    with channel_on(connection) as channel:
        try:
            return channel.queue_declare(queue, passive=True).consumer_count
        except NotFound:
            return 0


def exchange_exists(connection: Any, exchange: str) -> bool:
    with channel_on(connection) as channel:
        try:
            channel.exchange_declare(exchange, "direct", passive=True)
            return True
        except NotFound:
            return False


@contextlib.contextmanager
def layout_lock(connection: Any, names: ListenerNames) -> Iterator[None]:
    """Hold the listener's layout lock (see the module docstring) for the block; waits while
    another connection holds it, up to LOCK_WAIT seconds."""
    deadline = time.monotonic() + LOCK_WAIT
    said = False
    while True:
        channel = connection.channel()
        try:
            channel.queue_declare(names.lock_queue, durable=False, exclusive=True, auto_delete=True)
            break
        except Exception as exc:
            if not refusal_text(exc, "RESOURCE_LOCKED", "ResourceLocked"):
                raise
        if time.monotonic() > deadline:
            raise BrokerFailure(f"another connection has held {names.lock_queue} for {LOCK_WAIT:g} s (a process of "
                                f"this listener setting up, or a tcpulse command on it): try again when it is done")
        if not said:
            log.info("waiting for another process to finish setting up %s", names.queue)
            said = True
        time.sleep(LOCK_POLL)
    try:
        yield
    finally:
        try:
            channel.queue_delete(names.lock_queue)
            channel.close()
        except Exception:  # the connection is gone, and the lock with it
            pass


def peek_record(connection: Any, names: ListenerNames) -> Record:
    """The listener's binding record, read and left in place (from its queue and from a
    migration's parking queue for it). Take `layout_lock` around it: a listener starting while
    the record is out of its queue would not find it."""
    held: List[Any] = []
    for queue in (names.record_queue, names.parking_queues()["parked-rec"]):
        waiting = count(connection, queue)
        if not waiting:
            continue
        with channel_on(connection) as channel:  # closing it puts the record back
            source = kombu.Queue(queue, channel=channel)
            held += list(iter(lambda: source.get(no_ack=False), None))
        await_count(connection, queue, waiting)
    return read_records(held, "the binding record")


def locate(connection: Any, names: ListenerNames) -> ListenerNames:
    """`names` with the listener's delivery exchange as it is on the broker now: the secret its
    record holds, else the legacy exchange (a listener that has not moved, or never ran)."""
    with layout_lock(connection, names):
        return names.with_secret(peek_record(connection, names).secret)


def await_count(connection: Any, queue: str, expected: int, timeout: float = 2.0) -> None:
    """Wait (at most `timeout` seconds) until `queue` holds `expected` messages again after a
    channel that held them unacked closed."""
    # A quorum queue takes back a closed channel's unacked messages asynchronously: wait until
    # they are there again, so that whatever looks next (a second listing) sees them.
    deadline = time.monotonic() + timeout
    while (count(connection, queue) or 0) < expected and time.monotonic() < deadline:
        time.sleep(0.01)


def probe_secret(connection: Any, names: ListenerNames, arguments: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """What delivery exchange the existing listener queue `names.queue` names as its dead-letter
    exchange: ("secret", S) for the private one of secret S, ("lost", None) for a private one
    whose name the broker cut short, ("other", None) for the legacy one or when other arguments
    than `arguments` differ. A Pulse user cannot read a queue's arguments, but the broker's
    refusal of a declaration naming another dead-letter exchange says which one the queue has
    (up to 255 bytes of text; an attacker's declaration is refused for want of permission before
    that): so a listener whose binding record was deleted finds its secret again."""
    probe = {**arguments, "x-dead-letter-exchange": names.legacy_exchange}
    with channel_on(connection) as channel:
        try:
            channel.queue_declare(names.queue, durable=True, auto_delete=False, arguments=probe)
            return "other", None
        except Exception as exc:
            found = _CURRENT_DLX.search(str(exc))
    prefix = names.legacy_exchange + "-"
    if found is None:
        return "other", None
    current, cut = found.group(1), found.group(2) is None
    if not cut and current.startswith(prefix):
        return "secret", current[len(prefix):]
    return ("lost", None) if cut and (prefix.startswith(current) or current.startswith(prefix)) else ("other", None)


def take_record(channel: Any, delivery: Any) -> Record:
    """Declare the record queue of `delivery`'s listener (when there is none) and take every
    record message in it, unacked (a competing process may have left one of its own)."""
    name = delivery.names.record_queue
    # Of the listener's queue type: a classic record would make the listener depend on one node.
    # One of the other type is read as it is: the listener's own queue, declared next, says what
    # to do about the type (`tcpulse migrate`), in one line.
    if count(connection_of(channel), name) is None:
        channel.queue_declare(queue=name, durable=True, exclusive=False, auto_delete=False,
                              arguments=queue_arguments(delivery.queue_type))
    queue = kombu.Queue(name, channel=channel)
    return read_records(list(iter(lambda: queue.get(no_ack=False), None)), name)


def settle_secret(channel: Any, delivery: Any, record: Optional[Record] = None) -> Record:
    """Point `delivery` at the secret of its listener's binding record (`record`, else taken on
    `channel`), recording a new one first when there is none: a start cut short from then on
    resumes with it. Returns the record, taken on `channel`. Call it under `layout_lock`."""
    record = record if record is not None else take_record(channel, delivery)
    if record.secret is None:
        delivery.use(new_secret())
        kombu.Exchange(delivery.exchange, type="direct", durable=True, channel=channel).declare()
        write_record(channel, delivery, record, sorted(record.pairs), record.holding)
        record = take_record(channel, delivery)
    delivery.use(record.secret)
    return record
