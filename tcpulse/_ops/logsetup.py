"""How tcpulse logs when nobody configured logging for it.

Owns: the format of tcpulse's log lines on stderr (`tcpulse listen` uses it too), the optional
one-JSON-object-per-line format (`JsonFormatter`, `--log-json`), giving a listener run by
`python my_handlers.py` (no logging set up) the same lines for the length of its run, and
saying which listener each of tcpulse's log lines comes from (`speaking_for`): threads and
tasks working for a listener carry its label in a context variable, and a log record made
there gets the attribute `listener` and, for tcpulse's own loggers while several listeners run
in the process (`running_listeners`), the message prefix `[label] ` (with one, every line is
its). Done in the log record factory, not in a handler or a filter, so that it holds whatever
logging the application configured. Also a configuration error that ends a script as one line
(`one_line_if_uncaught`). Imports only the standard library.

Example:
    >>> logging.Formatter(LOG_FORMAT).format(logging.makeLogRecord(
    ...     {"name": "tcpulse.listener", "levelname": "INFO", "msg": "consuming"})).split(" ", 2)[2]
    'INFO tcpulse.listener: consuming'
"""
import contextvars
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The label of the listener the current thread or task works for (None: none).
_listener: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar("tcpulse_listener", default=None)
_factory_lock = threading.Lock()
_installed = False
_running = 0  # listeners running in this process


def running_listeners(change: int) -> None:
    """Count listeners that start (+1) and stop (-1) running in this process."""
    global _running
    with _factory_lock:
        _running += change


def speaking_for(label: str) -> None:
    """From now on, in this thread (or task) and what it starts with its context, log records
    name listener `label` (attribute `listener`; and a message prefix while several run).

    Example:
        >>> import io
        >>> stream = io.StringIO(); handler = logging.StreamHandler(stream)
        >>> logging.getLogger("tcpulse.example").addHandler(handler)
            >>> running_listeners(+2)
        >>> contextvars.copy_context().run(lambda: (speaking_for("ci"), logging.getLogger(
        ...     "tcpulse.example").warning("consuming %s", "q")))
        (None, None)
        >>> running_listeners(-2); stream.getvalue()
        '[ci] consuming q\\n'
    """
    _install_factory()
    _listener.set(label)


def _install_factory() -> None:
    global _installed
    with _factory_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            label = _listener.get()
            if label is not None:
                record.listener = label
                if _running > 1 and record.name.startswith("tcpulse") and isinstance(record.msg, str):
                    # %-escaped: the label goes through the message's own %-formatting.
                    record.msg = "[" + label.replace("%", "%%") + "] " + record.msg
            return record
        logging.setLogRecordFactory(factory)
        _installed = True


_stderr_lock = threading.Lock()
_stderr_users = 0
_stderr_undo: Optional[Callable[[], None]] = None


def log_to_stderr_unless_configured() -> Callable[[], None]:
    """When the application configured no logging (`python my_handlers.py` calling `app.run()`),
    log tcpulse's info lines to stderr for the run, as `tcpulse listen` does: otherwise a listener
    would say nothing, not even that it connected. Returns what undoes it; several listeners
    running at once share the one handler, which goes when the last of them is done."""
    global _stderr_users, _stderr_undo
    with _stderr_lock:
        _stderr_users += 1
        if _stderr_users == 1:
            _stderr_undo = _add_stderr_handler()
    released: List[bool] = []

    def undo() -> None:
        global _stderr_users, _stderr_undo
        with _stderr_lock:
            if released:
                return
            released.append(True)
            _stderr_users -= 1
            if _stderr_users == 0 and _stderr_undo is not None:
                _stderr_undo()
                _stderr_undo = None
    return undo


def _add_stderr_handler() -> Optional[Callable[[], None]]:
    logger = logging.getLogger("tcpulse")
    if logger.hasHandlers():  # the application's (or the CLI's) logging decides
        return None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)

    def remove() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return remove


def one_line_if_uncaught(error: BaseException) -> None:
    """Should `error` (about to be raised) end the program uncaught, print it as one line
    (`BrokerFailure: exchange ... does not exist ...`) instead of a traceback through tcpulse's
    internals: it names what to fix, and the frames would not help. Any other exception, or this
    one caught and printed by the application, is left as it is. Main thread only, as Python's
    hook is.
    """
    previous = sys.excepthook

    def hook(kind: Any, value: BaseException, traceback: Any) -> None:
        if value is not error:
            previous(kind, value, traceback)
            return
        print(f"{type(value).__name__}: {value}", file=sys.stderr, flush=True)
    sys.excepthook = hook


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (time, level, logger, message, plus `exc` when present).

    Example:
        >>> record = logging.LogRecord("tcpulse", logging.WARNING, __file__, 1, "queue %s backs up", ("q",), None)
        >>> json.loads(JsonFormatter().format(record))["message"]
        'queue q backs up'
    """

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        line: Dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        listener = getattr(record, "listener", None)
        if listener is not None:
            line["listener"] = listener
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
