"""Connection loss under load, and the handler pool's bound, on the real RabbitMQ."""
import collections
import threading
import time

import pytest

from tcpulse import Listener, QueueEvents
from listenerkit import Publisher, queue_name, queued, running, task_key, wait_for  # noqa: F401

pytestmark = pytest.mark.rabbitmq

COMPLETED = QueueEvents.taskCompleted


def test_the_reconnect_delay_is_none_at_first_then_grows_exponentially_with_jitter_up_to_a_cap():
    from tcpulse._listen.consumer import BACKOFF_CAP, _backoff

    assert _backoff(0) == 0
    for failures in range(1, 12):
        base = min(BACKOFF_CAP, 0.25 * 2 ** (failures - 1))
        delays = {_backoff(failures) for _ in range(50)}
        assert all(0.5 * base <= d <= 1.5 * base for d in delays) and len(delays) > 1
    assert max(_backoff(30) for _ in range(50)) <= 1.5 * BACKOFF_CAP


def test_closing_the_connection_three_times_in_a_5000_message_stream_loses_nothing(pulse_user, taskcluster_exchanges, queue_name):
    prefetch, total, chunk = 50, 5000, 1250
    app = Listener(queue_name, broker=pulse_user.url, concurrency=4, prefetch=prefetch)
    lock = threading.Lock()
    handlings = []  # (index, redelivered)

    def handler(event):
        time.sleep(0.0005)
        with lock:
            handlings.append((event.body["i"], event.redelivered))
    app.add_handler(handler, COMPLETED, schedulerId=queue_name)

    def handled():
        with lock:
            return len({i for i, _ in handlings})

    key = task_key(COMPLETED, schedulerId=queue_name)
    with running(app), Publisher(confirm=False) as pub:
        for start in range(0, total, chunk):
            for i in range(start, start + chunk):  # published while the listener reconnects
                pub.publish(COMPLETED.exchange, key, {"i": i})
            if start + chunk < total:
                wait_for(lambda: handled() >= start + chunk // 2, what=f"{start + chunk // 2} handled")
                assert pulse_user.close_connections() == 1
        wait_for(lambda: handled() == total, timeout=60, what="every message handled")
        wait_for(lambda: app.is_ready(), what="the listener consuming again")
        assert app.metrics.get("reconnects") == 3

    counts = collections.Counter(i for i, _ in handlings)
    assert set(counts) == set(range(total))
    duplicates = [i for i, n in counts.items() if n > 1]
    # Only messages in flight at a loss (at most `prefetch` each time) come again, marked redelivered.
    assert len(duplicates) <= 3 * prefetch
    redelivered = {i for i, again in handlings if again}
    assert set(duplicates) <= redelivered
    assert queued(pulse_user.url, app.queue) == 0


def test_sixteen_threads_with_a_20_ms_handler_never_run_more_than_16_at_once_and_ack_everything(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url, concurrency=16)
    lock = threading.Lock()
    now, most, done = [0], [0], []

    def handler(event):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
            done.append(event.body["i"])
    app.add_handler(handler, COMPLETED, schedulerId=queue_name)
    with running(app), Publisher(confirm=False) as pub:
        for i in range(400):
            pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {"i": i})
        wait_for(lambda: app.metrics.get("acked") == 400, what="every message acked")
    assert sorted(done) == list(range(400))
    assert most[0] == 16
    assert queued(pulse_user.url, app.queue) == 0


def test_heartbeats_keep_flowing_while_a_handler_runs_longer_than_the_broker_waits(pulse_user, taskcluster_exchanges, queue_name, monkeypatch):
    import tcpulse._broker.connection

    monkeypatch.setattr(tcpulse._broker.connection, "HEARTBEAT", 2)  # RabbitMQ drops us after ~4 s of silence
    app = Listener(queue_name, broker=pulse_user.url)
    done = []
    app.add_handler(lambda event: (time.sleep(6), done.append(event.redelivered)), COMPLETED, schedulerId=queue_name)
    with running(app), Publisher() as pub:
        assert app._consumer._conn.connection.heartbeat == 2
        pub.publish(COMPLETED.exchange, task_key(COMPLETED, schedulerId=queue_name), {})
        wait_for(lambda: app.metrics.get("acked") == 1, timeout=20, what="the slow message acked")
    assert done == [False] and app.metrics.get("reconnects") == 0


def test_after_a_reconnect_an_unnamed_listener_redeclares_its_queue_and_bindings(pulse_user, taskcluster_exchanges, unique_name):
    # An exclusive queue dies with its connection: only a redeclaration brings messages back.
    app = Listener(broker=pulse_user.url)
    seen = []
    app.add_handler(lambda event: seen.append(event.body["n"]), COMPLETED, schedulerId=unique_name)
    key = task_key(COMPLETED, schedulerId=unique_name)
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, key, {"n": 1})
        wait_for(lambda: seen == [1], what="the first message")
        assert pulse_user.close_connections() == 1
        wait_for(lambda: app.metrics.get("reconnects") == 1 and app.is_ready(), what="the reconnect")
        pub.publish(COMPLETED.exchange, key, {"n": 2})
        wait_for(lambda: seen == [1, 2], what="a message published after the reconnect")
