"""How tcpulse logs when nobody configured logging for it.

Owns: the format of tcpulse's log lines on stderr (`tcpulse listen` uses it too), and giving a
listener run by `python my_handlers.py` (no logging set up) the same lines for the length of
its run. Imports only the standard library.

Example:
    >>> logging.Formatter(LOG_FORMAT).format(logging.makeLogRecord(
    ...     {"name": "tcpulse.listener", "levelname": "INFO", "msg": "consuming"})).split(" ", 2)[2]
    'INFO tcpulse.listener: consuming'
"""
import logging
from typing import Callable

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
