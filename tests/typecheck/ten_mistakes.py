"""User code with ten typical mistakes, each marked `# mistake`: tests/test_static_types.py runs
mypy (and pyright) over this file and expects an error on every marked line and on no other.
"""
import tcpulse
from tcpulse import Event, Listener, QueueEvents
from tcpulse.types.queue import TaskCompletedMessage

app = Listener("task-watcher", concurency=3)  # mistake: misspelt Listener option
queue = tcpulse.Queue({"rootURL": "https://tc.example.com"})  # mistake: misspelt client option
index = tcpulse.Indx({"rootUrl": "https://tc.example.com"})  # mistake: misspelt service class


@app.on(QueueEvents.taskCompleeted)  # mistake: misspelt exchange
def completed(event: Event[TaskCompletedMessage]) -> None:
    print(event.body["status"]["taskID"])  # mistake: misspelt body key
    run_id: str = event.body["runId"]  # mistake: runId is an int
    task = queue.taks(event.body["status"]["taskId"])  # mistake: misspelt method
    print(run_id, task)


binding = QueueEvents.taskFailed(taskGroupID="g")  # mistake: misspelt routing-key field
pages = tcpulse.Queue().listTaskGroup("g", query={"limt": 10})  # mistake: misspelt query key
name = tcpulse.Queue().task("t")["metadata"]["nmae"]  # mistake: misspelt answer key
