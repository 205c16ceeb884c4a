"""Opt-in checks of message bodies against their exchange's JSON schema: `Listener(validate=...)`.

Owns: the validation modes ("off", the default; "warn": log what does not match, handle the
message anyway; "dead-letter": park it with the JSON path and the rule it breaks as the reason),
finding the schema of a message's exchange in the active reference set (so a pulled set checks
against its own deployment's schemas), and `InvalidBody`, the `Poison` a dead-lettered body
raises. The live path (`tcpulse.messages`) and the test harness (`tcpulse.testing`) both check
through `BodyValidation.check`.

Pure module: imports only the standard library and tcpulse's pure modules (never kombu or requests).

Example:
    >>> from tcpulse import QueueEvents
    >>> check = BodyValidation("dead-letter")
    >>> try:
    ...     check.check({"version": 1}, QueueEvents.taskCompleted)
    ... except InvalidBody as exc:
    ...     print(exc.reason)
    body does not match /schemas/queue/v1/task-completed-message.json: $: required property 'status' is missing (rule: required)
"""
import logging
import threading
import time
from typing import Any, Dict, Iterable, Optional, Tuple

from tcpulse._api.exchanges import Exchange
from tcpulse._listen.outcome import Poison

log = logging.getLogger("tcpulse.listener")

MODES = ("off", "warn", "dead-letter")
WARN_EVERY = 60.0  # seconds between warnings about the same problem on the same exchange


class InvalidBody(Poison):
    """A body its exchange's schema does not accept; the reason names the JSON path and the rule."""


def check_mode(value: Any) -> str:
    """`value` if it is a validation mode, else a ValueError naming the modes.

    Example:
        >>> check_mode("warn")
        'warn'
    """
    if value not in MODES:
        raise ValueError(f"validate must be one of {', '.join(repr(m) for m in MODES)} (got {value!r})")
    return str(value)


class BodyValidation:
    """One listener's body checks in `mode`, against the active reference set's schemas."""

    def __init__(self, mode: str = "off") -> None:
        self.mode = check_mode(mode)
        self._warned: Dict[Tuple[str, str, str], float] = {}
        self._checks: Dict[str, Any] = {}  # schema id -> its compiled check
        self._lock = threading.Lock()

    def prepare(self, exchanges: Iterable[Optional[Exchange]]) -> None:
        """Read and compile the schemas of `exchanges` now, so that a set without schemas (such as
        legacy-2018) is one clear error when the listener starts, not one per message."""
        if self.mode != "off":
            for exchange in exchanges:
                if exchange is not None and exchange.schema:
                    self._checker(exchange.schema)

    def check(self, body: Any, exchange: Optional[Exchange]) -> None:
        """Raise InvalidBody ("dead-letter") or log a warning ("warn") when `body` does not match
        the schema of `exchange`; nothing for an exchange without a schema (a user's own)."""
        if self.mode == "off" or exchange is None or not exchange.schema:
            return
        problem = self._checker(exchange.schema)(body, ())
        if problem is None:
            return
        reason = f"body does not match {exchange.schema}: {problem}"
        if self.mode == "dead-letter":
            raise InvalidBody(reason)
        key = (exchange.exchange, problem.where, problem.rule)
        now = time.monotonic()
        with self._lock:  # one drifted field must not flood the log: once a minute per exchange and problem
            if now - self._warned.get(key, -WARN_EVERY) < WARN_EVERY:
                return
            self._warned[key] = now
        log.warning("message from %s: %s; handled anyway (validate='warn'); the same problem on this "
                    "exchange is logged at most once every %g s", exchange.exchange, reason, WARN_EVERY)

    def _checker(self, sid: str) -> Any:
        found = self._checks.get(sid)
        if found is None:
            from tcpulse._api.schemas import checker
            from tcpulse.references import active_set

            found = self._checks[sid] = checker(active_set(), sid)
        return found
