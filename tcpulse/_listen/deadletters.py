"""A listener's dead letters: listing and requeueing them, believing only what tcpulse recorded.

Owns: `list_dead_letters`, `requeue_dead_letters` and how one letter is read (`read_letter`):
where it came from, why it is there, and whether that can be believed.

A letter reaches `queue/<user>/<name>/dead-letter` in one of three ways:
- parked by tcpulse (a handler failed for good, the body was poison): published through the
  listener's own delivery exchange, where only its Pulse user may publish, with the origin and
  failures in `tcpulse-*` headers and without `x-death` (tcpulse drops it from every copy);
- dropped by the broker (`max_length` overflow, a quorum queue's `delivery_limit`) after tcpulse
  had published it itself (a retry that came back): the newest `x-death` entry names the
  listener's queue and, as the exchange it was published to, the listener's private delivery
  exchange, whose name no publisher knows; its `tcpulse-*` headers are tcpulse's own;
- dropped by the broker straight from a bound exchange: its only origin is that `x-death` entry,
  which the publisher may have written beforehand (RabbitMQ updates an entry for the same queue
  and reason in place, keeping its `exchange` and `routing-keys`). Its origin is unverified: the
  listing shows the claim as `claimed_origin`, and a requeue leaves the letter where it is, since
  sending it to the handlers of the exchange it names would let anyone who can publish to one
  bound exchange impersonate another. Its queue and reason are the broker's own (an entry is
  matched on them), so the reason is given.
A letter whose headers cannot be read (say, a `tcpulse-failures` that is not a JSON object) is
listed with `unreadable` saying why and skipped by a requeue; neither ever stops on it.

Imports kombu through the connection it is given; never requests or the listener.

Example:
    >>> import kombu
    >>> from tcpulse._listen.delivery import Delivery
    >>> from tcpulse._listen.outcome import RetryPolicy
    >>> with kombu.Connection("memory:///doc-list", transport="tcpulse._broker.broker:Transport") as conn:
    ...     channel = conn.channel()
    ...     _ = channel.queue_declare("queue/alice/watcher")
    ...     Delivery("queue/alice/watcher", RetryPolicy()).declare(channel)
    ...     list_dead_letters(conn, "queue/alice/watcher"), requeue_dead_letters(conn, "queue/alice/watcher")
    ([], 0)
"""
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

import kombu
from amqp.exceptions import NotFound

from tcpulse._listen.delivery import Delivery
from tcpulse.errors import BrokerFailure
from tcpulse._listen.layout import await_count, layout_lock, locate, peek_record
from tcpulse._listen.outcome import (H_DEAD_AT, H_EXCHANGE, H_FAILURES, H_REASON, Origin, Poison, RetryPolicy, decode_body,
                      header_strings, header_text, trusted_headers)
from tcpulse._listen.topology import RETURN_KEY, ListenerNames, limit_of_key

log = logging.getLogger("tcpulse.listener")

Report = Callable[[str], None]


@dataclass
class Letter:
    """One dead letter as read. `origin` is None when it cannot be believed (`claim` then holds
    what the letter says); `headers` hold tcpulse's own only when they can be; `unreadable` says
    why the letter cannot be requeued as it is (None: it can)."""

    origin: Optional[Origin]
    headers: Dict[str, Any]
    reason: str
    failures: Optional[Dict[str, Any]] = None
    claim: Optional[Origin] = None
    unreadable: Optional[str] = None
    record: Dict[str, Any] = field(default_factory=dict)


def list_dead_letters(connection: Any, queue: str, limit: int = 100) -> List[Dict[str, Any]]:
    """Up to `limit` dead letters of listener queue `queue`, oldest first, left in place, as
    plain data: `exchange`, `routing_key`, `routes`, `attempts`, `reason`, `failures`,
    `dead_lettered_at`, `origin_verified`, `body` (or `body_text`), and `claimed_origin` for a
    letter whose origin is unverified, `unreadable` for one whose headers cannot be read."""
    names = locate(connection, ListenerNames(queue))
    with _DeadLetters(connection, names) as letters:
        # Closing the channel without acking puts every message back where it was.
        records = [read_letter(message, names).record for message in letters.take(limit)]
    await_count(connection, letters.name, letters.count)
    return records


def requeue_dead_letters(connection: Any, queue: str, limit: Optional[int] = None,
                         report: Report = log.warning) -> int:
    """Send the dead letters of `queue` (at most `limit` of the oldest) back to it as a fresh
    first attempt of the handlers that failed; return how many were sent. Letters whose origin is
    unverified or whose headers cannot be read stay where they are, and `report` says how many
    and why. Run it after fixing the cause."""
    names = ListenerNames(queue)
    with layout_lock(connection, names):
        names = names.with_secret(peek_record(connection, names).secret)
        delivery = Delivery(queue, RetryPolicy(), secret=names.secret)
        sent, left = 0, []
        with _DeadLetters(connection, names) as letters:
            for message in letters.take(limit):
                letter = read_letter(message, names)
                if letter.origin is None or letter.unreadable:
                    left.append(letter.unreadable or "origin unverified")
                    continue
                delivery._publish(message, RETURN_KEY, letter.origin.requeue_headers(letter.headers))
                message.ack()
                sent += 1
    if left:
        unverified = left.count("origin unverified")
        report(f"left {len(left)} dead letter(s) in {names.dead_letter_queue}: "
               + "; ".join(filter(None, [
                   f"{unverified} dropped by the broker straight from a bound exchange, whose origin is only what "
                   "their publisher wrote in x-death (see claimed_origin in --list)" if unverified else "",
                   *sorted({f"unreadable: {why}" for why in left if why != "origin unverified"})])))
    return sent


def read_letter(message: Any, names: ListenerNames) -> Letter:
    """What dead letter `message` of the listener `names` belong to says, as far as it can be
    believed (see the module docstring); never raises."""
    try:
        letter = _read(message, names)
    except Exception as exc:  # anything a publisher managed to put in it: report, never stop
        letter = Letter(None, {}, "?", unreadable=f"{type(exc).__name__}: {exc}")
    letter.record = _record(message, letter)
    return letter


def _read(message: Any, names: ListenerNames) -> Letter:
    headers = message.headers or {}
    info = message.delivery_info
    death = _first_death(headers)
    if "x-death" not in headers:  # parked by tcpulse: believed when it came through our exchange
        delivered_by = header_text(info.get("exchange", ""))
        trusted = trusted_headers(headers, delivered_by, (delivered_by,) if names.owns(delivered_by) else ())
        if H_EXCHANGE not in trusted:
            return Letter(None, trusted, "?", unreadable="no origin recorded by tcpulse")
        return _recorded(trusted, header_text(trusted.get(H_REASON, "")) or "?")
    reason = _broker_reason(death, header_text(info.get("routing_key", "")))
    if names.secret and header_text(death.get("exchange", "")) == names.exchange and H_EXCHANGE in headers:
        return _recorded(dict(headers), reason)  # a copy tcpulse published, dropped later
    keys = header_strings(death.get("routing-keys")) or ("",)
    claim = Origin.of({"CC": list(keys[1:])}, header_text(death.get("exchange", "")), keys[0])
    return Letter(None, trusted_headers(headers, "", ()), reason, failures={}, claim=claim)


def _recorded(headers: Dict[str, Any], reason: str) -> Letter:
    origin = Origin.of(headers, "", "")
    try:
        failures = json.loads(header_text(headers.get(H_FAILURES) or "{}"))
    except ValueError:
        failures = None
    if not isinstance(failures, dict):
        return Letter(origin, headers, reason, unreadable=f"its {H_FAILURES} header is not a JSON object")
    return Letter(origin, headers, reason, failures=failures)


def _record(message: Any, letter: Letter) -> Dict[str, Any]:
    origin = letter.origin or Origin("", "", ())
    record: Dict[str, Any] = {
        "exchange": letter.origin and origin.exchange, "routing_key": letter.origin and origin.routing_key,
        "routes": _routes(origin), "attempts": origin.attempt, "reason": letter.reason,
        "failures": letter.failures, "origin_verified": letter.origin is not None,
        "dead_lettered_at": header_text(letter.headers[H_DEAD_AT]) if H_DEAD_AT in letter.headers else None}
    if letter.claim is not None:
        record["claimed_origin"] = {"exchange": letter.claim.exchange, "routing_key": letter.claim.routing_key,
                                    "routes": _routes(letter.claim)}
    if letter.unreadable:
        record["unreadable"] = letter.unreadable
    try:
        record["body"] = decode_body(message.body)
    except Poison:
        body = message.body  # py-amqp hands over text when the declared encoding decodes it
        record["body_text"] = (body if isinstance(body, str) else bytes(body).decode("utf-8", "replace"))[:1000]
    return record


def _routes(origin: Origin) -> List[str]:
    return [r[len("route."):] for r in origin.cc if r.startswith("route.")]


def _broker_reason(death: Dict[str, Any], routing_key: str) -> str:
    queue, reason = header_text(death.get("queue", "?")), header_text(death.get("reason", "?"))
    if reason == "delivery_limit":
        # The broker resets the delivery count when it dead-letters; the key carries the limit.
        limit = limit_of_key(routing_key) or "?"
        return (f"delivered {limit} times without an ack (delivery_limit {limit}): the process handling it "
                f"exited or lost its connection each time, so {queue} dead-lettered it")
    return f"dropped by the broker from {queue} ({reason})"


def _first_death(headers: Dict[str, Any]) -> Dict[str, Any]:
    deaths = headers.get("x-death")  # the broker puts the latest first; a publisher may send anything
    first = deaths[0] if isinstance(deaths, list) and deaths else None
    return first if isinstance(first, dict) else {}


class _DeadLetters:
    """A channel on the dead-letter queue of `names`, whose letters are taken unacked: closing it
    puts back every letter not acked."""

    def __init__(self, connection: Any, names: ListenerNames) -> None:
        self.connection, self.name = connection, names.dead_letter_queue

    def __enter__(self) -> "_DeadLetters":
        self.channel = self.connection.channel()
        try:
            _, self.count, _ = self.channel.queue_declare(self.name, passive=True)
        except NotFound:
            raise BrokerFailure(f"there is no dead-letter queue {self.name!r} on this broker for this "
                                "user (has the listener run here under this name?)") from None
        return self

    def take(self, limit: Optional[int]) -> Iterator[Any]:
        """The dead letters, oldest first, at most `limit` (None: all). Only what is there now:
        letters dead-lettered meanwhile wait for the next call."""
        queue = kombu.Queue(self.name, channel=self.channel)
        for _ in range(self.count if limit is None else min(self.count, limit)):
            message = queue.get()
            if message is None:
                return
            yield message

    def __exit__(self, *exc_info: Any) -> None:
        self.channel.close()
