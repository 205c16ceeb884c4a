"""Ordinary user code: a Listener, handlers with typed events, REST calls with typed answers.

tests/test_static_types.py runs mypy (and pyright) over this file and expects no error.
"""
from typing import List, Optional

import tcpulse
import tcpulse.aio
from tcpulse import Event, Listener, QueueEvents
from tcpulse.types.queue import Task, TaskCompletedMessage, TaskFailedMessage
from tcpulse.types.workermanager import PulseWorkerMessage

app = Listener("task-watcher", broker="memory://", concurrency=2, max_attempts=3, validate="warn")
queue = tcpulse.Queue({"rootUrl": "https://tc.example.com", "maxRetries": 3, "validate": True})


@app.on(QueueEvents.taskCompleted, taskGroupId="fQ3sX0JwTHKzSbbr7SYHQA")
def completed(event: Event[TaskCompletedMessage]) -> None:
    task_id: str = event.body["status"]["taskId"]
    run_id: int = event.body["runId"]
    state: str = event.body["status"]["state"]
    worker: str = event.body["workerId"]
    print(task_id, run_id, state, worker, event.fields["taskId"], event.routes, event.attempt)
    task: Task = queue.task(task_id)
    print(task["metadata"]["name"], task["created"], task.get("priority"))
    artifacts = queue.listArtifacts(task_id, str(run_id), query={"limit": 10})
    names: List[str] = [artifact["name"] for artifact in artifacts["artifacts"]]
    print(names)


@app.on(QueueEvents.taskFailed(taskGroupId="g"), QueueEvents.taskException)
async def failed(event: Event[TaskFailedMessage]) -> None:
    runs = event.body["status"]["runs"]
    reason: Optional[str] = runs[-1].get("reasonResolved") if runs else None
    status = tcpulse.aio.Queue({"rootUrl": "https://tc.example.com"}).status(event.fields["taskId"])
    print(reason, (await status)["status"]["state"])


@app.on(tcpulse.WorkerManagerEvents.workerRunning)
def worker_running(event: Event[PulseWorkerMessage]) -> None:
    print(event.body["workerPoolId"], event.body["workerId"])


def index_a_task(task_id: str) -> None:
    index = tcpulse.Index(tcpulse.optionsFromEnvironment())
    index.insertTask("project.example.latest", {"taskId": task_id, "rank": 0, "data": {},
                                                 "expires": tcpulse.stringDate(tcpulse.fromNow("1 year"))})
    found = index.findTask("project.example.latest")
    print(found["taskId"], found["namespace"])


def key_for(task_id: str) -> str:
    return QueueEvents.taskPending.routing_key(taskId=task_id, runId=0, provisionerId="p", workerType="w",
                                               schedulerId="s", taskGroupId="g")


def official_layout(task_id: str) -> str:
    from tcpulse.auth import Auth
    from tcpulse.queue import Queue

    client = Auth({"rootUrl": "https://tc.example.com"}).currentScopes()
    return Queue({"rootUrl": "https://tc.example.com"}).status(task_id)["status"]["state"] + str(client["scopes"])


async def fetch_name(task_id: str) -> str:
    import tcpulse.aio
    from tcpulse.aio.queue import Queue as AsyncQueue

    async with tcpulse.aio.Queue({"rootUrl": "https://tc.example.com"}) as aio_queue:
        task = await aio_queue.task(task_id)
    status = await AsyncQueue({"rootUrl": "https://tc.example.com"}).status(task_id)
    return task["metadata"]["name"] + status["status"]["state"]


def test_completed_with_a_sample() -> None:
    from tcpulse.testing import deliver, sample

    event = sample(QueueEvents.taskCompleted, taskGroupId="fQ3sX0JwTHKzSbbr7SYHQA")
    assert event.body["status"]["taskId"] == event.fields["taskId"]
    assert deliver(app, QueueEvents.taskCompleted, event.routing_key, event.body).acked


if __name__ == "__main__":
    app.run()
