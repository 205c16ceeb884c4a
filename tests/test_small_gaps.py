"""Issue 19 item 6, the smaller gaps two ports to tcpulse hit: CC entries as received, `fields`
without `reserved`, prefetch 0, auto-delete named queues, a user's own exchange declared beside
Taskcluster's, readable handler names. On RabbitMQ as a Pulse-permission user."""
import pytest

from tcpulse import Listener, QueueEvents
from listenerkit import Publisher, queue_name, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture

pytestmark = pytest.mark.rabbitmq
COMPLETED = QueueEvents.taskCompleted


def test_event_cc_is_every_cc_entry_as_received_and_fields_leave_out_reserved(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url)
    events = []
    app.add_handler(events.append, COMPLETED, route=f"index.{queue_name}.#")
    with running(app), Publisher() as pub:
        pub.publish(COMPLETED.exchange, task_key(taskId="t1"), {"n": 1},
                    headers={"CC": [f"route.index.{queue_name}.a", "notify.irc-channel.x", "route.other"]})
        wait_for(lambda: events, what="the CC'd message")
    event = events[0]
    assert event.cc == [f"route.index.{queue_name}.a", "notify.irc-channel.x", "route.other"]
    assert event.routes == [f"index.{queue_name}.a", "other"]
    assert event.fields["taskId"] == "t1" and "reserved" not in event.fields
