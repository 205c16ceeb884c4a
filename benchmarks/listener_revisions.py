"""The listener's drain rate at several git revisions of tcpulse, in alternating rounds of the
same run: which change made it slower (or faster), measured rather than guessed.

Each revision is checked out into a temporary worktree. A round runs one child process per
revision (in turn, the order reversed every other round) with that worktree first on
`sys.path`; the child declares a listener through the Listener itself (one no-op handler on
`primary.#`), preloads N messages, starts it again and times from the moment it consumes
until the last ack, and reports msgs/s and its process's CPU µs a message. Only public names
(`tcpulse.Listener`, `tcpulse.Binding`, `is_ready`, `metrics`) are used, so older trees run it too.
The first revision is the baseline; each other is printed as the median of its rounds' ratios.

    .venv/bin/python benchmarks/listener_revisions.py REV [REV ...] [--messages 20000] [--rounds 4]
    .venv/bin/python benchmarks/listener_revisions.py cd6af91 HEAD
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import kombu

HERE = Path(__file__).resolve().parent
BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def child(exchange: str, name: str, count: int) -> None:
    """One round in this process, on the tcpulse found first on sys.path: prints 'rate cpu'."""
    import logging

    import tcpulse

    logging.disable(logging.WARNING)

    def drain(count: int) -> tuple:
        app = tcpulse.Listener(name, broker=BROKER, prefetch=100, declare_exchanges=True)
        app.add_handler(lambda event: None, tcpulse.Binding(exchange, "primary.#"))
        app.backlog_warning = 0  # the preloaded queue is a backlog on purpose
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        while not app.is_ready():
            if not thread.is_alive():
                sys.exit("the listener stopped before it consumed")
            time.sleep(0.005)
        started, cpu = time.perf_counter(), time.process_time()
        while app.metrics.get("acked") < count:
            time.sleep(0.005)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        app.stop()
        thread.join()
        return elapsed, cpu

    drain(0)  # its queue, delivery exchange and bindings, as this revision declares them
    with kombu.Connection(BROKER) as conn:
        channel = conn.channel()
        producer = kombu.Producer(channel, exchange=kombu.Exchange(exchange, type="topic"), auto_declare=False)
        for i in range(count):
            producer.publish(json.dumps({"i": i}), routing_key=f"primary.t{i}.0", content_type="application/json")
        while channel.queue_declare(queue=f"queue/guest/{name}", passive=True).message_count < count:
            time.sleep(0.05)
    elapsed, cpu = drain(count)
    print(f"{count / elapsed:.1f} {cpu / count * 1e6:.2f}")


def one_round(tree: Path, exchange: str, count: int) -> tuple:
    from listener_throughput import delete_listeners

    name = "bench-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    try:
        done = subprocess.run([sys.executable, __file__, "--child", exchange, name, str(count)], env=env,
                              capture_output=True, text=True, timeout=1800)
    finally:
        delete_listeners([name])
    if done.returncode != 0:
        sys.exit(f"the round on {tree} failed:\n{done.stderr[-3000:]}")
    rate, cpu = done.stdout.split()
    return float(rate), float(cpu)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions; the first is the baseline")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, kombu.Connection(BROKER) as conn:
        conn.channel().exchange_declare(exchange=exchange, type="topic", durable=True, auto_delete=False)
        trees = {}
        for revision in args.revisions:
            trees[revision] = Path(scratch, f"tree{len(trees)}")
            subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(trees[revision]), revision],
                           check=True, capture_output=True)
        results: dict = {revision: [] for revision in trees}
        try:
            for number in range(args.rounds):
                order = list(trees) if number % 2 == 0 else list(trees)[::-1]
                for revision in order:
                    results[revision].append(one_round(trees[revision], exchange, args.messages))
                print(f"round {number + 1}: " + ", ".join(f"{r} {results[r][-1][0]:.0f} msgs/s" for r in trees),
                      flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=False)
            conn.channel().exchange_delete(exchange=exchange)
    base = args.revisions[0]
    print(f"{args.messages} messages x {args.rounds} alternating rounds, prefetch 100, no-op handler; "
          f"baseline {base}")
    for revision, rounds in results.items():
        rate = statistics.median(r for r, _ in rounds)
        cpu = statistics.median(c for _, c in rounds)
        speed = statistics.median(r / b for (r, _), (b, _) in zip(rounds, results[base]))
        cost = statistics.median(c / b for (_, c), (_, b) in zip(rounds, results[base]))
        print(f"  {revision:12} median {rate:8.0f} msgs/s {cpu:6.1f} µs CPU a message   "
              f"rate {speed:.2f}x, CPU a message {cost:.2f}x of the baseline")


if __name__ == "__main__":
    main()
