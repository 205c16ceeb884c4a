"""`async def` handlers on a running listener, on memory:// and on the real RabbitMQ (issue 14;
issue 12 item 7: they used to be acked without running): dispatch, retries of only the failed
handler, dead letters, PermanentFailure, sync and async handlers on one message, concurrency
bounds, a handler raising CancelledError, a handler blocking the loop, and stop() with 50
coroutines in flight."""
import asyncio
import re
import threading
import time

import pytest

from tcpulse import Listener, PermanentFailure
from asynckit import COMPLETED, broker  # noqa: F401 - the fixture
from listenerkit import running, wait_for


def listener(broker, **options):
    return Listener(broker.name, broker=broker.url, **options)


def test_an_async_handler_runs_on_the_listeners_event_loop_and_its_message_is_acked(broker):
    app = listener(broker)
    seen = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def completed(event):
        await asyncio.sleep(0.01)
        seen.append((event.body, event.routes, event.fields["taskId"], event.attempt,
                     threading.current_thread().name))

    with running(app):
        broker.publish({"n": 1}, routes=["index.a"], taskId="T1")
        wait_for(lambda: app.metrics.get("acked") == 1, what="the ack")
    assert seen == [({"n": 1}, ["index.a"], "T1", 1, "tcpulse-event-loop")]
    assert app.metrics.get("handled", handler=app.handlers[0].name) == 1
    assert broker.queued(app.queue) == 0


def test_only_the_failed_async_handler_is_retried_and_event_attempt_counts(broker):
    app = listener(broker, retry_delays=(0.2,))
    calls = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def flaky(event):
        calls.append(("flaky", event.attempt))
        if event.attempt == 1:
            raise ConnectionError("queue service is down")

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def steady(event):
        calls.append(("steady", event.attempt))

    with running(app):
        broker.publish({"n": 1})
        wait_for(lambda: app.metrics.get("acked") == 2, what="the retry's ack")
    assert calls == [("flaky", 1), ("steady", 1), ("flaky", 2)]
    assert app.metrics.get("retried") == 1 and app.metrics.get("dead_lettered") == 0
    assert app.metrics.get("handler_errors", handler=app.handlers[0].name) == 1


def test_an_async_handler_that_keeps_failing_is_dead_lettered_with_its_error(broker):
    app = listener(broker, max_attempts=2, retry_delays=(0.2,))
    attempts = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def doomed(event):
        attempts.append(event.attempt)
        await asyncio.sleep(0)
        raise ValueError(f"cannot parse task {event.fields['taskId']}")

    with running(app):
        broker.publish({"n": 1}, taskId="T9")
        wait_for(lambda: app.metrics.get("dead_lettered") == 1 and app.metrics.get("acked") == 2,
                 what="the dead letter")
        [record] = app.dead_letters()
    assert attempts == [1, 2]
    assert record["reason"] == "failed 2 of 2 attempts"
    assert record["failures"] == {app.handlers[0].name: {"type": "ValueError", "message": "cannot parse task T9"}}


def test_permanent_failure_from_an_async_handler_dead_letters_at_once(broker):
    app = listener(broker, retry_delays=(0.2,))
    attempts = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def refuses(event):
        attempts.append(event.attempt)
        raise PermanentFailure("task definition is invalid")

    with running(app):
        broker.publish({"n": 1})
        wait_for(lambda: app.metrics.get("dead_lettered") == 1 and app.metrics.get("acked") == 1,
                 what="the dead letter")
    assert attempts == [1] and app.metrics.get("retried") == 0


def test_sync_and_async_handlers_on_one_message_each_run_once_in_registration_order(broker):
    app = listener(broker, concurrency=4, retry_delays=(0.2,))
    calls = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    def plain(event):
        calls.append(("plain", event.attempt, threading.current_thread().name.startswith("tcpulse-handler")))

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def awaiting(event):
        await asyncio.sleep(0.01)
        calls.append(("awaiting", event.attempt, threading.current_thread().name == "tcpulse-event-loop"))
        if event.attempt == 1:
            raise TimeoutError("index service timed out")

    @app.on(COMPLETED, route=f"{broker.name}.#")  # a route no other test sends on these shared exchanges
    def routed(event):
        calls.append(("routed", event.attempt, True))

    with running(app):
        broker.publish({"n": 1}, routes=[f"{broker.name}.x"])
        wait_for(lambda: app.metrics.get("acked") == 2, what="the retry's ack")
    assert calls == [("plain", 1, True), ("awaiting", 1, True), ("routed", 1, True), ("awaiting", 2, True)]


def test_at_most_concurrency_coroutines_are_in_flight_and_all_messages_are_handled(broker):
    app = listener(broker, concurrency=20)
    in_flight, most, handled = [0], [0], []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def slow(event):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        await asyncio.sleep(0.3)  # long enough for the publisher to fill every free slot
        in_flight[0] -= 1
        handled.append(event.body["n"])

    with running(app):
        for n in range(100):
            broker.publish({"n": n}, taskId=f"t{n}")
        wait_for(lambda: app.metrics.get("acked") == 100, what="100 acks")
    assert most[0] == 20
    assert sorted(handled) == list(range(100))


def test_at_concurrency_1_async_handlers_take_messages_in_order_one_at_a_time(broker):
    app = listener(broker)
    handled, overlap = [], []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def ordered(event):
        overlap.append(len(handled))
        await asyncio.sleep(0.001)
        handled.append(event.body["n"])

    with running(app):
        for n in range(30):
            broker.publish({"n": n}, taskId=f"t{n}")
        wait_for(lambda: app.metrics.get("acked") == 30, what="30 acks")
    assert handled == list(range(30)) and overlap == list(range(30))


def test_a_cancelled_error_raised_by_a_handler_is_its_failure_and_the_message_is_retried(broker, caplog):
    app = listener(broker, retry_delays=(0.2,))
    attempts = []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def cancelled(event):
        attempts.append(event.attempt)
        if event.attempt == 1:
            inner = asyncio.ensure_future(asyncio.sleep(10))
            inner.cancel()
            await inner  # raises CancelledError into the handler, as a cancelled call would

    with running(app):
        broker.publish({"n": 1})
        wait_for(lambda: app.metrics.get("acked") == 2, what="the retry's ack")
    assert attempts == [1, 2]
    assert app.metrics.get("retried") == 1
    assert app.metrics.get("handler_errors", handler=app.handlers[0].name) == 1
    assert any("CancelledError" in r.getMessage() and "retrying in" in r.getMessage() for r in caplog.records)


def test_a_handler_blocking_the_event_loop_is_named_in_a_warning(broker, caplog):
    app = listener(broker, concurrency=4)

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def blocker(event):
        time.sleep(1.0)  # the mistake being detected: a sync sleep inside async def

    with running(app):
        key = broker.publish({"n": 1})
        wait_for(lambda: app.metrics.get("acked") == 1, what="the ack")
    culprit = f"by handler {app.handlers[0].name} (message from {COMPLETED.exchange} with key {key!r})"
    # One warning for the one blocking episode (a loaded machine may add others of its own).
    [warning] = [r.getMessage() for r in caplog.records if culprit in r.getMessage()]
    assert re.search(r"has been blocked for [01]\.\d s by ", warning), warning
    assert app.metrics.get("loop_blocked") >= 1


def test_stop_with_50_coroutines_in_flight_acks_those_that_finish_in_the_grace_and_returns_the_rest(broker):
    app = listener(broker, concurrency=50, shutdown_grace=4)
    started, finished = [], []

    @app.on(COMPLETED, taskGroupId=broker.name)
    async def slow(event):
        n = event.body["n"]
        started.append(n)
        await asyncio.sleep(1.5 if n % 2 else 30)  # odd ones finish within the grace, even ones cannot
        finished.append(n)

    with running(app):
        for n in range(80):
            broker.publish({"n": n}, taskId=f"t{n}")
        wait_for(lambda: len(started) == 50, what="50 coroutines in flight")
        time.sleep(0.1)
        assert len(started) == 50 and not finished
    # running() has called app.stop() (what SIGTERM does) and waited for run() to return.
    assert sorted(finished) == [n for n in range(50) if n % 2]
    assert len(started) == 50, "no message may start after the stop"
    assert app.metrics.get("acked") == 25
    wait_for(lambda: broker.queued(app.queue) == 55, what="the 25 unfinished and 30 unstarted messages back")


SIGTERM_SCRIPT = '''
import asyncio, logging, sys
from tcpulse import Listener, QueueEvents

logging.basicConfig(level=logging.INFO)

name, url, out = sys.argv[1:4]
app = Listener(name, broker=url, concurrency=50, shutdown_grace=3)

@app.on(QueueEvents.taskCompleted, taskGroupId=name)
async def slow(event):
    n = event.body["n"]
    with open(out, "a") as f:
        f.write(f"start {n}\\n")
    await asyncio.sleep(1 if n % 2 else 60)  # odd ones finish within the grace, even ones cannot
    with open(out, "a") as f:
        f.write(f"done {n}\\n")

app.run()
'''


@pytest.mark.rabbitmq
def test_sigterm_with_50_coroutines_in_flight_acks_only_the_finished_and_loses_none(
        pulse_user, taskcluster_exchanges, unique_name, tmp_path):
    import signal
    import subprocess
    import sys

    from asynckit import RabbitBroker

    broker = RabbitBroker(unique_name, pulse_user)
    script, out = tmp_path / "listen.py", tmp_path / "out.txt"
    script.write_text(SIGTERM_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), unique_name, pulse_user.url, str(out)],
                            stderr=subprocess.PIPE, text=True)
    log = []
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    try:
        wait_for(lambda: any("consuming from" in line for line in log) or proc.poll() is not None,
                 what="the listener to consume")
        assert proc.poll() is None, "".join(log)
        for n in range(80):
            broker.publish({"n": n}, taskId=f"t{n}")
        lines = lambda kind: sorted(int(l.split()[1]) for l in out.read_text().splitlines() if l.startswith(kind))  # noqa: E731
        wait_for(lambda: out.exists() and len(lines("start")) == 50, what="50 coroutines in flight")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(log)
        assert lines("start") == list(range(50)), "no message may start after SIGTERM"
        assert lines("done") == [n for n in range(50) if n % 2]
        # 25 acked; 25 unfinished and 30 never started come back: none lost.
        wait_for(lambda: broker.queued(f"queue/{pulse_user.name}/{unique_name}") == 55,
                 what="the unfinished and unstarted messages back on the queue")
        text = "".join(log)
        assert "25 handler(s) still running after the 3 s grace period" in text, text
        assert "Traceback" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
        broker.close()
