"""`Listener`: the app object users register handlers on, and `run()` that serves them.

Owns: the decorator registry (`Listener.on`, `add_handler`, module-level `on` on a default
listener), the listener's options, its queue's name and declaration (durable
`queue/<user>/<name>`, or an exclusive auto-delete queue when unnamed; what an earlier run bound
and no handler declares now is removed by `tcpulse._listen.stale`), exchanges declared passively (or
for real with `declare_exchanges=True`, for local development), wiring a run together (signals:
`tcpulse._listen.shutdown`), readiness and metrics for health checks.

The consume loop itself lives in `tcpulse._listen.consumer`; a message's path from broker message to
handlers and back to broker actions in `tcpulse._listen.messages`; dispatch rules in `tcpulse._listen.dispatch`.
Imports kombu (through the consumer) lazily at `run()`; never imports requests.

Example:
    >>> from tcpulse import Listener, QueueEvents
    >>> app = Listener("task-watcher", broker="amqp://alice:secret@localhost:5672//")
    >>> @app.on(QueueEvents.taskCompleted, taskGroupId="fQ3")
    ... def completed(event):
    ...     pass
    >>> app.queue, [b.routing_key_pattern for b in app.bindings()]
    ('queue/alice/task-watcher', ['primary.*.*.*.*.*.*.*.fQ3.#'])
"""
import functools
import logging
import threading
import uuid
from typing import Any, Callable, Dict, FrozenSet, List, Literal, Optional, Sequence, TypeVar, Union

from tcpulse._listen.backlog import DEFAULT_THRESHOLD, BacklogWatch
from tcpulse._broker.connection import BrokerAddress, resolve_broker
from tcpulse._listen.dispatch import Event, Handler, Registry, bindings_for
from tcpulse._listen.outcome import DEFAULT_MAX_BODY, DEFAULT_RETRY_DELAYS, RetryPolicy
from tcpulse._api.exchanges import Binding
from tcpulse._ops.metrics import Metrics
from tcpulse._ops.logsetup import log_to_stderr_unless_configured, one_line_if_uncaught
from tcpulse.errors import BrokerFailure
from tcpulse._listen.messages import MessageHandling
from tcpulse._listen.running import HandlerRuns, Watchdog
from tcpulse._listen.topology import ListenerNames, check_queue_type
from tcpulse._listen.bodycheck import BodyValidation, check_mode
from tcpulse._listen.declaring import adopt, declare
from tcpulse._listen.options import check_name, exchanges_to_declare, positive, seconds_or_none

log = logging.getLogger("tcpulse.listener")

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_GRACE = 25.0  # below Kubernetes' default 30 s, so we finish before a SIGKILL
DEFAULT_SLOW_HANDLER = 60.0  # seconds; a Taskcluster REST call retried to the end takes about 40


class Listener:
    """Binds one queue to every handler's bindings and runs each message's matching handlers.

    - `name`: the queue is the durable `queue/<pulse user>/<name>`; without a name, an exclusive
      queue that disappears with the connection (messages published while disconnected are lost).
    - `broker`: a URL (amqp://, amqps://, memory://); default PULSE_URL, then
      PULSE_USERNAME/PULSE_PASSWORD (+ PULSE_HOST) over amqps, then the local guest broker.
    - `concurrency`: messages handled at once (default 1 keeps order): handler threads, or, when
      any handler is `async def`, coroutines in flight on the listener's event loop (its sync
      handlers then run on up to that many threads); `prefetch`: unacked messages the broker
      may send ahead (default max(10, 4 x concurrency)).
    - `declare_exchanges`: True creates the exchanges bound to (local development); by default
      they are only checked, as a Pulse user may not create Taskcluster's (memory:// creates
      them). A collection of exchange names (or entries) creates just those: the user's own
      `exchange/<user>/...`, bound beside Taskcluster's, which stay checked.
    - `auto_delete`: the named queue goes away when its last consumer does (a development
      queue; its retries and dead letters stay). An unnamed listener's queue always does.
    - `max_attempts`, `retry_delays`, `max_length`: delivery guarantees (see `tcpulse._listen.delivery`).
    - `max_body_bytes`: a longer body is dead-lettered unread (default 1 MiB); a compressed one
      always is (inflating it could take gigabytes).
    - `queue_type`: "classic" (default) or "quorum" (replicated over a RabbitMQ cluster; named
      listeners only); `delivery_limit` (default 20, either type): a message delivered that many
      times without an ack (its process died on it each time, the last time running it alone)
      goes to the dead-letter queue; the messages prefetched with it do not (`tcpulse._listen.isolation`).
    - `adopt`: take over a queue of this name that another tool declared (or that has other
      arguments), in place and keeping its messages, and move it to tcpulse's layout.
    - `health_port`: serve /live, /ready and /metrics on 127.0.0.1.
    - `shutdown_grace`: seconds running handlers get to finish after SIGTERM/SIGINT.
    - `slow_handler_warning`: seconds after which a handler still running on a message is
      warned about, once per handler and message (None: never).
    - `validate`: check each body against its exchange's JSON schema (from the active reference
      set): "off" (default), "warn" (log what does not match, handle it anyway) or "dead-letter"
      (park it, the reason naming the JSON path and the rule).

    Example:
        >>> app = Listener(broker="memory://", concurrency=4)
        >>> app.queue.startswith("queue/guest/anonymous-"), app.prefetch
        (True, 16)
    """

    def __init__(self, name: Optional[str] = None, broker: Optional[str] = None, *,
                 concurrency: int = 1, prefetch: Optional[int] = None,
                 declare_exchanges: Optional[bool] = None, max_attempts: int = 5,
                 retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS, max_length: Optional[int] = None,
                 health_port: Optional[int] = None, shutdown_grace: float = DEFAULT_GRACE,
                 queue_type: str = "classic", delivery_limit: Optional[int] = None,
                 slow_handler_warning: Optional[float] = DEFAULT_SLOW_HANDLER, auto_delete: bool = False,
                 validate: Literal["off", "warn", "dead-letter"] = "off",
                 max_body_bytes: int = DEFAULT_MAX_BODY, adopt: bool = False) -> None:
        self.metrics = Metrics()
        self._runs = HandlerRuns(self.metrics, seconds_or_none("slow_handler_warning", slow_handler_warning))
        self._registry = Registry()
        self._stop = threading.Event()
        self._running = False
        self._consumer: Any = None
        self._loop: Any = None  # the application's event loop, under serve()
        self._anonymous = "anonymous-" + uuid.uuid4().hex[:12]
        self.name: Optional[str] = None
        self._given_broker: Optional[BrokerAddress] = None
        self.concurrency = 1
        self.prefetch = 1
        self._explicit_prefetch: Optional[int] = None
        self.declare_exchanges: Union[None, bool, FrozenSet[str]] = None
        self.auto_delete = False
        self.max_attempts = max_attempts
        self.retry_delays = tuple(retry_delays)
        self.max_length: Optional[int] = None
        self.max_body_bytes = DEFAULT_MAX_BODY
        self._delivery: Any = None
        self.health_port = health_port
        # Messages waiting in the queue above which a warning is logged (0: never).
        self.backlog_warning = DEFAULT_THRESHOLD
        self.shutdown_grace = shutdown_grace
        self.queue_type = "classic"
        self.delivery_limit: Optional[int] = None
        self._address_or_error: Any = None
        self._log_summary = True  # False when the caller prints the run's summary itself
        self.validate = "off"
        self.adopt = False
        self.configure(name=name, broker=broker, concurrency=concurrency, prefetch=prefetch,
                       queue_type=queue_type, delivery_limit=delivery_limit, max_length=max_length,
                       declare_exchanges=declare_exchanges, auto_delete=auto_delete, validate=validate,
                       max_body_bytes=max_body_bytes, adopt=adopt)

    def configure(self, **options: Any) -> "Listener":
        """Change options before `run()` (the CLI applies its flags this way); `None` keeps
        the current value.

        Example:
            >>> Listener("a").configure(name="b", concurrency=8).queue.endswith("/b")
            True
        """
        self._check_not_running("change options")
        unknown = set(options) - {"name", "broker", "concurrency", "prefetch", "declare_exchanges",
                                  "health_port", "shutdown_grace", "queue_type", "delivery_limit",
                                  "max_attempts", "retry_delays", "max_length", "auto_delete", "validate",
                                  "max_body_bytes", "adopt"}
        if unknown:
            raise TypeError(f"unknown Listener option(s): {', '.join(sorted(unknown))}")
        for key in ("name", "health_port", "shutdown_grace", "queue_type", "delivery_limit", "max_attempts",
                    "auto_delete", "adopt"):
            if options.get(key) is not None:
                setattr(self, key, options[key])
        if options.get("retry_delays") is not None:
            self.retry_delays = tuple(options["retry_delays"])
        if options.get("max_length") is not None:
            self.max_length = positive("max_length", options["max_length"])
        if options.get("max_body_bytes") is not None:
            self.max_body_bytes = positive("max_body_bytes", options["max_body_bytes"])
        if options.get("declare_exchanges") is not None:
            self.declare_exchanges = exchanges_to_declare(options["declare_exchanges"])
        if options.get("validate") is not None:
            self.validate = check_mode(options["validate"])
        self._policy = RetryPolicy(self.max_attempts, self.retry_delays)
        check_name(self.name)
        if self.adopt and self.name is None:
            raise ValueError("adopt=True needs a named Listener: it adopts the queue queue/<user>/<name> "
                             "(Listener('my-listener', adopt=True), or tcpulse listen --queue NAME --adopt)")
        check_queue_type(self.queue_type, self.delivery_limit, named=self.name is not None,
                         auto_delete=self.auto_delete)
        if options.get("broker") is not None:
            # Parsed at once and kept only parsed: the raw URL holds the password in plain text.
            self._given_broker = resolve_broker(options["broker"], source="Listener(broker=...)")
        self._resolve_broker()
        if not isinstance(self._address_or_error, ValueError):
            ListenerNames(self.queue).check_lengths(self.retry_delays)
        if options.get("concurrency") is not None:
            self.concurrency = positive("concurrency", options["concurrency"])
        if options.get("prefetch") is not None:
            self._explicit_prefetch = positive("prefetch", options["prefetch"], least=0)
            if self._explicit_prefetch == 0:
                log.warning("prefetch 0: the broker sends every waiting message at once, with no limit; "
                            "they all wait in this process's memory, and all go back if it dies")
        # Enough prefetched work to keep every thread busy while acks travel back.
        self.prefetch = (self._explicit_prefetch if self._explicit_prefetch is not None
                         else max(10, 4 * self.concurrency))
        return self

    # -- registration ---------------------------------------------------------------------
    def on(self, *targets: Any, route: Any = None, **fields: Any) -> Callable[[F], F]:
        """Decorator: run the function for messages matching `targets` (Exchanges with
        routing-key `fields`, Bindings, or several of either; `route='index.project.#'`
        binds that CC'd route). Checks everything at once and returns the function unchanged.

        Example:
            >>> from tcpulse import QueueEvents
            >>> app = Listener("w")
            >>> @app.on(QueueEvents.taskDefined, route="index.project.#")
            ... def defined(event): ...
            >>> defined.__name__, app.bindings()[0].routing_key_pattern
            ('defined', 'route.index.project.#')
        """
        bindings = bindings_for(targets, route, fields)

        def register(func: F) -> F:
            self._add(func, bindings)
            return func
        return register

    def add_handler(self, func: Callable[[Event], Any], *targets: Any, route: Any = None,
                    **fields: Any) -> Handler:
        """`on` without the decorator: `app.add_handler(func, QueueEvents.taskFailed)`.

        Example:
            >>> from tcpulse import QueueEvents
            >>> Listener("w").add_handler(print, QueueEvents.taskFailed).name
            'builtins.print'
        """
        return self._add(func, bindings_for(targets, route, fields))

    def _add(self, func: Callable[[Event], Any], bindings: List[Binding]) -> Handler:
        self._check_not_running(f"register handler {getattr(func, '__qualname__', func)!r}")
        return self._registry.add(func, bindings)

    def _check_not_running(self, what: str) -> None:
        if self._running:
            raise RuntimeError(f"cannot {what}: {self!r} is already running; register handlers "
                               "and set options before calling run()")

    @property
    def handlers(self) -> List[Handler]:
        return list(self._registry.handlers)

    @property
    def registry(self) -> Registry:
        """The handler registry live delivery selects from (the test harness uses the same one)."""
        return self._registry

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy `max_attempts` and `retry_delays` make."""
        return self._policy

    def retry_queues(self) -> List[str]:
        """The holding queues retried copies of this listener's messages wait in."""
        delivery = self._delivery or self._new_delivery()
        return sorted({delivery.holding_queue(a) for a in range(2, self._policy.max_attempts + 1)})

    def _new_delivery(self) -> Any:
        from tcpulse._listen.delivery import Delivery

        return Delivery(self.queue, self._policy, self.max_length, exclusive=self.name is None,
                        queue_type=self.queue_type, delivery_limit=self.delivery_limit)

    def bindings(self) -> List[Binding]:
        """Every (exchange, pattern) binding of the queue, once each, in registration order."""
        return self._registry.bindings()

    @property
    def broker(self) -> BrokerAddress:
        """Where the listener connects (its `str()` and `repr()` hide the password).

        Example:
            >>> str(Listener("w", broker="amqp://alice:secret@h:5672//").broker)
            'amqp://alice:***@h:5672//'
        """
        return self._address

    def _resolve_broker(self) -> None:
        # A bad PULSE_URL (or half of PULSE_USERNAME/PASSWORD) is kept, not raised, until the
        # broker is needed: a script builds its Listener at import, before `tcpulse listen
        # --broker` can say which broker to use instead.
        try:
            self._address_or_error = resolve_broker(self._given_broker)
        except ValueError as exc:
            self._address_or_error = exc

    @property
    def _address(self) -> BrokerAddress:
        if isinstance(self._address_or_error, ValueError):
            raise ValueError(str(self._address_or_error))
        return self._address_or_error

    @property
    def queue(self) -> str:
        return ListenerNames.of(self._address.user, self.name or self._anonymous).queue

    def __repr__(self) -> str:
        broker = getattr(self._address_or_error, "redacted", "<invalid>")
        return f"Listener({self.name!r}, broker={broker!r})"

    # -- running --------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """How log lines and /metrics name this listener: its name (an unnamed one's generated
        name); `tcpulse.run` prefixes the Pulse user where listeners run together share a name.

        Example:
            >>> Listener("ingest").label
            'ingest'
        """
        return self.name or self._anonymous

    def run(self) -> None:
        """Consume until SIGTERM/SIGINT (or `stop()`), then finish running handlers within
        the grace period, ack them, and return; whatever was not started stays on the broker.
        A second signal exits the process at once (exit code 1). Raises `BrokerFailure` for
        what retrying cannot fix: a broker unreachable at start, refused credentials or
        permissions, a missing exchange. `tcpulse.run(a, b)` runs several listeners this way.

        Example (needs a broker):
            >>> app.run()   # doctest: +SKIP
        """
        from tcpulse._listen.runner import run

        run(self)

    async def serve(self) -> None:
        """Run on the caller's event loop until `stop()` or until cancelled: `async def` handlers
        run on that loop (next to the application's own clients and queues), plain ones on up to
        `concurrency` threads; the broker connection has a thread of its own. Cancelling drains
        as SIGTERM does (running handlers finish within the grace period, then CancelledError is
        raised); no signal handler is installed, the application owns them. Raises what `run()`
        raises.

        Example (needs a broker):
            >>> task = asyncio.create_task(app.serve())   # doctest: +SKIP
            >>> task.cancel(); await asyncio.wait([task])   # doctest: +SKIP
        """
        from tcpulse._listen.runner import serve

        await serve(self)

    def _check_startable(self) -> None:
        """Raise what keeps this listener from starting (`tcpulse.run` checks every one first)."""
        if not self._registry.handlers:
            raise RuntimeError(f"{self!r} has no handlers: register one with @app.on(...) before run()")
        self._check_not_running("run again")
        self._address  # noqa: B018 - a bad broker URL is raised here, before any thread starts

    def _prepare(self, label: str, loop: Any = None) -> None:
        """Make this run's state; its async handlers go to `loop` (None: a loop of its own)."""
        self._check_startable()
        self._running = True
        self._loop = loop
        self.metrics.labels = {"listener": label}

    def _consume(self) -> None:
        """Adopt the queue when asked, then consume until stopped, on this thread (whose context
        names the listener in log lines: threads it starts inherit it)."""
        from tcpulse._listen.consumer import Consumer
        from tcpulse._listen.isolation import Isolation

        self._delivery = self._new_delivery()
        if self.adopt and self.name is not None and not self._address.is_memory:
            adopt(self)
        validation = BodyValidation(self.validate)
        validation.prepare(self._registry.source(b.exchange) for b in self.bindings())
        handling = MessageHandling(self._registry, self._delivery, self._runs, self._policy, queue=self.queue,
                                   name=self.name, concurrency=self.concurrency, validation=validation,
                                   max_body_bytes=self.max_body_bytes, loop=self._loop)
        self._consumer = Consumer(self._address, functools.partial(declare, self), handling.new_pool, handling.settle,
                                  prefetch=self.prefetch, grace=self.shutdown_grace,
                                  metrics=self.metrics, stop=self._stop)
        self._consumer.guard = Isolation(self._delivery, self.metrics, self.concurrency)
        self._consumer.backlog = BacklogWatch(self.queue, self.backlog_warning, metrics=self.metrics)
        watchdog = Watchdog(self._runs, self._consumer.pool).start()
        try:
            self._consumer.run()
            # `tcpulse listen` prints the summary itself, on stdout: once is enough.
            log.info("stopped listening on %s%s", self.queue, f": {self.metrics.summary()}" if self._log_summary else "")
        except BrokerFailure as exc:  # a configuration error: one line says what to fix
            one_line_if_uncaught(exc)
            raise
        finally:
            watchdog.stop()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called (or a signal asked the run to drain)."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask `run()` to drain and return (thread-safe; what the first signal does).

        Example:
            >>> app = Listener("w")
            >>> threading.Timer(60, app.stop).start()   # doctest: +SKIP
        """
        self._stop.set()
        if self._consumer is not None:
            self._consumer.wake()

    def is_ready(self) -> bool:
        """Connected to the broker and consuming (for a readiness probe).

        Example:
            >>> Listener("w").is_ready()
            False
        """
        return self._consumer is not None and self._consumer.ready and not self._stop.is_set()

    def dead_letters(self, limit: int = 100) -> List[Dict[str, Any]]:
        """Up to `limit` messages parked in `queue/<user>/<name>/dead-letter`, oldest first, each
        with why it failed, when, after how many attempts and where it came from; they stay there.

        Example (needs a broker where the listener has run):
            >>> [d["reason"] for d in Listener("task-watcher").dead_letters()]   # doctest: +SKIP
            ['failed 5 of 5 attempts']
        """
        from tcpulse._listen.deadletters import list_dead_letters
        from tcpulse._listen.delivery import broker_connection
        with broker_connection(self._address) as connection:
            return list_dead_letters(connection, self.queue, limit)

    def requeue_dead_letters(self, limit: Optional[int] = None) -> int:
        """After fixing the cause: send the dead letters (all, or the `limit` oldest) back to the
        listener's queue as attempt 1 of the handlers that failed; returns how many.

        Example (needs a broker where the listener has run):
            >>> Listener("task-watcher").requeue_dead_letters()   # doctest: +SKIP
            3
        """
        from tcpulse._listen.deadletters import requeue_dead_letters
        from tcpulse._listen.delivery import broker_connection
        with broker_connection(self._address) as connection:
            return requeue_dead_letters(connection, self.queue, limit)


_default: Optional[Listener] = None


def reset_default_listener() -> None:
    """Forget the default listener, so that the next `tcpulse.on` starts a fresh one (loading
    several handler scripts in one process must not mix their handlers)."""
    global _default
    _default = None


def default_listener() -> Listener:
    """The listener that module-level `tcpulse.on` registers on and `tcpulse listen` runs.

    Example:
        >>> default_listener() is default_listener()
        True
    """
    global _default
    if _default is None:
        _default = Listener()
    return _default


def on(*targets: Any, route: Any = None, **fields: Any) -> Callable[[F], F]:
    """`Listener.on` for the default listener: `@tcpulse.on(QueueEvents.taskCompleted)`.

    Example:
        >>> import tcpulse
        >>> @tcpulse.on(tcpulse.QueueEvents.taskException)
        ... def exception(event): ...
        >>> exception in [h.func for h in default_listener().handlers]
        True
    """
    return default_listener().on(*targets, route=route, **fields)
