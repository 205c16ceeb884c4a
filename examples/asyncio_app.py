"""A listener inside an asyncio application, as the code-review bot's Pulse listener feeds its bus.

The application owns the event loop, its signal handlers and its own objects (here a bus, an
`asyncio.Queue`; in a real one also an aiohttp session or a Redis client). `await
listener.serve()` runs the listener on that loop: the `async def` handler below puts each
event on the bus from the application's own loop, and the application's consumer takes them
off. Cancelling `serve()` drains like SIGTERM: a running handler finishes, nothing is lost.

    PULSE_URL=amqps://USER:PASSWORD@pulse.example.org:5671/ TASK_GROUP_ID=... python examples/asyncio_app.py

The same application can mount the listener's health endpoints on its own web server:
`tcpulse.asgi_app(listener)` (or `tcpulse.wsgi_app`) answers /live, /ready and /metrics.
"""
import asyncio
import contextlib
import os
from typing import List, Optional, Tuple

import tcpulse
from tcpulse import QueueEvents

TASK_GROUP_ID = os.environ.get("TASK_GROUP_ID", "Q2ZlV3k3QmWq2RvdcYxWFA")


def code_review_listener(bus: "asyncio.Queue[Tuple[str, str]]", broker: Optional[str] = None,
                         task_group_id: str = TASK_GROUP_ID) -> tcpulse.Listener:
    """A listener that forwards the group's finished tasks to `bus`."""
    listener = tcpulse.Listener("code-review", broker=broker)

    @listener.on(QueueEvents.taskCompleted, QueueEvents.taskFailed, QueueEvents.taskException,
                 taskGroupId=task_group_id)
    async def forward(event: tcpulse.Event) -> None:
        await bus.put((event.body["status"]["state"], event.fields["taskId"]))
    return listener


async def main(count: int, broker: Optional[str] = None, task_group_id: str = TASK_GROUP_ID,
               ready: Optional["asyncio.Event"] = None) -> List[Tuple[str, str]]:
    """Take `count` events off the bus, then cancel the listener and wait for it to drain.
    `ready` is set once the listener consumes (a test publishes then)."""
    bus: "asyncio.Queue[Tuple[str, str]]" = asyncio.Queue()
    listener = code_review_listener(bus, broker, task_group_id)
    serving = asyncio.create_task(listener.serve())
    while not listener.is_ready():
        if serving.done():
            serving.result()  # raises what stopped it (a wrong password, a missing exchange)
        await asyncio.sleep(0.05)
    if ready is not None:
        ready.set()
    events = [await bus.get() for _ in range(count)]
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    return events


if __name__ == "__main__":
    for state, task_id in asyncio.run(main(int(os.environ.get("EVENTS", "3")))):
        print(f"{state:<10} {task_id}")
