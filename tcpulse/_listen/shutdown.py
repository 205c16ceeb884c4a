"""The two-signal shutdown of a running listener.

Owns: what SIGTERM and SIGINT do while `Listener.run()` serves: the first asks the listener to
stop taking messages and finish the running ones (within its grace period), and logs what
happens next; the second exits the process at once (exit code 1), leaving unfinished messages on
the broker. Signal handlers can only be installed from the main thread, so a listener run from
another thread keeps the process's own; the previous handlers come back when the run ends.

Imports only the standard library; never the listener, kombu or requests.

Example:
    >>> before, stopping = signal.getsignal(signal.SIGTERM), threading.Event()
    >>> restore = install_shutdown_signals(stopping.set, stopping.is_set, grace=25.0)
    >>> signal.getsignal(signal.SIGTERM).__name__
    'on_signal'
    >>> restore(); signal.getsignal(signal.SIGTERM) is before
    True
"""
import logging
import os
import signal
import threading
from typing import Any, Callable

log = logging.getLogger("tcpulse.listener")


def install_shutdown_signals(stop: Callable[[], None], stopping: Callable[[], bool],
                             grace: float) -> Callable[[], None]:
    """Handle SIGTERM and SIGINT with `stop()` (or an immediate exit once `stopping()`);
    returns the function that puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stopping():
            log.warning("second %s: exiting now; unfinished messages stay on the broker", name)
            logging.shutdown()
            os._exit(1)
        log.info("%s: no new messages; finishing running handlers (up to %g s), then exiting; "
                 "send it again to exit at once", name, grace)
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return restore
