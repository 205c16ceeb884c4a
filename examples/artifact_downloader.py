"""Download one artifact of every task of a group that completes, into a local folder.

With TASKCLUSTER_ROOT_URL set (and, for private artifacts, TASKCLUSTER_CLIENT_ID and
TASKCLUSTER_ACCESS_TOKEN), each completed task's ARTIFACT (default public/build/target.tar.bz2)
of the run that completed is streamed to DOWNLOAD_DIR/<taskId>/<file name> with
`tcpulse.download`, whatever its storage type (s3, reference or object, hashes verified); an
artifact the task recorded as an error is reported and the message is acked. Without a
rootUrl it prints what it would download.

    tcpulse listen examples/artifact_downloader.py --broker memory:// \\
        --replay examples/messages/task-group.jsonl --exit-when-idle
"""
import os
from pathlib import Path

import tcpulse
import tcpulse.download
from tcpulse import QueueEvents

# The sample messages in examples/messages/task-group.jsonl belong to this group.
TASK_GROUP_ID = os.environ.get("TASK_GROUP_ID", "Q2ZlV3k3QmWq2RvdcYxWFA")
ARTIFACT = os.environ.get("ARTIFACT", "public/build/target.tar.bz2")
DOWNLOAD_DIR = Path(os.environ.get("DOWNLOAD_DIR", "downloads"))


@tcpulse.on(QueueEvents.taskCompleted, taskGroupId=TASK_GROUP_ID)
def download_artifact(event):
    task_id, run_id = event.fields["taskId"], int(event.fields["runId"])
    if not os.environ.get("TASKCLUSTER_ROOT_URL"):
        print(f"would download {ARTIFACT} of {task_id} run {run_id}")
        return
    target = DOWNLOAD_DIR / task_id / ARTIFACT.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "wb") as file:
            kind = tcpulse.download.downloadArtifactToFile(
                file, taskId=task_id, runId=run_id, name=ARTIFACT, queueService=tcpulse.Queue())
    except tcpulse.TaskclusterArtifactError as error:
        # The task says why there is nothing to fetch: retrying would not change it.
        target.unlink()
        print(f"no {ARTIFACT} for {task_id} run {run_id}: {error} ({error.reason})")
        return
    print(f"downloaded {ARTIFACT} of {task_id} run {run_id}: {target.stat().st_size} bytes, {kind}")
