"""A quorum listener on a 3-node RabbitMQ cluster survives losing the node it is connected to.

The cluster is scripts/rabbitmq_cluster.py's (own node names, ports, data dirs and cookie; the
system broker on 5672 is left alone): started here for the module, or, when TCPULSE_CLUSTER_DIR
names a directory where `rabbitmq_cluster.py start --dir DIR` runs one already (as .ci/run does),
that one. The ledger works as in tests/test_faults.py: ids confirmed by the broker vs ids the
`tcpulse listen` process handled (written unbuffered before the ack). Run alone with:
    .venv/bin/pytest -m cluster
"""
import json
import os
import subprocess
import sys
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterable

import pytest

import faultkit
from faultkit import Cluster, Ledger, ListenerProcess, add_pulse_user, counter, free_ports, show, wait_for

pytestmark = pytest.mark.cluster

COUNT = 5_000


@pytest.fixture(scope="module")
def rabbit_cluster():
    if os.environ.get("TCPULSE_CLUSTER_DIR"):
        yield Cluster.load(Path(os.environ["TCPULSE_CLUSTER_DIR"]))
        return
    if not (faultkit.RABBIT_BIN / "rabbitmq-server").exists():
        message = f"cannot start a RabbitMQ cluster: {faultkit.RABBIT_BIN / 'rabbitmq-server'} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    ports = free_ports(6)  # three AMQP and three distribution ports, all different
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="tcpulse-cluster-")), ports[:3], dist_ports=ports[3:]).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cluster_user(rabbit_cluster):
    faultkit.declare_exchange(rabbit_cluster.urls[0])
    return add_pulse_user(rabbit_cluster.nodes, "cluster")


class FailoverPublisher(faultkit.BurstPublisher):
    """Publishes `{"id": n}` (as a Taskcluster service would) one at a time with publisher confirms, through the nodes of a
    ';'-separated URL in turn: a publish that fails (its node went away) is sent again to the
    next node. An id counts as published once a node confirmed it."""

    def __init__(self, url: str, ledger: Ledger, pause: float = 0.0) -> None:
        from tcpulse._broker.connection import resolve_broker

        super().__init__(url, ledger, pause=pause)
        self.nodes = resolve_broker(url, environ={}).nodes
        self.failovers = 0

    def publish(self, ids: Iterable[int], max_faults: int = 100) -> None:
        import kombu

        node, conn, producer = 0, None, None
        ids, position = list(ids), 0
        while position < len(ids):
            mid = ids[position]
            try:
                if producer is None:
                    conn = self.nodes[node].connection(transport_options={"confirm_publish": True},
                                                       connect_timeout=2)
                    conn.ensure_connection(max_retries=0)
                    producer = kombu.Producer(conn.channel(), auto_declare=False)
                producer.publish(f'{{"id": {mid}}}', exchange=faultkit.EXCHANGE,
                                 routing_key=faultkit.ROUTING_KEY.format(id=mid),
                                 content_type="application/json", delivery_mode=2)
            except (OSError, *_broker_errors()):
                self.failovers += 1
                if self.failovers > max_faults:
                    raise
                faultkit._close_quietly(conn)
                node, conn, producer = (node + 1) % len(self.nodes), None, None
                time.sleep(0.1)
                continue
            self.ledger.published.append(mid)
            position += 1
            if self.pause:
                time.sleep(self.pause)
        faultkit._close_quietly(conn)

def _broker_errors():
    """What a node going away raises (not a refusal, which would be refused again elsewhere),
    and a nack: a quorum queue electing a new leader refuses what it cannot store yet."""
    import amqp.exceptions
    import kombu.exceptions

    return (amqp.exceptions.ConnectionError, amqp.exceptions.RecoverableConnectionError,
            amqp.exceptions.MessageNacked, kombu.exceptions.OperationalError)


def connected_port(process: ListenerProcess) -> int:
    """The port of the node the listener says it is consuming from (its latest connection)."""
    found = re.findall(r"consuming from amqp://[^@]+@127\.0\.0\.1:(\d+)/", process.log())
    assert found, f"the listener never said where it consumes from:\n{process.log()[-3000:]}"
    return int(found[-1])


def test_a_quorum_listener_on_three_nodes_loses_nothing_when_its_node_is_killed_mid_stream(
        rabbit_cluster, cluster_user, tmp_path, unique_name, capsys):
    script, ledger = faultkit.scenario(tmp_path, capsys)
    listener = ListenerProcess(script, cluster_user.url, unique_name, ledger, "cluster",
                               ("--queue-type", "quorum", "--prefetch", "100"), {"HANDLER_DELAY": "0.001"})
    victim = None
    try:
        listener.wait_ready(60)
        # As guest, like the Taskcluster services: a Pulse user may not publish to their exchanges.
        publisher = FailoverPublisher(";".join(rabbit_cluster.urls), ledger).start(list(range(COUNT)))
        wait_for(lambda: len(ledger.handled()) >= COUNT // 4, 120, "a quarter of the messages handled", listener)

        port = connected_port(listener)
        victim = next(node for node in rabbit_cluster.nodes if node.port == port)
        killed_at = time.monotonic()
        victim.kill()
        reconnected = _wait_for_reconnect(listener)
        handled_then = counter(reconnected, "handled")
        wait_for(lambda: counter(listener.metrics(), "handled") > handled_then, 60,
                 "a message handled after reconnecting", listener)
        recovery = time.monotonic() - killed_at
        new_port = connected_port(listener)

        victim.start()  # back, and part of the cluster again
        victim = None
        publisher.join(180)
        wait_for(lambda: set(ledger.published) <= set(ledger.handled()), 180, "every message handled", listener)
        assert listener.proc.poll() is None, "the listener must never exit"
        show(capsys, f"[quorum failover] killed node on port {port} (kill -9 of its Erlang VM) after "
                      f"{COUNT // 4}+ handled; consuming again from port {new_port}; {recovery:.2f} s from the "
                      f"kill to the next handled message; publisher failed over {publisher.failovers} time(s)")
        ledger.report("quorum failover")
        assert ledger.lost() == []
        assert new_port != port
        assert listener.terminate() == 0
    finally:
        if listener.proc.poll() is None:
            listener.kill()
        if victim is not None:  # the cluster outlives a failed test (TCPULSE_CLUSTER_DIR)
            victim.start()


def _wait_for_reconnect(listener: ListenerProcess) -> dict:
    """The listener's metrics as soon as they count a reconnect."""
    seen = {}

    def reconnected() -> bool:
        seen.update(listener.metrics())
        return counter(seen, "reconnects") >= 1
    wait_for(reconnected, 60, "the listener to reconnect to another node", listener)
    return seen



def test_record_on_three_urls_goes_on_through_another_node_when_its_node_is_killed(
        rabbit_cluster, cluster_user, tmp_path, capsys):
    out = tmp_path / "recorded.jsonl"
    ledger = Ledger(tmp_path)
    guests = ";".join(rabbit_cluster.urls)
    record = subprocess.Popen([sys.executable, "-m", "tcpulse", "record", faultkit.EXCHANGE, "--out", str(out),
                               "--broker", cluster_user.url, "--timeout", "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    try:
        wait_for(lambda: _recording_node(rabbit_cluster, cluster_user.name) is not None, 30, "the recording to connect")
        victim = _recording_node(rabbit_cluster, cluster_user.name)
        FailoverPublisher(guests, ledger).publish(range(100))
        wait_for(lambda: _recorded(out) >= 100, 30, "the first 100 messages recorded")
        victim.kill()
        wait_for(lambda: _recording_node(rabbit_cluster, cluster_user.name) not in (None, victim)
                 or record.poll() is not None, 60, "the recording to reconnect to another node")
        assert record.poll() is None, f"record exited: {record.communicate()}"
        FailoverPublisher(guests, ledger).publish(range(100, 200))
        wait_for(lambda: _recorded(out) >= 200, 30, "the messages published after the kill recorded")
        victim.start()
        victim = None
    finally:
        record.kill()
        stderr = record.communicate()[1]
        if victim is not None:
            victim.start()
    assert "lost the connection to the broker" in stderr and cluster_user.password not in stderr
    ids = {json.loads(line)["body"]["id"] for line in out.read_text().splitlines()}
    assert set(range(100, 200)) <= ids, "everything published after the kill was recorded"
    show(capsys, f"[record failover] recorded {len(ids)} distinct ids of 200; all 100 published after the kill")


def _recording_node(cluster: Cluster, user: str):
    """The node that holds `user`'s connection (asked of any node still running), or None."""
    for node in cluster.nodes:
        try:
            rows = node.ctl("list_connections", "user", "pid", timeout=20).splitlines()
        except (RuntimeError, subprocess.TimeoutExpired):
            continue
        for row in rows:
            name, _, pid = row.partition("\t")
            if name == user:
                return next((n for n in cluster.nodes if f"<{n.node}." in pid), None)
        return None
    return None


def _recorded(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_cluster_that_fails_to_start_leaves_no_node_running():
    ports = free_ports(6)
    with socket.socket() as taken:  # the second node's AMQP port is in use: that node cannot start
        taken.bind(("127.0.0.1", ports[1]))
        taken.listen()
        cluster = Cluster(Path(tempfile.mkdtemp(prefix="tcpulse-cluster-")), ports[:3], dist_ports=ports[3:])
        with pytest.raises(RuntimeError, match="did not start"):
            cluster.start()
    names = subprocess.run(["epmd", "-names"], capture_output=True, text=True, timeout=30).stdout
    assert not [node.node for node in cluster.nodes if node.node.split("@")[0] in names.split()], names
    assert not cluster.directory.exists()
