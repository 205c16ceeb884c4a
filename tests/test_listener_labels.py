"""What tells listeners apart in one process, and what they share: the `listener` attribute and
JSON key of log records, the stderr log handler shared by listeners running at once (removed by
the last to stop, not the first), and the health endpoints mounted in an application's own WSGI
server."""
import contextvars
import json
import logging
import subprocess
import sys
import threading
import wsgiref.simple_server

import tcpulse
from listenerkit import http_get, running
from tcpulse import Listener, QueueEvents
from tcpulse._ops.logsetup import JsonFormatter, speaking_for


def test_a_record_made_for_a_listener_carries_its_label_and_json_lines_name_it():
    def log_one() -> logging.LogRecord:
        speaking_for("firefox-ci")
        return logging.getLogger("tcpulse.listener").makeRecord(
            "tcpulse.listener", logging.INFO, __file__, 1, "consuming from %s", ("node",), None)
    record = contextvars.copy_context().run(log_one)
    assert record.listener == "firefox-ci"
    assert json.loads(JsonFormatter().format(record))["listener"] == "firefox-ci"
    outside = logging.getLogger("tcpulse.listener").makeRecord(
        "tcpulse.listener", logging.INFO, __file__, 1, "no listener here", (), None)
    assert not hasattr(outside, "listener")


def test_the_stderr_handler_stays_until_the_last_listener_running_at_once_is_done():
    # In a fresh interpreter, as `python app.py` with no logging configured (this process's
    # logging is pytest's).
    script = """
import logging
from tcpulse._ops.logsetup import log_to_stderr_unless_configured
logger = logging.getLogger("tcpulse")
first, second = log_to_stderr_unless_configured(), log_to_stderr_unless_configured()
counts = [len(logger.handlers)]
first(); first()  # undoing twice changes nothing
counts.append(len(logger.handlers))
second()
counts.append(len(logger.handlers))
print(counts)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # The first listener to stop must not take the other one's log lines away.
    assert done.stdout.strip() == "[1, 1, 0]"


def test_the_wsgi_app_serves_the_health_endpoints_of_running_listeners_on_the_applications_port():
    app = Listener("wsgi-mounted", broker="memory://")
    app.on(QueueEvents.taskCompleted)(lambda event: None)
    idle = Listener("never-started", broker="memory://")
    server = wsgiref.simple_server.make_server("127.0.0.1", 0, tcpulse.wsgi_app(app),
                                               handler_class=_Quiet)
    both = wsgiref.simple_server.make_server("127.0.0.1", 0, tcpulse.wsgi_app(app, idle), handler_class=_Quiet)
    for one in (server, both):
        threading.Thread(target=one.serve_forever, daemon=True).start()
    try:
        with running(app):
            assert http_get(server.server_port, "/ready") == (200, "ready\n")
            assert http_get(both.server_port, "/ready")[0] == 503  # one of the two is not consuming
            status, text = http_get(server.server_port, "/metrics")
            assert status == 200 and 'tcpulse_received_total{listener="wsgi-mounted"} 0' in text
            assert http_get(server.server_port, "/nothing")[0] == 404
    finally:
        server.shutdown()
        both.shutdown()


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass
