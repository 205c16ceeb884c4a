"""Signed REST calls per second: `tcpulse.aio.Queue` with 50 calls in flight against the sync
`tcpulse.Queue` calling one after the other, same run, same local HTTPS server.

The server and its certificate are rest_calls.py's (a threading HTTPS server in its own process,
a self-signed certificate trusted through REQUESTS_CA_BUNDLE, verified by both clients); it
answers each call after --latency seconds (default 20 ms), the time a Taskcluster service takes
across a network. Without it both clients only measure the local server's CPU (one Python
process answering over TLS, about 750 calls/s here), which concurrency cannot raise. Each
client runs `Queue.task(taskId)` N times, Hawk-signed, in its own subprocess; rounds alternate
between the two and the median counts.

    .venv/bin/python benchmarks/aio_calls.py [--calls 500] [--in-flight 50] [--latency 0.02] [--repeat 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rest_calls import make_certificate

RUNNER = r"""
import asyncio, json, sys, time
import tcpulse, tcpulse.aio
mode, url, calls, in_flight = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = {"baseUrl": url, "maxRetries": 0, "credentials": {"clientId": "bench", "accessToken": "bench-secret-token"}}

def sync():
    queue = tcpulse.Queue(options)
    assert queue.task("warm-up") == {"taskId": "x"}
    start, cpu = time.perf_counter(), time.process_time()
    for number in range(calls):
        queue.task("abc%d" % number)
    return time.perf_counter() - start, time.process_time() - cpu

async def aio():
    async with tcpulse.aio.Queue(options) as queue:
        assert await queue.task("warm-up") == {"taskId": "x"}
        numbers = iter(range(calls))
        async def worker():
            for number in numbers:
                await queue.task("abc%d" % number)
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - start, time.process_time() - cpu

seconds, cpu = sync() if mode == "sync" else asyncio.run(aio())
print(json.dumps({"seconds": seconds, "cpu": cpu}))
"""


def run_client(mode: str, url: str, calls: int, in_flight: int, cert: str) -> dict:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": cert}
    env.pop("DEBUG_TASKCLUSTER_CLIENT", None)
    done = subprocess.run([sys.executable, "-c", RUNNER, mode, url, str(calls), str(in_flight)], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the server takes per call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cert, key = make_certificate(Path(folder))
        server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("rest_calls.py")), "--serve", cert, key, str(args.latency)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = f"https://127.0.0.1:{server.stdout.readline().strip()}/api/queue/v1"
            runs: dict = {"sync": [], "aio": []}
            for _ in range(args.repeat):
                for mode in runs:
                    runs[mode].append(run_client(mode, url, args.calls, args.in_flight, cert))
        finally:
            server.terminate()
            server.wait()
    rate = {mode: args.calls / statistics.median(r["seconds"] for r in results) for mode, results in runs.items()}
    print(f"{args.calls} signed Queue.task() calls over HTTPS (verified self-signed cert), server latency "
          f"{args.latency * 1000:.0f} ms, median of {args.repeat} runs")
    print(f"  sync sequential {rate['sync']:7.1f} calls/s   aio {args.in_flight} in flight {rate['aio']:7.1f} calls/s   "
          f"ratio {rate['aio'] / rate['sync']:5.2f}x")


if __name__ == "__main__":
    main()
