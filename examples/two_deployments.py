"""Ingest the tasks of two Taskcluster deployments in one process, as Treeherder does.

Firefox CI and Community TC each have a Pulse user of their own (and may have a vhost or a
broker of their own), so each gets a `Listener`; `tcpulse listen` runs every listener a script
defines (and `python two_deployments.py` runs them with `tcpulse.run`). One SIGTERM drains
both; each log line starts with the listener it comes from; every /metrics series carries a
`listener` label; /ready answers 200 once both consume.

Both bind what Treeherder asks for: the task messages CC'd to the route `tc-treeherder.#`
(a task adds that route to be reported there).

    FIREFOX_CI_PULSE_URL=amqps://USER1:PASSWORD1@pulse.example.org:5671/ \\
    COMMUNITY_TC_PULSE_URL=amqps://USER2:PASSWORD2@pulse.example.org:5671/VHOST \\
        tcpulse listen examples/two_deployments.py --health-port 9100

Without those variables, the two listeners use two embedded brokers (`memory:///firefox-ci`,
`memory:///community-tc`), which a replay feeds the same sample messages:

    tcpulse listen examples/two_deployments.py --replay examples/messages/task-group.jsonl --exit-when-idle
"""
import os

import tcpulse
from tcpulse import QueueEvents

ROUTE = os.environ.get("TREEHERDER_ROUTE", "tc-treeherder")
TASK_EVENTS = (QueueEvents.taskPending, QueueEvents.taskRunning, QueueEvents.taskCompleted,
               QueueEvents.taskFailed, QueueEvents.taskException)

firefox_ci = tcpulse.Listener("firefox-ci", broker=os.environ.get("FIREFOX_CI_PULSE_URL", "memory:///firefox-ci"))
community_tc = tcpulse.Listener("community-tc",
                                broker=os.environ.get("COMMUNITY_TC_PULSE_URL", "memory:///community-tc"))


def ingest(deployment: str, event: tcpulse.Event) -> None:
    """Where Treeherder would store the job; here, one line per task event."""
    state = event.body["status"]["state"]
    # One write per line (end=""): the two listeners' handlers print from threads of their own.
    print(f"{deployment:<13} {event.fields['taskId']} run {event.fields['runId']}: {state}\n", end="", flush=True)


@firefox_ci.on(*TASK_EVENTS, route=f"{ROUTE}.#")
def firefox_ci_task(event: tcpulse.Event) -> None:
    ingest("firefox-ci", event)


@community_tc.on(*TASK_EVENTS, route=f"{ROUTE}.#")
def community_tc_task(event: tcpulse.Event) -> None:
    ingest("community-tc", event)


if __name__ == "__main__":
    tcpulse.run(firefox_ci, community_tc)
