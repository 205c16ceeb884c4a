"""The connection thread of a listener: connect, declare, consume, hand messages to a pool of
handler threads, and settle their results, always on this thread.

Owns: the consume loop (built on kombu's `ConsumerMixin` hooks), reconnecting with backoff and
jitter, heartbeats while handlers run, feeding the handler pool (`tcpulse._listen.pool`), batched acks,
and the bounded drain on shutdown. What a message's result means (ack, retry, dead letter) is decided by the
`settle` callable it is given (`tcpulse._listen.messages.MessageHandling.settle`), which publishes any
copy before this thread acks the message; what to declare by `declare`; which pool runs messages
(threads, or an event loop for async handlers) by `pool`.

Why a pool, a completion queue and our own `consume`: a handler may take minutes, but
heartbeats and acks must go out on the connection's own thread (kombu channels are not
thread-safe), so handlers never run here. kombu's stock loop blocks in `drain_events` and
cannot be woken when a handler finishes, which would leave finished messages unacked until a
timeout; so this loop waits with `select` on the broker socket AND a wake-up socket that
handler threads (and `stop()`) write to. Transports without a socket (memory://) are polled.

Several broker nodes (`address.nodes`, from `a;b;c` URLs): connections go to one node at a time,
starting with the first; every failed connection attempt moves on to the next node, so when the
node in use goes away the listener is consuming from another one after one refused attempt (the
backoff applies between attempts as with one node). A quorum queue is served by every node.

Acks are batched (`tcpulse._listen.acks.AckWindow`) where the transport honours multiple acks, and
flushed whenever this thread is about to wait. Messages of a lost connection are never acked on
the next one (delivery tags belong to a channel); the broker redelivers them.

Imports kombu; never imports requests or the listener.

Example (needs a broker):
    >>> Consumer(address, declare, lambda notify: WorkerPool(1, work, notify), settle, prefetch=10, grace=25,
    ...          metrics=Metrics(), stop=threading.Event()).run()   # doctest: +SKIP
"""
import logging
import random
import select
import socket
import threading
import time
from contextlib import contextmanager
from struct import unpack_from
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from kombu.mixins import ConsumerMixin

from tcpulse._listen.acks import AckWindow
from tcpulse._broker.connection import BrokerAddress
from tcpulse.errors import BrokerFailure
from tcpulse._listen.delivery import PublishRefused
from tcpulse._ops.metrics import Metrics
from tcpulse._listen.unsettled import Settling

log = logging.getLogger("tcpulse.listener")

TICK = 0.05  # longest wait for the broker or a wake-up; bounds how late heartbeats and stop are seen
ACK_DELAY = 0.02  # longest time a finished message waits for its (batched) ack
HEARTBEAT_EVERY = 1.0  # seconds between heartbeat checks while messages keep flowing
FIRST_CONNECT_ATTEMPTS = 3  # a broker unreachable at start is a configuration error, not an outage
BACKOFF_CAP = 30.0
READ_AHEAD = 64 * 1024  # bytes asked of the broker socket per recv (many messages at a time)
UNLIMITED_WINDOW = 100  # deliveries taken (and acks batched) at a time under prefetch 0

Settle = Callable[[Any, Any, Dict[str, BaseException]], None]
# notify -> the pool that runs messages (`tcpulse._listen.pool.WorkerPool` or `tcpulse._listen.looppool.LoopPool`);
# the pool calls notify when a result is ready to settle.
PoolFactory = Callable[[Callable[[], None]], Any]


class _WithoutKombuConnectedLine(logging.Filter):
    """Drops the 'Connected to <uri>' line kombu's ConsumerMixin logs on every connect: the
    consumer logs its own, with the redacted address (kombu's reads
    'tcpulse._broker.broker:Transport://:**@localhost//' on memory://)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Connected to %s"


logging.getLogger("kombu.mixins").addFilter(_WithoutKombuConnectedLine())


class Consumer(ConsumerMixin):
    """Consumes one queue for a listener until `stop` is set.

    `declare(channel) -> queue name` (re)declares the topology on every connect; `pool(notify)`
    makes the pool that runs messages; `settle(message, event, failures)` runs on this thread
    and publishes what the result calls for (a retry or dead-letter copy); the message is acked
    once it returns.
    """

    def __init__(self, address: BrokerAddress, declare: Callable[[Any], str], pool: PoolFactory,
                 settle: Settle, *, prefetch: int, grace: float,
                 metrics: Metrics, stop: threading.Event) -> None:
        self.address = address
        self._node = 0  # index in address.nodes of the node we connect to
        self.connection = address.nodes[0].connection()
        self._declare = declare
        # settle then ack; a copy the broker refuses keeps its message unacked for a later try
        self._settling = Settling(settle, self.ack)
        self._prefetch, self._grace = prefetch, grace
        # How many deliveries to take in one go and to ack in one batch: with no limit (0), as
        # many as a bounded window would.
        self._window = prefetch or UNLIMITED_WINDOW
        self.metrics = metrics
        self._stop = stop
        # A socket pair, not os.pipe(): once closed, a late wake() fails cleanly instead of
        # writing into whatever file reuses the descriptor number.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sleeping = False
        self._sock: Any = None
        self._transport: Any = None
        self.pool = pool(self._notify)
        self.ready = False
        self._epoch = 0
        self._ever_connected = False
        self._failures = 0  # consecutive failed or short-lived connections, for the backoff
        self._connected_at = 0.0
        self._conn: Any = None
        self._queue_name = "the queue"
        self._channel: Any = None
        # Batched acks over the current channel (only where basic.ack(multiple) is honoured).
        self._batch = address.scheme in ("amqp", "amqps")
        self._uncounted = 0  # acks owed on the channel that the metric 'acked' leaves out
        self._acks = AckWindow(lambda tag, multiple: self._channel.basic_ack(tag, multiple=multiple))
        self._last_heartbeat = 0.0
        self._inbox: List[Any] = []  # delivered, not yet handed to the pool
        self.guard: Any = None  # the crash-loop guard (`tcpulse._listen.isolation.Isolation`), if any
        self.backlog: Any = None  # a tcpulse._listen.backlog.BacklogWatch, polled from this thread

    @property
    def should_stop(self) -> bool:  # type: ignore[override]
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------
    def run(self, _tokens: int = 1, **kwargs: Any) -> None:
        """Consume until stopped, reconnecting after every recoverable broker error."""
        recoverable = self.connection.connection_errors + self.connection.channel_errors
        try:
            while not self.should_stop:
                try:
                    for _ in self.consume():
                        pass
                except (*recoverable, PublishRefused) as exc:  # refused: the binding record's publish
                    self._lost(exc)
                except _Stopped:
                    break
        finally:
            self.ready = False
            self.pool.close()
            self._wake_r.close()
            self._wake_w.close()

    def consume(self, *args: Any, **kwargs: Any) -> Iterator[None]:
        """kombu's consume loop, with a wait that handler threads can interrupt."""
        with self.consumer_context() as (conn, channel, consumers):
            while not self.should_stop:
                self.on_iteration()
                self._wait(conn)
                yield

    def _wait(self, conn: Any) -> None:
        """Take what the broker has sent; if there is nothing and no finished work either, send
        the acks owed and sleep until the broker sends more, a handler finishes, or TICK passes."""
        if self._drain_ready(conn) or self.pool.done or self.should_stop:
            return
        self._flush_acks(force=True)
        self._sleeping = True
        if not self.pool.done:  # again, now that handler threads will wake us
            self._sleep(conn)
        self._sleeping = False
        self._drain_ready(conn)

    def _sleep(self, conn: Any) -> None:
        if self._sock is not None:
            ready = select.select([self._sock, self._wake_r], [], [], TICK)[0]
        elif self.pool.busy():  # no socket (memory://): a finishing handler is what we wait for
            ready = select.select([self._wake_r], [], [], TICK)[0]
        else:  # nothing running: wait for the broker itself
            ready = []
            try:
                conn.drain_events(timeout=TICK)
            except socket.timeout:
                pass
        if self._wake_r in ready:
            _empty(self._wake_r)

    def _drain_ready(self, conn: Any) -> int:
        """Take every delivery already waiting, without blocking, so that they reach the pool
        together (one thread wake-up instead of one per message). Returns how many frames
        were handled."""
        most = 3 * (self._window + 1)  # a message is three frames: method, header, body
        transport = self._transport
        on_frame = conn.connection.on_inbound_frame if transport is not None else None
        for taken in range(most):
            frame = _buffered_frame(transport)
            if frame is not None:  # read ahead: no system call, nothing to wait for
                on_frame(frame)
                continue
            if self._sock is not None and not self._readable():
                return taken
            try:  # on a socket a whole frame is there or on its way; elsewhere, do not wait
                conn.drain_events(timeout=TICK if self._sock is not None else 0)
            except socket.timeout:  # a frame without a method (heartbeat), a partial one, or none
                return taken
        return most

    def _readable(self) -> bool:
        if getattr(self._transport, "_read_buffer", None):  # read ahead already (`_read_ahead`)
            return True
        pending = getattr(self._sock, "pending", None)  # TLS may hold decrypted bytes
        return bool(pending and pending()) or bool(select.select([self._sock], [], [], 0)[0])

    def _notify(self) -> None:
        """Called by handler threads: wake the connection thread if it sleeps (once: the
        handlers finishing after the first find it awake, and write nothing)."""
        if self._sleeping:
            self._sleeping = False
            self.wake()

    def wake(self) -> None:
        try:
            self._wake_w.send(b"!")
        except OSError:  # full (already woken) or closed (stopped)
            pass

    def _lost(self, exc: BaseException) -> None:
        self.ready = False
        lived = time.monotonic() - self._connected_at
        self._failures = 0 if lived > 5 else self._failures + 1
        in_flight = self._acks.unsettled if self._batch else self.pool.running
        if type(exc).__name__ == "ConsumerCancelled":
            log.warning("the broker cancelled the consumer of %s: the queue was deleted (by an operator, or "
                        "by Pulse for growing too large) and the messages it held are LOST; redeclaring "
                        "it with all its bindings and resuming", self._queue_name)
            return
        if isinstance(exc, PublishRefused):
            # From the binding record's publish while declaring, or the crash-loop guard's copy
            # of a returned message: a new connection declares every queue of the listener again.
            log.warning("%s; reconnecting to %s, which declares its queues again, to try again (what was not "
                        "acked comes back)", exc, self._queue_name)
            return
        log.warning("lost the connection to %s (%s: %s); reconnecting; messages in flight (%d) "
                    "will be redelivered by the broker", self.node, type(exc).__name__, exc, in_flight)

    @property
    def node(self) -> BrokerAddress:
        """The broker node in use (or about to be tried)."""
        return self.address.nodes[self._node]

    def create_connection(self) -> Any:
        return self.node.connection()

    @contextmanager
    def establish_connection(self) -> Iterator[Any]:
        with self._connect() as conn:
            yield conn

    def _connect(self) -> Any:
        """A connected kombu Connection to the node in turn, after backing off and moving on
        from node to node as attempts fail."""
        attempt = 0
        while True:
            delay = _backoff(self._failures)
            if delay and self._stop.wait(delay):
                raise _Stopped()
            conn = self.create_connection()
            try:
                # One attempt: the backoff is ours (kombu's connect() retries once after 2 s).
                conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
                return conn
            except Exception as exc:
                conn.release()
                self._connect_failed(conn, exc, attempt := attempt + 1)

    def _connect_failed(self, conn: Any, exc: Exception, attempt: int) -> None:
        if type(exc).__name__ == "AccessRefused":
            raise BrokerFailure(f"the broker at {self.address} refused user {self.address.user!r} "
                                f"(wrong user name or password?): {exc}") from None
        if not isinstance(exc, conn.connection_errors):
            raise exc
        if not self._ever_connected and attempt >= max(FIRST_CONNECT_ATTEMPTS, len(self.address.nodes)):
            raise BrokerFailure(f"cannot reach the broker at {self.address}: {exc}") from None
        self._failures += 1
        failed = self.node
        self._node = (self._node + 1) % len(self.address.nodes)
        log.warning("cannot reach the broker at %s (%s); trying %s in about %.1f s",
                    failed, exc, self.node, _backoff(self._failures))

    # -- kombu ConsumerMixin hooks ---------------------------------------------------------
    def on_connection_revived(self) -> None:
        self._epoch += 1
        self.pool.set_epoch(self._epoch)
        self._acks.reset()
        self._uncounted = 0
        self._inbox.clear()
        self._settling.forget()
        if self.guard is not None:
            self.guard.connected()
        if self._ever_connected:
            self.metrics.inc("reconnects")
        self._ever_connected = True
        self._connected_at = time.monotonic()

    def get_consumers(self, Consumer: Any, channel: Any) -> List[Any]:
        import kombu

        name = self._queue_name = self._declare(channel)
        return [Consumer(queues=[kombu.Queue(name, no_declare=True)], on_message=self._on_message,
                         prefetch_count=self._prefetch, auto_declare=False, no_ack=False)]

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self._conn, self._channel = connection, channel
        self._transport = getattr(connection.connection, "transport", None)
        self._sock = getattr(self._transport, "sock", None)
        if self._sock is not None:
            _read_ahead(self._transport)
        self.ready = True
        heartbeat = getattr(connection.connection, "heartbeat", None)  # None on memory://: nothing to beat
        log.info("consuming from %s (prefetch %s%s)", self.node, self._prefetch or "unlimited",
                 f", heartbeat {heartbeat:g} s" if heartbeat else "")

    def on_iteration(self) -> None:
        if self._inbox and not (self.guard is not None and self.guard.busy):
            self._hand_over()
        self._settle_done()
        self._settling.poll()
        if self.guard is not None and self._channel is not None and self.ready:
            self.guard.step(self, self._channel)
        self._flush_acks()
        if self.backlog is not None and self._channel is not None and self.ready:
            self.backlog.poll(self._channel)
        self._heartbeat()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        if self._conn is not None and now - self._last_heartbeat > HEARTBEAT_EVERY:
            self._last_heartbeat = now
            self._conn.heartbeat_check()

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        """Consumption was cancelled because we stop: let running handlers finish (bounded by
        the grace period), settle them, and leave everything not started on the broker."""
        self.ready = False
        self.pool.set_epoch(None)
        deadline = time.monotonic() + self._grace
        while self.pool.busy(started_only=True) and time.monotonic() < deadline:
            self._wait(connection)
            self._settle_done()
            self._heartbeat()
        self._settle_done()
        self._flush_acks(force=True)
        if self.pool.running:
            log.warning("%d handler(s) still running after the %g s grace period; their messages "
                        "stay on the broker and will be delivered again", self.pool.running, self._grace)

    # -- messages ---------------------------------------------------------------------------
    def _on_message(self, message: Any) -> None:
        self.took(message)
        if self.guard is None or not self.guard.hold(message):
            self._inbox.append(message)

    def took(self, message: Any) -> None:
        """`message` is delivered on the channel (consumed, or taken with basic.get) and owes an ack."""
        if self._batch:
            self._acks.delivered(message.delivery_tag)

    @property
    def epoch(self) -> int:
        """The current connection's number: a result of an older one is never settled."""
        return self._epoch

    def _hand_over(self) -> None:
        inbox, self._inbox = self._inbox, []
        self.pool.submit(self._epoch, inbox)

    def _settle_done(self) -> None:
        done = self.pool.done
        while done:
            epoch, message, (event, failures) = done.popleft()
            if epoch == self._epoch:  # else its channel is gone and the broker redelivers it
                self._settling.settle(message, event, failures)

    def ack(self, message: Any, counted: bool = True) -> None:
        """Acknowledge `message` (soon, possibly together with others); `counted`: in the metric
        'acked' (not a message the crash-loop guard moved to its isolation queue: it is acked
        once more after its handlers ran)."""
        if not self._batch:
            message.ack()
            self.metrics.inc("acked", int(counted))
            return
        self._acks.ack(message.delivery_tag)
        self._uncounted += not counted

    def flush_acks(self) -> None:
        """Send every ack owed now."""
        self._flush_acks(force=True)

    def _flush_acks(self, force: bool = False) -> None:
        owed = self._acks.owed
        if not owed:
            return
        if force or owed >= max(1, self._window // 4) or time.monotonic() - self._acks.first_owed_at >= ACK_DELAY:
            self.metrics.inc("acked", self._acks.flush() - self._uncounted)
            self._uncounted = 0


class _Stopped(Exception):
    """Stop was requested while waiting to reconnect."""


def _backoff(failures: int) -> float:
    """Seconds to wait before the next connection attempt: none at first, then exponential
    with jitter so that many listeners do not reconnect in lockstep."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_CAP, 0.25 * 2 ** (failures - 1)) * random.uniform(0.5, 1.5)


def _read_ahead(transport: Any) -> None:
    """Make py-amqp read the socket in large chunks.

    py-amqp asks the socket for exactly the bytes of the frame part it parses next: two or more
    recv() calls per frame, three frames per message - most of the connection thread's time at
    a few thousand messages a second (py-spy; see benchmarks/RESULTS.md). Its `_read` keeps whatever a recv
    returns beyond what it asked for in `_read_buffer` for the next frame, so a recv that asks
    for at least READ_AHEAD bytes takes many messages per system call; `_readable` looks at
    that buffer before the socket. Transports without these attributes are left as they are.
    """
    recv = getattr(transport, "_quick_recv", None)
    if recv is None or not hasattr(transport, "_read_buffer"):
        return
    transport._quick_recv = lambda wanted: recv(max(wanted, READ_AHEAD))


def _buffered_frame(transport: Any) -> Optional[Tuple[int, int, bytes]]:
    """The next AMQP frame (type, channel, payload) when py-amqp's read-ahead buffer holds all of
    it (7-byte header with the payload size, payload, end octet), taken off the buffer; else
    None, and py-amqp reads it from the socket.

    Why not py-amqp's `read_frame`: it reads a frame in three parts, and each part copies the
    rest of the buffer (up to READ_AHEAD bytes) and joins what it read so far; under a context
    manager for its timeout. Here a frame costs one slice for its payload and one for the rest,
    the buffer is up to date before the frame is handled (a handler of it may read the socket:
    a confirmed publish), and a frame with a wrong end octet is left to py-amqp to refuse.

    Example (a heartbeat, then the start of the next frame):
        >>> class T: _read_buffer = bytes([8, 0, 0, 0, 0, 0, 0, 206, 1, 0])
        >>> t = T(); _buffered_frame(t), t._read_buffer
        ((8, 0, b''), b'\\x01\\x00')
        >>> _buffered_frame(t), _buffered_frame(None)
        (None, None)
    """
    buffered = getattr(transport, "_read_buffer", None)
    if not buffered or len(buffered) < 8:
        return None
    frame_type, channel, size = unpack_from(">BHI", buffered, 0)
    end = size + 7
    if len(buffered) <= end or buffered[end] != 206:
        return None
    transport._read_buffer = buffered[end + 1:]
    return frame_type, channel, buffered[7:end]


def _empty(sock: socket.socket) -> None:
    try:
        while sock.recv(4096):
            pass
    except BlockingIOError:
        pass
