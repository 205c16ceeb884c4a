"""The health endpoint (/live, /ready, /metrics), JSON log lines and the queue backlog warning.

The server tests use real sockets with a small stand-in for the listener (only `is_ready()` and
`metrics` are read); the broker tests run real listeners against the private RabbitMQ node
(tests/faultkit.py), which they stop and start to show /ready following the connection.
"""
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

import faultkit
from tcpulse import Listener, QueueEvents
from tcpulse._listen.backlog import BacklogWatch
from tcpulse._ops.health import HealthServer
from tcpulse._ops.logsetup import JsonFormatter
from tcpulse._ops.metrics import Metrics


class Flag:
    """Stands in for a listener: the health server reads only these two attributes."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.ready = False

    def is_ready(self) -> bool:
        return self.ready


def get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type"), exc.read().decode()


@pytest.fixture
def flag_server():
    flag = Flag()
    with HealthServer(flag, port=0) as server:
        yield flag, server.port


def test_live_is_200_and_ready_follows_the_listener_flag_both_ways(flag_server):
    flag, port = flag_server
    assert get(port, "/live")[0] == 200
    status, _, body = get(port, "/ready")
    assert (status, body) == (503, "not ready: not connected to the broker or not consuming\n")
    flag.ready = True
    assert get(port, "/ready")[:3:2] == (200, "ready\n")
    flag.ready = False
    assert get(port, "/ready")[0] == 503


def test_ready_answers_503_when_the_flag_itself_raises(flag_server, caplog):
    flag, port = flag_server
    flag.is_ready = lambda: 1 / 0
    assert get(port, "/ready")[0] == 503
    assert "is_ready() raised" in caplog.text


def test_metrics_are_prometheus_text_with_every_counter_and_handler_label(flag_server):
    flag, port = flag_server
    flag.metrics.inc("received", 3)
    flag.metrics.inc("handler_errors", handler='app."odd"')
    flag.metrics.set_gauge("queue_messages", 7)
    status, content_type, body = get(port, "/metrics")
    assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
    for name in ("received", "acked", "retried", "dead_lettered", "handler_errors", "reconnects"):
        assert f"# TYPE tcpulse_{name}_total counter" in body
    assert "tcpulse_received_total 3\n" in body
    assert 'tcpulse_handler_errors_total{handler="app.\\"odd\\""} 1\n' in body
    assert "# TYPE tcpulse_queue_messages gauge\ntcpulse_queue_messages 7\n" in body
    assert "tcpulse_last_message_age_seconds " in body


def test_an_unknown_path_is_404_naming_the_valid_ones(flag_server):
    _, port = flag_server
    status, _, body = get(port, "/healthz")
    assert status == 404
    assert body == "no such path '/healthz'; try /, /live, /ready or /metrics\n"


def test_the_server_binds_loopback_only_by_default(flag_server):
    _, port = flag_server
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try")
    with pytest.raises(OSError):
        socket.create_connection((outward, port), timeout=2).close()


def _outward_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for a UDP connect
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_a_taken_port_fails_at_once_with_a_message_naming_it(flag_server):
    flag, port = flag_server
    with pytest.raises(OSError, match=f"health endpoint cannot listen on 127.0.0.1:{port}: "):
        HealthServer(flag, port=port).start()


def test_stop_releases_the_port_and_is_safe_twice():
    server = HealthServer(Flag(), port=0).start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_json_log_lines_carry_time_level_logger_message_and_exception():
    try:
        raise KeyError("boom")
    except KeyError:
        record = logging.LogRecord("tcpulse.listener", logging.ERROR, __file__, 1, "handler %s failed",
                                   ("app.h",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["logger"] == "tcpulse.listener"
    assert line["message"] == "handler app.h failed"
    assert line["time"].endswith("Z") and "KeyError: 'boom'" in line["exc"]


def test_backlog_warns_on_crossing_again_when_it_doubles_and_says_when_it_drains(caplog):
    caplog.set_level(logging.INFO, logger="tcpulse.backlog")
    metrics = Metrics()
    watch = BacklogWatch("queue/me/app", threshold=100, metrics=metrics)
    assert [watch.observe(n) for n in (50, 150, 200, 299, 300, 40)] == [False, True, False, False, True, False]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].startswith("queue queue/me/app holds 150 messages, over the warning threshold of 100")
    assert "Pulse deletes queues that grow too large" in warnings[0]
    assert "queue queue/me/app is back to 40 messages (warning threshold 100)" in caplog.text
    assert metrics.gauge("queue_messages") == 40


def test_backlog_polls_only_when_its_interval_has_passed():
    now = [0.0]
    watch = BacklogWatch("queue/me/app", threshold=10, interval=30, clock=lambda: now[0])

    class Channel:
        calls = 0

        def queue_declare(self, queue, passive):
            assert (queue, passive) == ("queue/me/app", True)
            Channel.calls += 1
            return queue, 12, 1

    assert watch.poll(Channel()) == 12
    now[0] = 29.0
    assert watch.poll(Channel()) is None
    now[0] = 30.0
    assert watch.poll(Channel()) == 12 and Channel.calls == 2


def test_backlog_options_are_checked():
    with pytest.raises(ValueError, match=r"backlog threshold must be a message count >= 0 \(got -1\)"):
        BacklogWatch("q", threshold=-1)
    with pytest.raises(ValueError, match=r"backlog interval must be a positive number of seconds \(got 0\)"):
        BacklogWatch("q", interval=0)


# -- against a real broker (the private node) -------------------------------------------------

@pytest.fixture(scope="module")
def node_user(private_rabbitmq):
    faultkit.declare_exchange(private_rabbitmq.guest_url)
    return private_rabbitmq.add_pulse_user("health")


def publish(node, ids):
    ledger = faultkit.Ledger(".")
    faultkit.BurstPublisher(node.guest_url, ledger, batch=100).publish(ids)


@pytest.mark.rabbitmq
def test_ready_flips_to_not_ready_while_the_broker_is_down_and_back_after(private_rabbitmq, node_user, tmp_path,
                                                                           unique_name):
    script = tmp_path / "listener.py"
    script.write_text(faultkit.LISTENER_SCRIPT)
    ledger = faultkit.Ledger(tmp_path)
    proc = faultkit.ListenerProcess(script, node_user.url, unique_name, ledger, "health")
    try:
        proc.wait_ready()
        assert proc.get("/live")[0] == 200
        publish(private_rabbitmq, range(50))
        faultkit.wait_for(lambda: len(ledger.handled_by("health")) == 50, 30, "50 messages handled", proc)

        private_rabbitmq.stop_app()
        faultkit.wait_for(lambda: proc.get("/ready")[0] == 503, 30, "/ready to answer 503", proc)
        assert proc.get("/live")[0] == 200, "the process is alive while the broker is away"
        time.sleep(1.5)
        assert proc.get("/ready")[0] == 503, "not ready as long as the broker is down"

        private_rabbitmq.start_app()
        proc.wait_ready(timeout=60)
        publish(private_rabbitmq, range(50, 80))
        faultkit.wait_for(lambda: len(ledger.handled_by("health")) == 80, 30, "30 more messages handled", proc)
        metrics = proc.metrics()
        series = f'{{listener="{unique_name}"}}'
        assert metrics["tcpulse_reconnects_total" + series] >= 1
        assert metrics["tcpulse_received_total" + series] == sum(ledger.handled_by("health").values())
        assert proc.terminate() == 0
    finally:
        if proc.proc.poll() is None:
            proc.kill()


@pytest.mark.rabbitmq
def test_a_backlog_over_the_threshold_is_logged_by_a_running_listener(private_rabbitmq, node_user, unique_name,
                                                                      caplog, monkeypatch):
    monkeypatch.setattr("tcpulse._listen.backlog.DEFAULT_INTERVAL", 0.2)
    caplog.set_level(logging.WARNING, logger="tcpulse.backlog")
    release = threading.Event()
    app = Listener(unique_name, broker=node_user.url, prefetch=1)
    app.backlog_warning = 20

    @app.on(QueueEvents.taskCompleted(taskGroupId="group"))
    def slow(event):
        release.wait(10)

    runner = threading.Thread(target=app.run, daemon=True)
    runner.start()
    try:
        faultkit.wait_for(app.is_ready, 30, "the listener to consume")
        publish(private_rabbitmq, range(1000, 1040))
        faultkit.wait_for(lambda: "over the warning threshold of 20" in caplog.text, 30, "the backlog warning")
        assert f"queue queue/{node_user.name}/{unique_name} holds " in caplog.text
        assert app.metrics.gauge("queue_messages") > 20
    finally:
        release.set()
        app.stop()
        runner.join(30)
    assert not runner.is_alive()


# -- wiring: import cost and the command line ----------------------------------------------------

def test_the_health_and_backlog_modules_load_neither_kombu_nor_requests():
    code = ("import sys, tcpulse._ops.health, tcpulse._listen.backlog; "
            "print(sorted(m for m in ('kombu', 'requests', 'amqp') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_listen_rejects_a_bad_health_port_with_a_usage_error(tmp_path, port):
    script = tmp_path / "watch.py"
    script.write_text(faultkit.LISTENER_SCRIPT)
    done = _run_with_ledger(tmp_path, "listen", str(script), "--health-port", port)
    assert done.returncode == 2
    assert f"argument --health-port: expected a TCP port number from 1 to 65535 (got '{port}')" in done.stderr


def test_listen_with_a_taken_health_port_exits_1_with_one_line(tmp_path):
    script = tmp_path / "watch.py"
    script.write_text(faultkit.LISTENER_SCRIPT)
    with HealthServer(Flag(), port=0) as taken:
        port = taken.port
        done = _run_with_ledger(tmp_path, "listen", str(script), "--broker", "memory://", "--health-port", str(port))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"tcpulse: error: health endpoint cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in done.stderr


def test_listen_log_json_writes_one_json_object_per_line(tmp_path):
    script = tmp_path / "watch.py"
    script.write_text(faultkit.LISTENER_SCRIPT)
    done = _run_with_ledger(tmp_path, "listen", str(script), "--broker", "memory://", "--log-json",
                            "--exit-when-idle", "--idle-seconds", "0.3")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "tcpulse.listener" for line in lines)


def _run_with_ledger(tmp_path, *args):
    env = dict(os.environ, LEDGER_FILE=str(tmp_path / "handled.txt"))
    return subprocess.run([sys.executable, "-m", "tcpulse", *args], capture_output=True, text=True, timeout=60,
                          env=env)


def test_head_answers_like_get_without_a_body(flag_server):
    flag, port = flag_server
    flag.ready = True
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ready", method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200 and resp.headers["Content-Length"] == "6" and resp.read() == b""
