"""The listener's drain rate at several git revisions of tcpulse, in alternating rounds of the
same run: which change made it slower (or faster), measured rather than guessed.

Each revision is checked out into a temporary worktree. A round runs one child process per
revision (in turn, the order reversed every other round) with that worktree first on
`sys.path`; the child preloads and drains one queue with `listener_throughput`'s `preload` and
`listener` (the listener declares its queue itself; timed from the moment it consumes until the
last ack) and reports msgs/s and its process's CPU µs a message. Those helpers use public names
only (`tcpulse.Listener`, `tcpulse.Binding`, `is_ready`, `metrics`), so older trees run them too.
The first revision is the baseline; each other is printed as the median of its rounds' ratios.

    .venv/bin/python benchmarks/listener_revisions.py REV [REV ...] [--messages 20000] [--rounds 4]
    .venv/bin/python benchmarks/listener_revisions.py cd6af91 HEAD
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import kombu

from listener_throughput import BROKER, delete_listeners  # beside this script

HERE = Path(__file__).resolve().parent


def child(exchange: str, name: str, count: int) -> None:
    """One round in this process, on the tcpulse found first on sys.path: prints 'rate cpu'."""
    import logging

    from listener_throughput import listener, preload

    logging.disable(logging.WARNING)
    preload(exchange, f"queue/guest/{name}", count)  # the queue as this revision's listener declares it
    drained = listener(exchange, name, count, prefetch=100)
    print(f"{count / drained.seconds:.1f} {drained.cpu_seconds / count * 1e6:.2f}")


def one_round(tree: Path, exchange: str, count: int) -> tuple:
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
