"""What `tcpulse listen --processes N` buys for CPU-bound handlers: a handler doing about 5 ms of
pure-Python work per message, at 2 processes against 1, in alternating rounds of the same run.

Each round preloads the messages into a fresh named queue, starts the supervisor
(`tcpulse.supervise`, the code behind `--processes`) with its health port, and reads the summed
`tcpulse_handled_total` from `/metrics` every 20 ms: the rate is taken from the first handled
message to the last, so process start-up is not counted. Prints msgs/s per round, the medians and
their ratio (ideal on 2 idle cores: 2x).

    .venv/bin/python benchmarks/listener_processes.py [--messages 600] [--rounds 3] [--work-ms 5]
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from listener_throughput import BROKER, cleanup, preload

SCRIPT = """\
import tcpulse

ITERATIONS = {iterations}


@tcpulse.on(tcpulse.Binding({exchange!r}, "primary.#"))
def crunch(event):
    total = 0
    for i in range(ITERATIONS):  # pure-Python work: the GIL lets one process use one core
        total += i * i % 7
"""


def iterations_for(ms: float) -> int:
    """Loop iterations of the handler's work that take about `ms` milliseconds here."""
    n, started = 200_000, time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return int(n * ms / 1000 / (time.perf_counter() - started))


def handled(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("tcpulse_handled_total"))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_round(script: Path, exchange: str, processes: int, count: int) -> float:
    name = "bench-" + uuid.uuid4().hex[:8]
    queue = f"queue/guest/{name}"
    port = free_port()
    preload(exchange, queue, count)
    code = (f"import sys, tcpulse; sys.exit(tcpulse.supervise({str(script)!r}, {processes}, '--queue', {name!r}, "
            f"'--broker', {BROKER!r}, '--log-level', 'warning', health_port={port}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    try:
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = handled(port)
            if done and first is None:
                first = (time.monotonic(), done)
            if done >= count:
                last = time.monotonic()
                break
            time.sleep(0.02)
        if first is None or last is None:
            raise RuntimeError(f"round with {processes} process(es) did not finish")
        return (count - first[1]) / (last - first[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        cleanup(exchange, [queue])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work-ms", type=float, default=5.0)
    args = parser.parse_args()
    exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
    iterations = iterations_for(args.work_ms)
    rates = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "crunch.py"
        script.write_text(SCRIPT.format(iterations=iterations, exchange=exchange))
        for _ in range(args.rounds):
            for processes in (1, 2):
                rate = one_round(script, exchange, processes, args.messages)
                rates[processes].append(rate)
                print(f"  {processes} process(es): {rate:7.1f} msgs/s", flush=True)
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"handler: {args.work_ms:g} ms of pure-Python work ({iterations} iterations), {args.messages} messages, "
          f"{args.rounds} alternating rounds; {os.cpu_count()} cores, load average {load}")
    print(f"--processes 1: {one:.1f} msgs/s (median); --processes 2: {two:.1f} msgs/s (median); ratio {two / one:.2f}x")


if __name__ == "__main__":
    main()
