"""Watch one task group: say what happened to each task that completes, fails or hits an exception.

With TASKCLUSTER_ROOT_URL set, each handler fetches through the bundled Queue client (the
completed task's artifacts, the failed task's status); without it, it prints what it would fetch.

Try it with no RabbitMQ and no Pulse account, on the embedded broker and the sample messages:

    tcpulse listen examples/task_group_watcher.py --broker memory:// \\
        --replay examples/messages/task-group.jsonl --exit-when-idle

Against Pulse: TASK_GROUP_ID=<id> PULSE_USERNAME=... PULSE_PASSWORD=... \\
    tcpulse listen examples/task_group_watcher.py --queue task-group-watcher
"""
import os

import tcpulse
from tcpulse import QueueEvents

# The sample messages in examples/messages/task-group.jsonl belong to this group.
TASK_GROUP_ID = os.environ.get("TASK_GROUP_ID", "Q2ZlV3k3QmWq2RvdcYxWFA")


def queue_client():
    """The bundled Queue client when a deployment is configured, else None (dry run)."""
    return tcpulse.Queue() if os.environ.get("TASKCLUSTER_ROOT_URL") else None


@tcpulse.on(QueueEvents.taskCompleted, taskGroupId=TASK_GROUP_ID)
def completed(event):
    task_id, run_id = event.fields["taskId"], int(event.fields["runId"])
    queue = queue_client()
    if queue is None:
        print(f"completed  {task_id} run {run_id}: would fetch queue.listArtifacts({task_id!r}, {run_id})")
        return
    names = [a["name"] for a in queue.listArtifacts(task_id, run_id)["artifacts"]]
    print(f"completed  {task_id} run {run_id}: {len(names)} artifacts: {', '.join(names)}")


@tcpulse.on(QueueEvents.taskFailed, QueueEvents.taskException, taskGroupId=TASK_GROUP_ID)
def failed(event):
    task_id = event.fields["taskId"]
    run = event.body["status"]["runs"][event.body["runId"]]
    what = "failed    " if event.exchange == QueueEvents.taskFailed.exchange else "exception "
    queue = queue_client()
    if queue is None:
        print(f"{what} {task_id} run {run['runId']} ({run['reasonResolved']}): "
              f"would fetch queue.status({task_id!r})")
        return
    state = queue.status(task_id)["status"]
    print(f"{what} {task_id} run {run['runId']} ({run['reasonResolved']}): "
          f"now {state['state']}, {state['retriesLeft']} retries left")
