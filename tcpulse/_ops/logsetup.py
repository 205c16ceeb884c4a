"""How tcpulse logs when nobody configured logging for it.

Owns: the format of tcpulse's log lines on stderr (`tcpulse listen` uses it too), the optional
one-JSON-object-per-line format (`JsonFormatter`, `--log-json`), and giving a listener run by
`python my_handlers.py` (no logging set up) the same lines for the length of its run, and a
configuration error that ends such a script as one line (`one_line_if_uncaught`). Imports only the
standard library.

Example:
    >>> logging.Formatter(LOG_FORMAT).format(logging.makeLogRecord(
    ...     {"name": "tcpulse.listener", "levelname": "INFO", "msg": "consuming"})).split(" ", 2)[2]
    'INFO tcpulse.listener: consuming'
"""
import json
import logging
import sys
import time
from typing import Any, Callable, Dict

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_stderr_unless_configured() -> Callable[[], None]:
    """When the application configured no logging (`python my_handlers.py` calling `app.run()`),
    log tcpulse's info lines to stderr for the run, as `tcpulse listen` does: otherwise a listener
    would say nothing, not even that it connected. Returns what undoes it."""
    logger = logging.getLogger("tcpulse")
    if logger.hasHandlers():  # the application's (or the CLI's) logging decides
        return lambda: None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET:
        logger.setLevel(logging.INFO)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return undo


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
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
