"""The two brokers the async-handler tests run on: the embedded `memory://` broker and the real
RabbitMQ as a user with Pulse's permissions (publishing as guest, like a Taskcluster service)."""
import json
from typing import Any, Optional, Sequence

import kombu
import pytest

from tcpulse import QueueEvents
from tcpulse._broker.broker import Transport
from listenerkit import Publisher, delete_listener_topology, queued, task_key

COMPLETED = QueueEvents.taskCompleted


class MemoryBroker:
    url = "memory://"

    def __init__(self, name: str) -> None:
        self.name = name
        self.conn = kombu.Connection("memory://", transport=Transport)
        self.producer = kombu.Producer(self.conn.channel(), auto_declare=False)

    def key(self, **fields: str) -> str:
        return task_key(COMPLETED, taskGroupId=self.name, **fields)

    def publish(self, body: Any, routes: Sequence[str] = (), headers: Optional[dict] = None, **fields: str) -> str:
        key = self.key(**fields)
        headers = {**({"CC": [f"route.{r}" for r in routes]} if routes else {}), **(headers or {})}
        self.producer.publish(json.dumps(body), exchange=COMPLETED.exchange, routing_key=key,
                              headers=headers, content_type="application/json")
        return key

    def queued(self, queue: str) -> int:
        return self.conn.channel().queue_declare(queue=queue, passive=True).message_count

    def close(self) -> None:
        self.conn.release()


class RabbitBroker(MemoryBroker):
    def __init__(self, name: str, pulse_user: Any) -> None:
        self.name = name
        self.user = pulse_user
        self.url = pulse_user.url
        self.publisher = Publisher()

    def publish(self, body: Any, routes: Sequence[str] = (), headers: Optional[dict] = None, **fields: str) -> str:
        key = self.key(**fields)
        self.publisher.publish(COMPLETED.exchange, key, body, routes=routes, headers=headers)
        return key

    def queued(self, queue: str) -> int:
        return queued(self.url, queue)

    def close(self) -> None:
        self.publisher.close()
        delete_listener_topology(self.url, self.user.name, self.name)


@pytest.fixture(params=["memory", "rabbitmq"])
def broker(request, unique_name):
    """Each test runs once on memory:// and once on RabbitMQ (as a Pulse user); its listener
    is named `broker.name` and binds on taskGroupId=`broker.name`, which no other test uses."""
    if request.param == "memory":
        made = MemoryBroker(unique_name)
    else:
        request.applymarker(pytest.mark.rabbitmq)
        request.getfixturevalue("taskcluster_exchanges")
        made = RabbitBroker(unique_name, request.getfixturevalue("pulse_user"))
    yield made
    made.close()
