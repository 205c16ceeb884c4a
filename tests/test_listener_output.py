"""What a listener tells its operator (issue 12, items 15 and 19): `python my_handlers.py` with
`app.run()` logs like `tcpulse listen` when the application configured no logging, and the
counts of a run read right (a retried message is received once; prefetched messages returned
unstarted at shutdown were not received)."""
import signal
import subprocess
import sys
import threading
import time

import kombu

from tcpulse import Listener, QueueEvents
from listenerkit import running, task_key, wait_for

COMPLETED = QueueEvents.taskCompleted

SCRIPT = '''
import logging
from tcpulse import Listener, QueueEvents

CONFIGURE
app = Listener("NAME", broker="memory://")


@app.on(QueueEvents.taskCompleted)
def done(event):
    pass


if __name__ == "__main__":
    app.run()
'''


def run_script_until_sigterm(tmp_path, name, configure=""):
    script = tmp_path / "my_handlers.py"
    script.write_text(SCRIPT.replace("NAME", name).replace("CONFIGURE", configure))
    process = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)
    time.sleep(2)  # the embedded broker is consuming well within this
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=30)[1]
    assert process.returncode == 0, err
    return err.splitlines()


def test_a_script_calling_app_run_without_logging_configured_logs_its_queue_connection_and_summary(
        tmp_path, unique_name):
    lines = run_script_until_sigterm(tmp_path, unique_name)
    queue = f"queue/guest/{unique_name}"
    assert lines[0].endswith(f"INFO tcpulse.listener: declared {queue} with 1 binding(s): "
                             f"{COMPLETED.exchange} primary.*.*.*.*.*.*.*.*.#"), lines
    assert lines[1].endswith("INFO tcpulse.listener: consuming from memory:// (prefetch 10)"), lines
    assert lines[-1].endswith(f"INFO tcpulse.listener: stopped listening on {queue}: received 0 messages; "
                              "handled: none; unmatched 0, retried 0, dead-lettered 0"), lines


def test_app_run_leaves_logging_the_application_configured_alone(tmp_path, unique_name):
    lines = run_script_until_sigterm(tmp_path, unique_name, configure="logging.basicConfig(level=logging.WARNING)")
    assert lines == []


def test_a_retried_message_is_received_once(unique_name):
    app = Listener(unique_name, broker="memory://", retry_delays=(0.1,))
    attempts = []

    @app.on(COMPLETED)
    def flaky(event):
        attempts.append(event.attempt)
        if event.attempt == 1:
            raise ConnectionError("database down")
    with running(app):
        with app._address.connection() as conn:
            kombu.Producer(conn.channel()).publish({}, exchange=COMPLETED.exchange, routing_key=task_key())
        wait_for(lambda: app.metrics.get("acked") == 2, what="the retry to succeed")
    assert attempts == [1, 2]
    assert (app.metrics.get("received"), app.metrics.get("retried")) == (1, 1)
    assert app.metrics.summary() == f"received 1 message; handled: {flaky.__module__}.{test_a_retried_message_is_received_once.__name__}.flaky 1; " \
                                    "unmatched 0, retried 1, dead-lettered 0"


def test_messages_prefetched_but_returned_unstarted_at_shutdown_are_not_counted_as_received(unique_name):
    app = Listener(unique_name, broker="memory://", prefetch=10, shutdown_grace=5)
    started, release = threading.Event(), threading.Event()

    @app.on(COMPLETED)
    def slow(event):
        started.set()
        release.wait(10)
    with running(app):
        with app._address.connection() as conn:
            producer = kombu.Producer(conn.channel())
            for _ in range(5):
                producer.publish({}, exchange=COMPLETED.exchange, routing_key=task_key())
        assert started.wait(10)
        wait_for(lambda: app._consumer.pool.pending == 5, what="the other four to be prefetched")
        threading.Timer(0.3, release.set).start()
    assert app.metrics.get("received") == app.metrics.get("acked") == 1
