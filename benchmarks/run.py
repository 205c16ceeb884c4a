"""Every benchmark of issue 8 in one run: each row against its baseline measured in the same run,
printed as a table of ratios with the machine's description. Run by hand, not in CI:

    .venv/bin/python benchmarks/run.py                  # the documented run (RESULTS.md)
    .venv/bin/python benchmarks/run.py --quick          # smaller counts, for a smoke check
    .venv/bin/python benchmarks/run.py --only rss,import

Rows and where they come from:
- listener vs raw kombu (prefetch 100)   benchmarks/listener_throughput.py (LISTENER), its ratio line: the
                                         median of 5 alternating rounds' ratios
- 200 bindings vs 1, same listener       here
- 20 ms I/O handler, concurrency 32 vs 1 here
- async 20 ms handler, concurrency 500   here: `await asyncio.sleep(0.02)` on the listener's event
  vs sync 1 and vs threads 32            loop (prefetch default 2000), against the same wait as
                                         `time.sleep` at concurrency 1 and on 32 threads
- aio.Queue, 50 calls in flight, vs the  benchmarks/aio_calls.py (AIO), its ratio line: a local
  sync client sequentially               HTTPS server answering each call after 20 ms
- 500 REST calls vs official taskcluster benchmarks/rest_calls.py (REST), its ratio lines
- RSS growth over 200,000 messages       here: a listener in a child process, RSS after a
                                         10,000-message warm-up vs at the end
- import tcpulse + first exchange lookup vs import taskcluster (113.x)
                                         benchmarks/import_time.py, its ratio line

Listener rows use the shared RabbitMQ on 127.0.0.1:5672 as guest, with an exchange and queues
of their own (deleted afterwards). Each listener row preloads its queue, then times from the
moment the listener is consuming (declaration excluded) until every message is acked; rounds
alternate between the two sides so that machine noise hits both, and medians count.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

HERE = Path(__file__).resolve().parent
BROKER = "amqp://guest:guest@127.0.0.1:5672//"
GROUP_KEY = "primary.{i}.0.wg.wid.prov.wtype.sched.g0._"  # a queue/v1 task-completed key, taskGroupId g0


class Row(NamedTuple):
    benchmark: str
    baseline: str
    measured: str
    ratio: Optional[float]
    target: str
    passed: Optional[bool]


# -- machine ------------------------------------------------------------------------------------

def machine_info() -> str:
    import kombu

    cpu = "unknown cpu"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rabbit = subprocess.run(["rabbitmqctl", "-q", "version"], capture_output=True, text=True).stdout.strip() or "?"
    return (f"machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"load average {load}\n"
            f"python {platform.python_version()}, kombu {kombu.__version__}, RabbitMQ {rabbit}, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


# -- listener rows ------------------------------------------------------------------------------

class Bench:
    """An exchange and queues of our own on the broker, for one benchmark run."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
        self.names: List[str] = []

    def listener(self, name: str, bindings: int, handler: Callable, concurrency: int = 1, prefetch: int = 100):
        """A Listener whose first handler matches every message; `bindings - 1` more handlers,
        each on its own Taskcluster-shaped pattern, match none of them."""
        from tcpulse import Listener
        from tcpulse._api.exchanges import Binding

        app = Listener(name, broker=self.broker, concurrency=concurrency, prefetch=prefetch, declare_exchanges=True)
        app.backlog_warning = 0  # a preloaded queue is the point here, not a problem to warn about
        app.add_handler(handler, Binding(self.exchange, "primary.*.*.*.*.*.*.*.g0.#"))
        for i in range(1, bindings):
            pattern = f"primary.*.*.*.*.*.*.*.g{i}.#" if i % 2 else f"route.index.project{i}.#"
            app.add_handler(_noop_named(i), Binding(self.exchange, pattern))
        return app

    def declare(self, app) -> None:
        """Run the listener until it consumes, so its queue has the listener's own arguments."""
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        _wait(lambda: app.is_ready(), 60, "the listener to declare its queue", thread)
        app.stop()
        thread.join(60)
        self.names.append(app.queue)

    def preload(self, count: int, key: str = GROUP_KEY) -> None:
        import amqp
        import kombu

        with kombu.Connection(self.broker) as conn:
            channel = conn.default_channel
            for i in range(count):
                message = amqp.Message(json.dumps({"i": i, "status": {"state": "completed"}}),
                                       content_type="application/json", content_encoding="utf-8")
                channel.basic_publish(message, exchange=self.exchange, routing_key=key.format(i=i))
            channel.exchange_declare(self.exchange, "topic", durable=True, passive=True)  # round trip: all routed

    def drain(self, make_app: Callable[[], object], count: int) -> float:
        """Seconds from consuming to `count` acks, for a listener on a preloaded queue."""
        app = make_app()
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        _wait(lambda: app.is_ready(), 60, "the listener to consume", thread)
        start = time.perf_counter()
        _wait(lambda: app.metrics.get("acked") >= count, 3600, f"{count} acks", thread, poll=0.005)
        elapsed = time.perf_counter() - start
        app.stop()
        thread.join(60)
        return elapsed

    def cleanup(self) -> None:
        from listener_throughput import cleanup

        cleanup(self.exchange, self.names, self.broker)


def _noop_named(i: int) -> Callable:
    def handler(event) -> None:
        return None
    handler.__qualname__ = f"unmatched_{i}"
    return handler


def _noop(event) -> None:
    return None


def _wait(condition: Callable[[], bool], timeout: float, what: str, thread: threading.Thread, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not thread.is_alive():
            raise RuntimeError(f"the listener stopped while waiting for {what} (see its traceback above)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(poll)


def compare_rates(sides: dict, rounds: int) -> dict:
    """sides: label -> (messages, bench, make_app), each side on its own exchange. Alternating
    rounds; the median messages/s per side."""
    rates = {label: [] for label in sides}
    for _, bench, make_app in sides.values():
        bench.declare(make_app())
    for _ in range(rounds):
        for label, (count, bench, make_app) in sides.items():
            bench.preload(count)
            rates[label].append(count / bench.drain(make_app, count))
    return {label: statistics.median(values) for label, values in rates.items()}


def compare_listeners(args: argparse.Namespace, sides: dict) -> dict:
    """sides: label -> (messages, kwargs for Bench.listener); cleans up whatever happens."""
    name = "bench-" + uuid.uuid4().hex[:6]
    benches = {label: Bench(args.broker) for label in sides}
    try:
        return compare_rates({label: (count, benches[label], _maker(benches[label], f"{name}-{label}", kwargs))
                              for label, (count, kwargs) in sides.items()}, args.rounds)
    finally:
        for bench in benches.values():
            bench.cleanup()


def _maker(bench: Bench, name: str, kwargs: dict) -> Callable[[], object]:
    return lambda: bench.listener(name, **kwargs)


def row_bindings(args: argparse.Namespace) -> Row:
    rates = compare_listeners(args, {"1": (args.messages, dict(bindings=1, handler=_noop)),
                                     "200": (args.messages, dict(bindings=200, handler=_noop))})
    ratio = rates["200"] / rates["1"]
    return Row("200 bindings on the queue vs 1 (no-op handler, prefetch 100)", f"1 binding {rates['1']:.0f} msg/s",
               f"200 bindings {rates['200']:.0f} msg/s", ratio, ">= 0.85x", ratio >= 0.85)


def _io_handler(event) -> None:
    time.sleep(0.02)  # stands in for a 20 ms REST call: the GIL is released while waiting


async def _async_io_handler(event) -> None:
    import asyncio

    await asyncio.sleep(0.02)  # the same 20 ms wait, awaited on the listener's event loop


def row_concurrency(args: argparse.Namespace) -> Row:
    serial = max(50, args.io_messages // 16)
    rates = compare_listeners(args, {
        "c1": (serial, dict(bindings=1, handler=_io_handler, concurrency=1)),
        "c32": (args.io_messages, dict(bindings=1, handler=_io_handler, concurrency=32, prefetch=128))})
    ratio = rates["c32"] / rates["c1"]
    return Row("20 ms I/O handler, concurrency 32 vs 1", f"concurrency 1 {rates['c1']:.1f} msg/s",
               f"concurrency 32 {rates['c32']:.1f} msg/s", ratio, ">= 20x", ratio >= 20)


def rows_async(args: argparse.Namespace) -> List[Row]:
    serial = max(50, args.async_messages // 16)
    rates = compare_listeners(args, {
        "c1": (serial, dict(bindings=1, handler=_io_handler, concurrency=1)),
        "t32": (args.async_messages, dict(bindings=1, handler=_io_handler, concurrency=32, prefetch=128)),
        "a500": (args.async_messages, dict(bindings=1, handler=_async_io_handler, concurrency=500, prefetch=None))})
    measured = f"async concurrency 500 {rates['a500']:.0f} msg/s"
    ratio_serial, ratio_threads = rates["a500"] / rates["c1"], rates["a500"] / rates["t32"]
    return [Row(f"async 20 ms handler, {args.async_messages:,} msgs at concurrency 500 vs sync at 1",
                f"sync concurrency 1 {rates['c1']:.1f} msg/s", measured, ratio_serial, ">= 100x", ratio_serial >= 100),
            Row(f"async 20 ms handler, {args.async_messages:,} msgs at concurrency 500 vs 32 threads",
                f"sync concurrency 32 {rates['t32']:.0f} msg/s", measured, ratio_threads, ">= 3x", ratio_threads >= 3)]


def row_aio(args: argparse.Namespace) -> Row:
    out = run_script("aio_calls.py", "--calls", str(args.calls), "--in-flight", "50")
    ratio = ratio_in(out, r"ratio")
    sync, aio = re.findall(r"([0-9.]+) calls/s", out)[:2]
    return Row(f"{args.calls} signed REST calls, HTTPS server taking 20 ms: aio.Queue 50 in flight vs sync",
               f"sync tcpulse.Queue {sync} calls/s", f"aio {aio} calls/s", ratio, "> 1x (reported)", ratio > 1)


RSS_CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from run import Bench, _noop
bench = Bench(sys.argv[2]); bench.exchange = sys.argv[3]
count, warmup = int(sys.argv[5]), int(sys.argv[6])
app = bench.listener(sys.argv[4], 1, _noop)
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
thread = threading.Thread(target=app.run, daemon=True); thread.start()
while not app.is_ready() and thread.is_alive():
    time.sleep(0.01)
samples = [(0, rss())]  # connected and consuming: the start of the run
while app.metrics.get("acked") < count:
    if not thread.is_alive():
        sys.exit("listener died")
    samples.append((app.metrics.get("acked"), rss()))
    time.sleep(0.5)
samples.append((count, rss()))
app.stop(); thread.join(60)
start = next(mib for acked, mib in samples if acked >= warmup)
print(json.dumps({"start": start, "end": samples[-1][1], "peak": max(m for _, m in samples),
                  "consuming": samples[0][1]}))
"""


def row_rss(args: argparse.Namespace) -> Row:
    bench = Bench(args.broker)
    name = "bench-rss-" + uuid.uuid4().hex[:6]
    warmup = min(10_000, args.rss_messages // 10)
    try:
        bench.declare(bench.listener(name, 1, _noop))
        bench.preload(args.rss_messages)
        done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(HERE), args.broker, bench.exchange, name,
                               str(args.rss_messages), str(warmup)], capture_output=True, text=True, timeout=3600)
    finally:
        bench.cleanup()
    if done.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{done.stderr[-2000:]}")
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    growth = rss["end"] - rss["start"]
    return Row(f"RSS growth over {args.rss_messages:,} messages",
               f"after {warmup:,} msgs {rss['start']:.1f} MiB (consuming: {rss['consuming']:.1f})",
               f"end {rss['end']:.1f} MiB (peak {rss['peak']:.1f})", None, f"growth {growth:+.1f} MiB < 10 MiB",
               growth < 10)


# -- rows from the other benchmark scripts --------------------------------------------------------

def run_script(script: str, *options: str) -> str:
    done = subprocess.run([sys.executable, str(HERE / script), *options], capture_output=True, text=True,
                          timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-600:]}")
    return done.stdout


def ratio_in(text: str, line_pattern: str) -> float:
    for line in text.splitlines():
        if re.search(line_pattern, line):
            match = re.search(r"ratio[^0-9]*([0-9]+(?:\.[0-9]+)?)x", line)
            if match:
                return float(match.group(1))
    raise RuntimeError(f"no ratio on a line matching {line_pattern!r} in:\n{text}")


def row_throughput(args: argparse.Namespace) -> Row:
    out = run_script("listener_throughput.py", "--messages", str(args.messages), "--rounds", str(args.throughput_rounds),
                     "--prefetch", "100")
    ratio = ratio_in(out, r"ratio listener")
    rates = dict(re.findall(r"^\s+(raw kombu|tcpulse Listener)\s+median\s+([0-9]+)", out, re.M))
    return Row("listener, one no-op handler, prefetch 100", f"raw kombu manual ack {rates.get('raw kombu', '?')} msg/s",
               f"listener {rates.get('tcpulse Listener', '?')} msg/s", ratio, ">= 1.2x", ratio >= 1.2)


def rows_rest(args: argparse.Namespace) -> List[Row]:
    out = run_script("rest_calls.py", "--calls", str(args.calls), "--official-python", args.official_python)
    rows = []
    for mode in ("anonymous", "signed"):
        ratio = ratio_in(out, rf"^\s+{mode}\b")
        line = next(line for line in out.splitlines() if re.match(rf"^\s+{mode}\b", line))
        ours, theirs = re.findall(r"([0-9.]+) calls/s", line)[:2]
        rows.append(Row(f"{args.calls} REST calls, local HTTPS server ({mode})",
                        f"taskcluster 4.0.1 {theirs} calls/s", f"tcpulse {ours} calls/s", ratio, ">= 3x", ratio >= 3))
    return rows


def row_import(args: argparse.Namespace) -> Row:
    out = run_script("import_time.py", "--official-python", args.official_today_python)
    baseline = re.search(r"import taskcluster \((\S+)\)\s+([0-9.]+) ms", out)
    ours = re.search(r"^\s+import tcpulse \+ first exchange\s+([0-9.]+) ms", out, re.M)
    ratio = ratio_in(out, r"^\s+import tcpulse \+ first exchange\s+[0-9.]+ ms")
    return Row("import tcpulse + first exchange lookup",
               f"import taskcluster {baseline.group(1)} {baseline.group(2)} ms" if baseline else "import taskcluster ?",
               f"{ours.group(1) if ours else '?'} ms", ratio, "<= 0.2x", ratio <= 0.2)


ROWS = {
    "throughput": row_throughput,
    "bindings": row_bindings,
    "concurrency": row_concurrency,
    "async": rows_async,
    "aio": row_aio,
    "rest": rows_rest,
    "rss": row_rss,
    "import": row_import,
}


def print_table(rows: List[Row]) -> None:
    head = ("benchmark", "baseline (same run)", "measured", "ratio", "target", "result")
    cells = [head] + [(r.benchmark, r.baseline, r.measured, "-" if r.ratio is None else f"{r.ratio:.2f}x", r.target,
                       {True: "ok", False: "MISSED", None: "ERROR"}[r.passed]) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(head))]
    for n, row in enumerate(cells):
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--broker", default=BROKER)
    parser.add_argument("--messages", type=int, default=20_000, help="per listener round (default 20000)")
    parser.add_argument("--io-messages", type=int, default=3_200, help="20 ms handler at concurrency 32 (default 3200)")
    parser.add_argument("--async-messages", type=int, default=2_000,
                        help="20 ms handler at async concurrency 500 and on 32 threads (default 2000)")
    parser.add_argument("--rss-messages", type=int, default=200_000, help="(default 200000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-rounds", type=int, default=5,
                        help="alternating rounds of the listener vs raw kombu row; its ratio is their median (default 5)")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--official-python", default="/tmp/tcv/bin/python",
                        help="an interpreter with taskcluster==4.0.1 (python3 -m venv V && V/bin/pip install taskcluster==4.0.1)")
    parser.add_argument("--official-today-python", default=str(HERE / ".venv-official" / "bin" / "python"),
                        help="an interpreter with today's taskcluster (113.x), the import row's baseline")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check, not a result")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only.split(",")) - set(ROWS))
    if unknown:
        parser.error(f"--only: unknown row(s) {', '.join(unknown)} (choose from {', '.join(ROWS)})")
    if args.quick:
        args.messages, args.io_messages, args.rss_messages, args.rounds, args.calls = 3000, 640, 20_000, 1, 100
        args.throughput_rounds = 1
        args.async_messages = 1000
    print(machine_info())
    print(f"command: {' '.join([Path(sys.executable).name, 'benchmarks/run.py', *(argv or sys.argv[1:])])}\n")
    rows: List[Row] = []
    for key in args.only.split(","):
        started = time.monotonic()
        try:
            produced = ROWS[key](args)
        except Exception as exc:  # noqa: BLE001 - one broken row must not hide the others
            produced = Row(key, "-", f"error: {str(exc).splitlines()[0][:160]}", None, "-", None)
            print(f"[{key}] ERROR {exc}", file=sys.stderr)
        rows.extend(produced if isinstance(produced, list) else [produced])
        print(f"[{key}] done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    print_table(rows)
    return 0 if all(r.passed for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
