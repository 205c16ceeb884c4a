#!/usr/bin/env python3
"""A local RabbitMQ cluster of three nodes beside the system broker, for tests and for trying
tcpulse's quorum queues and failover.

Owns: starting RabbitMQ nodes of our own (own node names, AMQP and distribution ports, data and
log directories, Erlang cookie, config file: the system broker's config pins 127.0.0.1:5672, so
every node gets its own `listeners.tcp`), joining them into one cluster, killing one hard
(`kill -9` of its Erlang VM, found by its own pid file, never by a name pattern) and starting it
again, and stopping them all. The system broker on 5672 and its settings are never touched.
Imports only the standard library (tests import `Node` and `Cluster` from here).

Usage (a few hundred MiB of memory, about 15 s to start on 2 cores):
    python3 scripts/rabbitmq_cluster.py start [--dir DIR] [--ports 5681,5682,5683]
    python3 scripts/rabbitmq_cluster.py status [--dir DIR]
    python3 scripts/rabbitmq_cluster.py kill N | restart N [--dir DIR]   # N = 1, 2 or 3
    python3 scripts/rabbitmq_cluster.py stop [--dir DIR]
`start` prints the URLs to give tcpulse, `;`-separated:
    tcpulse listen app.py --queue NAME --queue-type quorum \
        --broker 'amqp://guest:guest@127.0.0.1:5681//;amqp://guest:guest@127.0.0.1:5682//;...'
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the scripts themselves, not the wrappers that su to rabbitmq
DEFAULT_DIR = Path("/tmp/tcpulse-cluster")
DEFAULT_PORTS = (5681, 5682, 5683)
DIST_OFFSET = 20000  # distribution port = AMQP port + this (RabbitMQ's own convention)


class Node:
    """One RabbitMQ node under `base` (its data, logs, config, pid file); `home` holds the Erlang
    cookie that every node of one cluster (and rabbitmqctl) must share."""

    def __init__(self, base: Path, home: Path, name: str, port: int, dist_port: Optional[int] = None) -> None:
        self.base, self.home, self.node = Path(base), Path(home), name
        self.port = port
        self.dist_port = dist_port or port + DIST_OFFSET
        self.guest_url = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def prepare(self) -> "Node":
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        (self.base / "enabled_plugins").write_text("[].\n")  # no management plugin fighting over its port
        (self.base / "env.conf").write_text("")  # not the system's rabbitmq-env.conf
        return self

    def env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(self.base / "env.conf"),
            RABBITMQ_PID_FILE=str(self.base / "pid"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """rabbitmqctl against this node only."""
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {self.node} {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, timeout: float = 90) -> "Node":
        """Start the node (detached) and wait until it accepts connections."""
        (self.base / "pid").unlink(missing_ok=True)
        subprocess.run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], env=self.env(), check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, "await_startup"],
                                  capture_output=True, text=True, timeout=60, env=self.env())
            if done.returncode == 0:
                return self
            pid = self.pid()  # written once the VM is up: gone again means the boot failed
            if time.monotonic() > deadline or (pid is not None and not _alive(pid)):
                raise RuntimeError(f"RabbitMQ node {self.node} did not start: {done.stderr.strip()}\n"
                                   f"log dir: {self.base / 'log'}")
            time.sleep(0.5)

    def pid(self) -> Optional[int]:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> int:
        """kill -9 the node's Erlang VM (by its own pid file); returns the pid killed."""
        pid = self.pid()
        if pid is None:
            raise RuntimeError(f"node {self.node} has no pid file in {self.base}: is it running?")
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.01)
        return pid

    def join(self, leader: "Node") -> None:
        self.ctl("stop_app")
        self.ctl("join_cluster", leader.node)
        self.ctl("start_app")

    def stop(self, remove: bool = True) -> None:
        """Stop the node; only a node that refuses is killed (after a clean stop its pid may be reused)."""
        done = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, "stop"],
                              capture_output=True, timeout=60, env=self.env())
        pid = self.pid()
        if done.returncode != 0 and pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def as_dict(self) -> Dict[str, object]:
        return {"base": str(self.base), "home": str(self.home), "name": self.node, "port": self.port,
                "dist_port": self.dist_port}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child of ours stays a zombie until reaped; rabbitmq-server -detached is not our child.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def new_cookie(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        cookie.write_text("TCPULSE" + uuid.uuid4().hex.upper())
        cookie.chmod(0o400)


class Cluster:
    """Three (or `len(ports)`) nodes under `directory`, joined to the first one."""

    def __init__(self, directory: Path, ports: Sequence[int], tag: Optional[str] = None,
                 dist_ports: Optional[Sequence[int]] = None) -> None:
        self.directory = Path(directory)
        tag = tag or uuid.uuid4().hex[:6]
        home = self.directory / "home"
        self.nodes = [Node(self.directory / f"node{i + 1}", home, f"tcpcluster{i + 1}x{tag}@localhost", port,
                           dist_ports[i] if dist_ports else None)
                      for i, port in enumerate(ports)]

    @property
    def urls(self) -> List[str]:
        return [node.guest_url for node in self.nodes]

    def start(self) -> "Cluster":
        """Start and join the nodes; if any step fails, stop what started (an Erlang VM left
        behind would outlive the caller and hold its ports), then raise."""
        new_cookie(self.directory / "home")
        try:
            for node in self.nodes:
                node.prepare().start()
            for node in self.nodes[1:]:
                node.join(self.nodes[0])
        except BaseException:
            self.stop()
            raise
        self.save()
        return self

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def running_nodes(self) -> List[str]:
        """The node names the cluster says are running (asked of the first node that answers)."""
        for node in self.nodes:
            try:
                status = json.loads(node.ctl("cluster_status", "--formatter", "json", timeout=20))
            except (RuntimeError, ValueError, subprocess.TimeoutExpired):
                continue
            return sorted(status.get("running_nodes", []))
        return []

    def save(self) -> None:
        (self.directory / "cluster.json").write_text(json.dumps([n.as_dict() for n in self.nodes], indent=1))

    @classmethod
    def load(cls, directory: Path) -> "Cluster":
        try:
            saved = json.loads((Path(directory) / "cluster.json").read_text())
        except OSError:
            raise SystemExit(f"no cluster in {directory} (start one: {sys.argv[0]} start --dir {directory})")
        cluster = cls.__new__(cls)
        cluster.directory = Path(directory)
        cluster.nodes = [Node(Path(n["base"]), Path(n["home"]), n["name"], n["port"], n["dist_port"]) for n in saved]
        return cluster


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A local 3-node RabbitMQ cluster beside the system broker.")
    parser.add_argument("action", choices=("start", "stop", "status", "kill", "restart"))
    parser.add_argument("node", nargs="?", type=int, help="1, 2 or 3 (kill, restart)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"where the nodes live (default {DEFAULT_DIR})")
    parser.add_argument("--ports", default=",".join(map(str, DEFAULT_PORTS)),
                        help="AMQP ports, comma-separated; distribution ports are each + 20000")
    args = parser.parse_args(argv)
    if args.action == "start":
        if (args.dir / "cluster.json").exists():
            parser.error(f"a cluster already lives in {args.dir}: stop it first, or pass --dir")
        cluster = Cluster(args.dir, [int(p) for p in args.ports.split(",")]).start()
        print(";".join(cluster.urls))
        return 0
    cluster = Cluster.load(args.dir)
    if args.action == "stop":
        cluster.stop()
    elif args.action == "status":
        print("\n".join(cluster.running_nodes()) or "no node is running")
    else:
        if args.node not in range(1, len(cluster.nodes) + 1):
            parser.error(f"{args.action} needs a node number from 1 to {len(cluster.nodes)}")
        node = cluster.nodes[args.node - 1]
        print(f"killed {node.node} (pid {node.kill()})" if args.action == "kill" else f"started {node.start().node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
