"""A handler that takes its time, to watch graceful shutdown (and to scale it out).

Each completed task (of scheduler SLOW_HANDLER_SCHEDULER, if set) takes SLOW_HANDLER_SECONDS (default 0.5) to "process"; then its taskId is
appended to SLOW_HANDLER_OUT (or printed). Press Ctrl-C (or send SIGTERM) mid-burst: the
listener takes no new messages, lets the running handlers finish, acks them and exits 0;
everything else stays on the broker for the next run. A second Ctrl-C exits at once.

    SLOW_HANDLER_SECONDS=1 tcpulse listen examples/slow_handler.py --queue slow --concurrency 4

Several processes started with the same --queue share its messages (competing consumers).
"""
import os
import time

import tcpulse
from tcpulse import QueueEvents

SECONDS = float(os.environ.get("SLOW_HANDLER_SECONDS", "0.5"))
OUT = os.environ.get("SLOW_HANDLER_OUT")
SCHEDULER = os.environ.get("SLOW_HANDLER_SCHEDULER")  # only this scheduler's tasks (unset: all)


@tcpulse.on(QueueEvents.taskCompleted, schedulerId=SCHEDULER)
def completed(event):
    time.sleep(SECONDS)
    line = event.fields["taskId"]
    if OUT is None:
        print("processed", line, flush=True)
        return
    with open(OUT, "a") as out:  # one short append per message: whole lines even across processes
        out.write(line + "\n")
