"""Helpers for the listener tests: run a listener in a thread, publish as a Taskcluster service
would (as guest, to the real exchange names), build routing keys, count what a queue holds."""
import contextlib
import json
import threading
import time
from typing import Any, Iterator, List, Optional, Sequence

import kombu
import pytest

from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker

GUEST = "amqp://guest:guest@127.0.0.1:5672//"


def task_key(exchange: Any = None, **fields: str) -> str:
    """A concrete primary key for a Queue exchange, with defaults for the fields not given."""
    exchange = exchange or QueueEvents.taskCompleted
    defaults = dict(taskId="t", runId="0", workerGroup="wg", workerId="w", provisionerId="p",
                    workerType="wt", schedulerId="s", taskGroupId="g")
    return exchange.routing_key(**{**defaults, **fields})


def wait_for(condition, timeout: float = 30.0, interval: float = 0.02, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def running(app: Listener, timeout: float = 20.0) -> Iterator[Listener]:
    """Run `app` in a thread until the block ends; errors from run() are re-raised here."""
    errors: List[BaseException] = []

    def target() -> None:
        try:
            app.run()
        except BaseException as exc:  # noqa: B902 - handed to the test thread
            errors.append(exc)
    thread = threading.Thread(target=target, name="listener-under-test", daemon=True)
    thread.start()
    wait_for(lambda: app.is_ready() or errors or not thread.is_alive(), timeout, what="the listener to be ready")
    if errors:
        raise errors[0]
    try:
        yield app
    finally:
        app.stop()
        thread.join(timeout)
        assert not thread.is_alive(), "the listener did not stop"
    if errors:
        raise errors[0]


class Publisher:
    """Publishes JSON bodies as guest (like the Taskcluster services), with publisher confirms
    unless `confirm=False` (bulk streams: a lost message would fail the test, not pass it)."""

    def __init__(self, url: str = GUEST, confirm: bool = True) -> None:
        self.conn = kombu.Connection(url, transport_options={"confirm_publish": confirm})
        self.producer = kombu.Producer(self.conn.channel(), auto_declare=False)

    def publish(self, exchange: str, routing_key: str, body: Any, routes: Sequence[str] = (),
                headers: Optional[dict] = None) -> None:
        headers = {**({"CC": [f"route.{r}" for r in routes]} if routes else {}), **(headers or {})}
        self.producer.publish(json.dumps(body), exchange=exchange, routing_key=routing_key,
                              headers=headers, content_type="application/json", delivery_mode=2)

    def close(self) -> None:
        self.conn.release()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def http_get(port: int, path: str):
    """(status, body) of GET http://127.0.0.1:port/path; (None, "") when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return None, ""


def queued(user_url: str, queue: str) -> int:
    """Messages ready in `queue` (a passive declare, as the queue's Pulse user)."""
    with resolve_broker(user_url, environ={}).connection() as conn:
        return conn.channel().queue_declare(queue=queue, passive=True).message_count


def delete_queue(user_url: str, queue: str) -> None:
    with resolve_broker(user_url, environ={}).connection() as conn:
        conn.channel().queue_delete(queue=queue)


def handled_ids(path) -> List[str]:
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []



@pytest.fixture
def queue_name(pulse_user, unique_name) -> Iterator[str]:
    """A listener name whose queues and delivery exchange are deleted afterwards (over AMQP:
    rabbitmqctl is slow)."""
    yield unique_name
    delete_listener_topology(pulse_user.url, pulse_user.name, unique_name)


def delivery_exchange(url: str, queue: str) -> str:
    """The delivery exchange listener queue `queue` uses now (its secret is in its binding record)."""
    from tcpulse._listen.layout import locate
    from tcpulse._listen.topology import ListenerNames

    with resolve_broker(url, environ={}).connection() as conn:
        return locate(conn, ListenerNames(queue)).exchange


def delete_delivery_exchange(url: str, queue: str) -> None:
    """Delete the delivery exchange of listener queue `queue` (exchanges outlive their user)."""
    exchange = delivery_exchange(url, queue)
    with resolve_broker(url, environ={}).connection() as conn:
        conn.channel().exchange_delete(exchange=exchange)


def delete_listener_topology(url: str, user: str, name: str, retry_delays: Sequence[float] = (5, 30, 120, 600)) -> None:
    """Delete the queues and exchange a listener named `name` (with these `retry_delays`)
    declares for `user`."""
    from tcpulse._listen.delivery import Delivery
    from tcpulse._listen.outcome import RetryPolicy
    from tcpulse._listen.stale import record_queue

    delivery = Delivery(f"queue/{user}/{name}", RetryPolicy(retry_delays=tuple(retry_delays)))
    delete_delivery_exchange(url, delivery.queue)
    holding = delivery.holding_queues()
    with resolve_broker(url, environ={}).connection() as conn:
        for queue in [delivery.queue, delivery.dead_letter_queue, delivery.names.isolation_queue, record_queue(delivery.queue),
                      *sorted(holding)]:
            conn.channel().queue_delete(queue=queue)
