"""Issue 19 item 6, the smaller gaps two ports to tcpulse hit: CC entries as received, `fields`
without `reserved`, prefetch 0, auto-delete named queues, a user's own exchange declared beside
Taskcluster's, readable handler names. On RabbitMQ as a Pulse-permission user."""
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import tcpulse
from tcpulse import Binding, Listener, QueueEvents
from listenerkit import Publisher, queue_name, queued, running, task_key, wait_for  # noqa: F401 - queue_name is a fixture

pytestmark = pytest.mark.rabbitmq
COMPLETED = QueueEvents.taskCompleted
REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"


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


def test_prefetch_0_is_unlimited_with_a_warning_and_every_message_is_handled(pulse_user, taskcluster_exchanges, queue_name, caplog):
    caplog.set_level(logging.INFO, logger="tcpulse")
    app = Listener(queue_name, broker=pulse_user.url, prefetch=0, concurrency=4)
    assert app.prefetch == 0 and "prefetch 0: the broker sends every waiting message at once" in caplog.text
    seen = []
    app.add_handler(lambda event: seen.append(event.body["n"]), COMPLETED, taskGroupId=queue_name)
    with Publisher() as pub:
        with running(app):
            for n in range(300):
                pub.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name), {"n": n})
            wait_for(lambda: app.metrics.get("acked") == 300, what="300 messages acked")
    assert sorted(seen) == list(range(300)) and "prefetch unlimited" in caplog.text


def test_an_auto_delete_named_queue_goes_away_with_its_last_consumer(pulse_user, taskcluster_exchanges, queue_name):
    app = Listener(queue_name, broker=pulse_user.url, auto_delete=True)
    app.add_handler(lambda event: None, COMPLETED, taskGroupId=queue_name)
    with running(app):
        assert queued(pulse_user.url, app.queue) == 0  # there while it consumes
    wait_for(lambda: not _exists(pulse_user.url, app.queue), timeout=10, what="the queue to go away")
    with pytest.raises(ValueError, match="auto_delete=True needs queue_type='classic'"):
        Listener(queue_name, auto_delete=True, queue_type="quorum")


def test_a_listener_creates_its_users_own_exchange_while_it_only_checks_taskclusters(pulse_user, taskcluster_exchanges, queue_name):
    own = f"exchange/{pulse_user.name}/v1/{queue_name}"
    app = Listener(queue_name, broker=pulse_user.url, declare_exchanges=[own])
    seen = []
    app.add_handler(lambda event: seen.append(event.exchange), Binding(own, "build.#"))
    app.add_handler(lambda event: seen.append(event.exchange), COMPLETED, taskGroupId=queue_name)
    with running(app), tcpulse.Publisher(pulse_user.url) as mine, Publisher() as taskcluster:
        mine.publish(own, {"n": 1}, routing_key="build.linux")
        taskcluster.publish(COMPLETED.exchange, task_key(taskGroupId=queue_name), {"n": 2})
        wait_for(lambda: len(seen) == 2, what="a message from each exchange")
    assert sorted(seen) == sorted([own, COMPLETED.exchange])
    with pytest.raises(ValueError, match="declare_exchanges must be True, False, or the exchanges to create"):
        Listener(queue_name, declare_exchanges=["task-completed"])


def _exists(url, queue):
    import amqp

    try:
        queued(url, queue)
        return True
    except amqp.exceptions.NotFound:
        return False


def test_the_cli_takes_prefetch_0_and_auto_delete(tmp_path):
    done = subprocess.run([str(TCPULSE), "listen", "examples/task_group_watcher.py", "--broker", "memory://",
                           "--queue", "dev", "--prefetch", "0", "--auto-delete", "--exit-when-idle",
                           "--idle-seconds", "0.2"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "prefetch 0: the broker sends every waiting message at once" in done.stderr
    assert "consuming from memory:// (prefetch unlimited)" in done.stderr


def test_the_documented_app_metrics_example_runs_and_renders_what_the_docs_say(capsys):
    import io
    import re
    import contextlib

    import kombu

    from tcpulse._ops.health import PROMETHEUS_CONTENT_TYPE

    guide = (REPO / "docs" / "operating.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- metrics-example -->\n```python\n(.*?)```", guide, re.S).group(1)
    assert "text/plain; version=0.0.4" in guide and PROMETHEUS_CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    namespace = {"__name__": "metrics_example"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "docs/operating.md", "exec"), namespace)  # noqa: S102 - the guide's own example
    app = namespace["app"]
    assert app.metrics.summary().startswith("received 0 messages; handled: none;")
    with running(app), kombu.Connection(str(app.broker), transport="tcpulse._broker.broker:Transport") as conn:
        kombu.Producer(conn.channel()).publish({"n": 1}, exchange=COMPLETED.exchange, routing_key=task_key())
        wait_for(lambda: app.metrics.get("handled", handler="metrics_example.completed") == 1, what="one message handled")
    text = app.metrics.render_prometheus()
    labels = f'listener="{app.label}",handler="metrics_example.completed"'
    for line in ("# TYPE tcpulse_received_total counter", f'tcpulse_received_total{{listener="{app.label}"}} 1',
                 f"tcpulse_handled_total{{{labels}}} 1", "# TYPE tcpulse_handler_seconds histogram",
                 f"tcpulse_handler_seconds_count{{{labels}}} 1"):
        assert line in text.splitlines(), (line, text)
    assert "tcpulse_last_message_age_seconds " in text and app.metrics.snapshot()["received"] == 1
