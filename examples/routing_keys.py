"""Routing keys as a library, without a listener: build binding patterns for another AMQP
consumer, build a concrete key to publish, and parse a key you received.

    python examples/routing_keys.py
"""
from tcpulse import QueueEvents

# A binding (exchange + pattern), also readable like the official client's dict.
binding = QueueEvents.taskCompleted(taskGroupId="Q2ZlV3k3QmWq2RvdcYxWFA")
print("bind", binding["exchange"], binding["routingKeyPattern"])

# The same exchange on a deployment with its own exchange prefix.
staging = QueueEvents(exchangePrefix="exchange/taskcluster-queue-staging/v1/")
print("bind", staging.taskFailed().exchange, staging.taskFailed().routing_key_pattern)

# A concrete key, as the queue service would publish it (optional fields become '_').
key = QueueEvents.taskCompleted.routing_key(
    taskId="Vj4tUqDCTWqRUhx_sYtT2A", runId=0, workerGroup="us-west-2", workerId="i-0c2b4f1a93e8d7a21",
    provisionerId="aws-provisioner-v1", workerType="gecko-t-linux-large", schedulerId="gecko-level-3",
    taskGroupId="Q2ZlV3k3QmWq2RvdcYxWFA")
print("key ", key)

# And back: the fields of a key you received.
fields = QueueEvents.taskCompleted.parse(key)
print("task", fields["taskId"], "run", fields["runId"], "on", fields["workerType"])
