"""The harness runs `async def` handlers too, from a plain sync test and from inside a running
event loop (an async test), with the live listener's verdicts."""
import asyncio

from tcpulse import Listener, PermanentFailure, QueueEvents
from tcpulse.testing import deliver

KEY = "primary.t1.0.wg.w1.aws.b-linux.sched.g1._"
COMPLETED = QueueEvents.taskCompleted


def make_app(fail_until=1, error=ConnectionError("down")):
    app = Listener("harness-async", broker="memory://", max_attempts=3)
    calls = []

    @app.on(COMPLETED, taskGroupId="g1")
    def plain(event):
        calls.append(("plain", event.attempt))

    @app.on(COMPLETED, taskGroupId="g1")
    async def awaiting(event):
        await asyncio.sleep(0)
        calls.append(("awaiting", event.attempt))
        if event.attempt <= fail_until:
            raise error

    return app, calls


def test_a_plain_test_delivers_to_an_async_handler_and_only_the_failed_one_is_retried():
    app, calls = make_app()
    result = deliver(app, COMPLETED, KEY, {"n": 1})
    assert calls == [("plain", 1), ("awaiting", 1), ("awaiting", 2)]
    assert result.acked and result.retried == ["test_testing_async.make_app.<locals>.awaiting"]


def test_an_async_handler_that_always_fails_is_dead_lettered_and_permanent_failure_at_once():
    app, calls = make_app(fail_until=99)
    assert deliver(app, COMPLETED, KEY, {"n": 1}).reason == "failed 3 of 3 attempts"
    app, calls = make_app(error=PermanentFailure("invalid"))
    result = deliver(app, COMPLETED, KEY, {"n": 1})
    assert result.dead_lettered and calls == [("plain", 1), ("awaiting", 1)]


def test_a_cancelled_error_from_an_async_handler_is_its_failure_not_a_success():
    app, calls = make_app(error=asyncio.CancelledError())
    result = deliver(app, COMPLETED, KEY, {"n": 1}, follow_retries=False)
    assert not result.acked and result.retried == ["test_testing_async.make_app.<locals>.awaiting"]
    assert type(result.attempts[0].failures[result.retried[0]]) is asyncio.CancelledError


def test_deliver_called_inside_a_running_event_loop_still_runs_async_handlers():
    app, calls = make_app()

    async def an_async_test():
        return deliver(app, COMPLETED, KEY, {"n": 1})

    result = asyncio.run(an_async_test())
    assert result.acked and calls == [("plain", 1), ("awaiting", 1), ("awaiting", 2)]
