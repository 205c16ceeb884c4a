"""React to tasks indexed under one namespace, using the CC'd `index.*` routes of their messages.

A task's `routes` (e.g. `index.project.example.app.v1.latest`) are CC'd on its messages as
`route.index....`; `route="index.<namespace>.#"` binds exactly those.

    tcpulse listen examples/index_route_listener.py --broker memory:// \\
        --replay examples/messages/index-routes.jsonl --exit-when-idle
"""
import os

import tcpulse
from tcpulse import QueueEvents

NAMESPACE = os.environ.get("INDEX_NAMESPACE", "project.example")

app = tcpulse.Listener("index-watcher")


@app.on(QueueEvents.taskCompleted, route=f"index.{NAMESPACE}.#")
def indexed(event):
    paths = [r[len("index."):] for r in event.routes if r.startswith(f"index.{NAMESPACE}.")]
    print(f"indexed    {event.fields['taskId']} at {', '.join(paths)}")
