"""Watch one worker pool through worker-manager's exchanges: each worker that starts running,
how long it ran when it stops, and why it was removed.

WorkerManagerEvents is one of today's exchange classes (it did not exist in 2018). The routing
key splits the pool id `provisionerId/workerType` into two words, so one binding per exchange
picks the pool.

Try it with no RabbitMQ and no Pulse account, on the embedded broker and the sample messages:

    tcpulse listen examples/worker_pool_watcher.py --broker memory:// \\
        --replay examples/messages/worker-pool.jsonl --exit-when-idle

Against Pulse: WORKER_POOL=<provisionerId>/<workerType> PULSE_USERNAME=... PULSE_PASSWORD=... \\
    tcpulse listen examples/worker_pool_watcher.py --queue worker-pool-watcher
"""
import datetime
import os

import tcpulse
from tcpulse import WorkerManagerEvents

# The sample messages in examples/messages/worker-pool.jsonl belong to this pool.
WORKER_POOL = os.environ.get("WORKER_POOL", "proj-example/linux-large")
PROVISIONER_ID, WORKER_TYPE = WORKER_POOL.split("/", 1)

# When each running worker started, by (workerGroup, workerId): in memory, so a restarted
# watcher reports the lifetime of workers it saw start only.
started = {}


def when(event):
    return datetime.datetime.fromisoformat(event.body["timestamp"].replace("Z", "+00:00"))


@tcpulse.on(WorkerManagerEvents.workerRunning, provisionerId=PROVISIONER_ID, workerType=WORKER_TYPE)
def running(event):
    worker = (event.body["workerGroup"], event.body["workerId"])
    started[worker] = when(event)
    print(f"running  {'/'.join(worker)} capacity {event.body['capacity']} ({len(started)} running)")


@tcpulse.on(WorkerManagerEvents.workerStopped, provisionerId=PROVISIONER_ID, workerType=WORKER_TYPE)
def stopped(event):
    worker = (event.body["workerGroup"], event.body["workerId"])
    since = started.pop(worker, None)
    lifetime = f"after {(when(event) - since).total_seconds() / 60:.0f} min" if since else "(start not seen)"
    print(f"stopped  {'/'.join(worker)} {lifetime} ({len(started)} running)")


@tcpulse.on(WorkerManagerEvents.workerRemoved, provisionerId=PROVISIONER_ID, workerType=WORKER_TYPE)
def removed(event):
    print(f"removed  {event.body['workerGroup']}/{event.body['workerId']}: {event.body['reason']}")
