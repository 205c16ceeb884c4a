"""`await listener.serve()` inside an asyncio application (a Pulse user on the real broker): async
handlers on the application's loop, sync ones on threads, cancelling drains like SIGTERM and
loses nothing, no signal handler is touched; and the health endpoints as WSGI and ASGI apps."""
import asyncio
import doctest
import importlib.util
import signal
import threading
from pathlib import Path

import pytest

import tcpulse
from tcpulse._listen import runner
from tcpulse._ops import health, logsetup, metrics
from listenerkit import Publisher, queued, task_key
from tcpulse import Listener, QueueEvents

COMPLETED = QueueEvents.taskCompleted
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "asyncio_app.py"


def load_example():
    spec = importlib.util.spec_from_file_location("asyncio_app", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def publish(*messages) -> None:
    """Publish (exchange, key, body) as guest, off the loop (kombu blocks)."""
    def send() -> None:
        with Publisher() as publisher:
            for exchange, key, body in messages:
                publisher.publish(exchange, key, body)
    await asyncio.get_running_loop().run_in_executor(None, send)


def test_the_asyncio_example_forwards_events_to_its_bus_and_cancels_without_losing_one(
        pulse_user, taskcluster_exchanges, unique_name):
    example = load_example()
    failed = QueueEvents.taskFailed

    async def application():
        ready = asyncio.Event()
        app = asyncio.create_task(example.main(3, pulse_user.url, unique_name, ready))
        await ready.wait()
        await publish(*[(exchange.exchange, task_key(exchange, taskId=f"t{n}", taskGroupId=unique_name),
                         {"status": {"state": state}})
                        for n, (exchange, state) in enumerate([(COMPLETED, "completed"), (failed, "failed"),
                                                               (COMPLETED, "completed")])])
        return await app
    before = signal.getsignal(signal.SIGTERM)
    events = asyncio.run(application())
    assert sorted(events) == [("completed", "t0"), ("completed", "t2"), ("failed", "t1")]
    assert signal.getsignal(signal.SIGTERM) is before
    assert queued(pulse_user.url, f"queue/{pulse_user.name}/code-review") == 0


def test_cancelling_serve_lets_running_handlers_finish_on_the_applications_loop_and_acks_them(
        pulse_user, taskcluster_exchanges, unique_name):
    app = Listener(unique_name, broker=pulse_user.url, concurrency=4)
    seen = {"loops": [], "started": [], "finished": [], "threads": []}

    @app.on(COMPLETED, taskGroupId=unique_name)
    async def slow(event):
        seen["loops"].append(asyncio.get_running_loop())
        seen["started"].append(event.fields["taskId"])
        await asyncio.sleep(0.5)  # still running when the application cancels serve()
        seen["finished"].append(event.fields["taskId"])

    @app.on(COMPLETED, taskGroupId=unique_name)
    def blocking(event):
        seen["threads"].append(threading.current_thread())

    async def application():
        serving = asyncio.create_task(app.serve())
        while not app.is_ready():
            assert not serving.done(), serving
            await asyncio.sleep(0.02)
        await publish(*[(COMPLETED.exchange, task_key(taskId=f"t{n}", taskGroupId=unique_name), {})
                        for n in range(3)])
        while not seen["started"]:
            await asyncio.sleep(0.01)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        return asyncio.get_running_loop()

    loop = asyncio.run(application())
    assert seen["loops"] and all(running is loop for running in seen["loops"])
    assert seen["finished"] and sorted(seen["finished"]) == sorted(seen["started"])
    assert len(seen["threads"]) == len(seen["finished"])
    assert all(thread is not threading.main_thread() for thread in seen["threads"])
    # Whatever ran was finished and acked; what had not started waits on the broker: none lost.
    assert len(seen["finished"]) + queued(pulse_user.url, app.queue) == 3
    assert app.metrics.get("acked") == len(seen["finished"])


def test_stop_ends_serve_and_a_failure_at_start_is_raised_by_serve(rabbitmq, unique_name):
    app = Listener(broker="memory://")

    @app.on(COMPLETED)
    async def handler(event):
        pass

    async def stop_soon():
        serving = asyncio.create_task(app.serve())
        while not app.is_ready():
            await asyncio.sleep(0.02)
        app.stop()
        await serving
    asyncio.run(stop_soon())
    assert not app.is_ready()

    broken = Listener(broker=rabbitmq)
    broken.add_handler(print, tcpulse.Binding(f"exchange/tcpulse-test-missing/{unique_name}", "#"))
    with pytest.raises(tcpulse.BrokerFailure, match="does not exist"):
        asyncio.run(broken.serve())


@pytest.mark.parametrize("module", [health, metrics, logsetup, runner])
def test_the_docstring_examples_run(module):
    failures, tried = doctest.testmod(module)
    assert tried > 0 and failures == 0
