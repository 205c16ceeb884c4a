"""Several listeners in one process: `tcpulse listen` on a script that defines two (the
two-deployments example, as two Pulse users on two vhosts of the real broker), `tcpulse.run`
from Python, and what they share: one SIGTERM, one health endpoint, log lines and /metrics
series that name their listener."""
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import kombu
import pytest

import tcpulse
from conftest import BROKER_HOST, BROKER_PORT, PulseUser, create_pulse_user, rabbitmqctl
from faultkit import free_port, parse_prometheus
from listenerkit import Publisher, http_get as get, task_key, wait_for
from tcpulse import Listener, QueueEvents
from tcpulse._listen.runner import labels_for

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_deployments.py"
COMPLETED = QueueEvents.taskCompleted


@pytest.fixture(scope="module")
def second_deployment(rabbitmq, taskcluster_exchanges):
    """A Pulse user on a vhost of its own, where guest declared the Queue's exchanges (as a
    second Taskcluster deployment's services would)."""
    vhost = f"tcpulse-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    user = create_pulse_user("tcpulse-second")
    rabbitmqctl("set_permissions", "-p", vhost, user.name, f"^(queue/{user.name}/.*|exchange/{user.name}/.*)",
                f"^(queue/{user.name}/.*|exchange/{user.name}/.*)", f"^(queue/{user.name}/.*|exchange/.*)")
    guest = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}/{vhost}"
    with kombu.Connection(guest) as conn:
        channel = conn.channel()
        for exchange in tcpulse.exchanges():
            kombu.Exchange(exchange.exchange, type="topic", durable=True)(channel).declare()
    user.url = f"amqp://{user.name}:{user.password}@{BROKER_HOST}:{BROKER_PORT}/{vhost}"
    yield user, guest
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)
    subprocess.run(["rabbitmqctl", "-q", "delete_user", user.name], capture_output=True, timeout=60)


def test_two_listeners_for_two_pulse_users_in_one_script_each_get_their_own_messages_and_one_sigterm_stops_both(
        pulse_user: PulseUser, second_deployment, tmp_path):
    community, community_guest = second_deployment
    route = f"tc-treeherder-{uuid.uuid4().hex[:8]}"  # no other test's message carries it
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    env = {**os.environ, "FIREFOX_CI_PULSE_URL": pulse_user.url, "COMMUNITY_TC_PULSE_URL": community.url,
           "TREEHERDER_ROUTE": route}
    env.pop("PULSE_URL", None)
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tcpulse", "listen", str(EXAMPLE), "--health-port", str(port)],
                                stdout=stdout, stderr=stderr, env=env)
    try:
        wait_for(lambda: get(port, "/ready")[0] == 200 or proc.poll() is not None, 30, what="both listeners ready")
        assert proc.poll() is None, err.read_text()
        body = {"status": {"state": "completed"}, "runId": 0}
        with Publisher() as firefox, Publisher(community_guest) as other:
            firefox.publish(COMPLETED.exchange, task_key(taskId="fxTask"), body, routes=[f"{route}.v2.try.1"])
            other.publish(COMPLETED.exchange, task_key(taskId="ctTask"), body, routes=[f"{route}.v2.main.2"])
            firefox.publish(COMPLETED.exchange, task_key(taskId="fxOther"), body, routes=["index.project.x"])
        wait_for(lambda: out.read_text().count("\n") >= 2, 30, what="two handled messages")
        _, text = get(port, "/metrics")
        metrics = parse_prometheus(text)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    lines = out.read_text().splitlines()
    assert code == 0, err.read_text()
    assert sorted(lines[:2]) == ["community-tc  ctTask run 0: completed", "firefox-ci    fxTask run 0: completed"]
    assert lines[2:] == [
        "firefox-ci: received 1 message; handled: two_deployments.firefox_ci_task 1; unmatched 0, retried 0, "
        "dead-lettered 0",
        "community-tc: received 1 message; handled: two_deployments.community_tc_task 1; unmatched 0, retried 0, "
        "dead-lettered 0"]
    for label, handler in (("firefox-ci", "firefox_ci_task"), ("community-tc", "community_tc_task")):
        assert metrics[f'tcpulse_handled_total{{listener="{label}",handler="two_deployments.{handler}"}}'] == 1
        assert metrics[f'tcpulse_received_total{{listener="{label}"}}'] == 1
    assert not [series for series in metrics if "listener=" not in series]
    log = err.read_text()
    assert f"[firefox-ci] declared queue/{pulse_user.name}/firefox-ci" in log
    assert f"[community-tc] declared queue/{community.name}/community-tc" in log
    assert "Traceback" not in log


def test_tcpulse_run_stops_the_others_and_raises_when_one_listener_fails(rabbitmq):
    """From Python: a listener whose exchange is missing fails at start; the other one, already
    consuming, is stopped, and run() raises the failure once both have stopped."""
    ok = Listener(broker="memory://", shutdown_grace=1)
    ok.on(COMPLETED)(lambda event: None)
    broken = Listener(broker=rabbitmq)
    missing = f"exchange/tcpulse-test-missing/{uuid.uuid4().hex[:8]}"
    broken.on(tcpulse.Binding(missing, "primary.#"))(lambda event: None)
    with pytest.raises(tcpulse.BrokerFailure, match=f"exchange '{missing}' does not exist"):
        tcpulse.run(ok, broken)
    assert ok.stopping and not ok.is_ready()


def test_labels_tell_apart_listeners_that_share_a_name():
    same = [Listener("ingest", broker="amqp://fx:p@h//"), Listener("ingest", broker="amqp://tc:p@h//")]
    assert labels_for(same) == ["fx/ingest", "tc/ingest"]
    twins = [Listener("ingest", broker="amqp://fx:p@a//"), Listener("ingest", broker="amqp://fx:p@b//")]
    assert labels_for(twins) == ["fx/ingest", "fx/ingest#2"]


def test_tcpulse_run_refuses_what_is_not_a_listener_or_the_same_one_twice():
    app = Listener(broker="memory://")
    with pytest.raises(TypeError, match="at least one Listener"):
        tcpulse.run()
    with pytest.raises(TypeError, match="takes Listener objects"):
        tcpulse.run(app, "firefox-ci")
    with pytest.raises(ValueError, match="same Listener twice"):
        tcpulse.run(app, app)


def test_listen_refuses_queue_for_a_script_with_several_listeners(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tcpulse", "listen", str(EXAMPLE), "--queue", "x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("--queue names one listener, and " + str(EXAMPLE) + " defines 2 "
                                        "(firefox-ci, community-tc): name each in the script")
