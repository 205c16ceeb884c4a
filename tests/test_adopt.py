"""Adopting a queue another tool declared (RabbitMQ, Pulse-permission user): `tcpulse listen
--queue NAME --adopt` takes over a durable, argument-less queue with messages waiting, while a
publisher keeps publishing, and loses none; without `--adopt` the conflict names it, and a
queue of the other type names `tcpulse migrate`."""
import re
import signal
import subprocess
import sys
import threading
import time

import kombu
import pytest

from listenerkit import Publisher, handled_ids, queue_name, queued, running, task_key, wait_for  # noqa: F401
from tcpulse import Listener, QueueEvents
from tcpulse._broker.connection import resolve_broker
from tcpulse._listen.delivery import Delivery
from tcpulse._listen.outcome import RetryPolicy
from tcpulse._listen.layout import locate
from tcpulse._listen.topology import ListenerNames, QueueConflict
from tcpulse._ops.maintenance import adopt

COMPLETED = QueueEvents.taskCompleted
WAITING = 1000

SCRIPT = """\
import tcpulse

@tcpulse.on(tcpulse.QueueEvents.taskCompleted, taskGroupId={group!r})
def ingest(event):
    with open({out!r}, "a") as f:
        f.write(f"{{event.body['n']}}\\n")
"""


def declare_foreign_queue(pulse_user, queue: str, group: str, arguments=None) -> None:
    """What a kombu (or aioamqp) consumer declares: a durable queue with no arguments, bound to
    the Queue's task-completed exchange for one task group."""
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments or {})
        channel.queue_bind(queue, COMPLETED.exchange, f"primary.*.*.*.*.*.*.*.{group}.#")


class KeepPublishing(threading.Thread):
    """Publishes message n = start, start + 1, ... (publisher-confirmed) until stopped."""

    def __init__(self, group: str, start: int) -> None:
        super().__init__(name="adoption-publisher", daemon=True)
        self.group, self.next = group, start
        self.halt = threading.Event()

    def run(self) -> None:
        with Publisher() as publisher:
            while not self.halt.is_set():
                publisher.publish(COMPLETED.exchange, task_key(taskId=f"t{self.next}", taskGroupId=self.group),
                                  {"n": self.next})
                self.next += 1


def test_listen_adopt_takes_over_a_foreign_queue_with_messages_waiting_and_arriving_and_loses_none(
        pulse_user, taskcluster_exchanges, queue_name, tmp_path):
    queue = f"queue/{pulse_user.name}/{queue_name}"
    declare_foreign_queue(pulse_user, queue, queue_name)
    with Publisher() as publisher:
        for n in range(WAITING):
            publisher.publish(COMPLETED.exchange, task_key(taskId=f"t{n}", taskGroupId=queue_name), {"n": n})
    assert queued(pulse_user.url, queue) == WAITING
    out, script = tmp_path / "handled.txt", tmp_path / "ingest.py"
    script.write_text(SCRIPT.format(group=queue_name, out=str(out)))
    publishing = KeepPublishing(queue_name, WAITING)
    publishing.start()
    wait_for(lambda: publishing.next > WAITING + 50, what="the publisher under way")
    started_at = publishing.next
    listener = subprocess.Popen([sys.executable, "-m", "tcpulse", "listen", str(script), "--queue", queue_name,
                                 "--adopt", "--broker", pulse_user.url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(handled_ids(out)) >= WAITING or listener.poll() is not None, 60,
                 what="the waiting messages handled")
        time.sleep(0.5)  # and a while of live traffic on the adopted queue
        publishing.halt.set()
        publishing.join(10)
        published = publishing.next
        wait_for(lambda: len(set(handled_ids(out))) >= published or listener.poll() is not None, 60,
                 what="every published message handled")
    finally:
        publishing.halt.set()
        listener.send_signal(signal.SIGTERM)
        stdout, stderr = listener.communicate(timeout=60)
    assert listener.returncode == 0, stderr[-3000:]
    handled = set(int(n) for n in handled_ids(out))
    assert handled == set(range(published)), f"lost: {sorted(set(range(published)) - handled)[:20]}"
    moved_out = int(re.search(rf"moved (\d+) message\(s\) from {re.escape(queue)} \(another layout\)", stderr).group(1))
    kept = int(re.search(rf"adopted {re.escape(queue)}: (\d+) message\(s\) kept", stderr).group(1))
    # The parking queue took the waiting messages and what was published during the move.
    assert moved_out >= WAITING and kept >= moved_out and started_at < published
    print(f"\n  [adoption] {WAITING} waiting, {published - WAITING} published meanwhile, {kept} moved back, "
          f"{len(handled)} handled, lost 0")
    # The queue is tcpulse's now: declaring it with the listener's own arguments (its private
    # delivery exchange's, from its binding record) is accepted.
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        names = locate(conn, ListenerNames(queue))
        assert names.secret
        layout = Delivery(queue, RetryPolicy(), secret=names.secret).queue_arguments()
        assert conn.channel().queue_declare(queue, durable=True, auto_delete=False, arguments=layout).queue == queue


def test_without_adopt_the_conflict_names_adopt_and_a_queue_of_the_other_type_names_migrate(
        pulse_user, taskcluster_exchanges, queue_name):
    queue = f"queue/{pulse_user.name}/{queue_name}"
    declare_foreign_queue(pulse_user, queue, queue_name)
    app = Listener(queue_name, broker=pulse_user.url)
    app.on(COMPLETED, taskGroupId=queue_name)(print)
    with pytest.raises(QueueConflict) as caught:
        with running(app):
            pass
    assert str(caught.value).endswith("take it over in place, keeping its messages, with --adopt "
                                      "(Listener(..., adopt=True)), which moves it to tcpulse's layout")
    assert "delete_queue" not in str(caught.value)

    adopted = Listener(queue_name, broker=pulse_user.url, adopt=True)  # now tcpulse's classic queue ...
    adopted.on(COMPLETED, taskGroupId=queue_name)(print)
    with running(adopted):
        pass
    quorum = Listener(queue_name, broker=pulse_user.url, queue_type="quorum")
    quorum.on(COMPLETED, taskGroupId=queue_name)(print)
    with pytest.raises(QueueConflict) as caught:
        with running(quorum):
            pass
    assert str(caught.value).endswith(f"it is tcpulse's classic queue: stop its listeners and move it to a quorum "
                                      f"queue without losing a message with `tcpulse migrate {queue_name} --to "
                                      "quorum`")


def test_adopt_leaves_a_queue_alone_that_is_absent_or_already_tcpulses_and_needs_a_name(pulse_user, queue_name):
    delivery = Delivery(f"queue/{pulse_user.name}/{queue_name}", RetryPolicy())
    with resolve_broker(pulse_user.url, environ={}).connection() as conn:
        assert adopt(conn, delivery, [], report=print) is None  # no such queue
        conn.channel().queue_declare(delivery.queue, durable=True, auto_delete=False,
                                     arguments=delivery.queue_arguments())
        assert adopt(conn, delivery, [], report=print) is None  # ours already
    with pytest.raises(ValueError, match="adopt=True needs a named Listener"):
        Listener(adopt=True)
