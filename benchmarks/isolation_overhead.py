"""What the crash-loop guard (`tcpulse._listen.isolation`) costs on the normal path: a no-op-handler
Listener draining a preloaded queue with the guard, against the same Listener with the guard
switched off, on the same broker, in the same run. No message comes back unacked here, so the
guard only looks at each delivery's redelivered flag and, on each turn of the connection loop,
whether it has anything to do; the ratio should stay about 1.0.

Rounds alternate (without, with, without, ...); the median of the rounds' ratios is reported.

    .venv/bin/python benchmarks/isolation_overhead.py [--messages 10000] [--rounds 5] [--prefetch 100]
"""
import argparse
import contextlib
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Tuple
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from listener_throughput import cleanup, listener, preload  # noqa: E402 - a sibling script, not a package


def round_rate(exchange: str, count: int, prefetch: int, guarded: bool) -> Tuple[float, float]:
    """(messages a second, µs of this process's CPU a message) of one round."""
    name = "bench-" + uuid.uuid4().hex[:8]
    queue = f"queue/guest/{name}"
    try:
        preload(exchange, queue, count)
        # Listener.run imports Isolation when it starts: None there leaves the consumer without a guard.
        switch = contextlib.nullcontext() if guarded else mock.patch("tcpulse._listen.isolation.Isolation",
                                                                     lambda *args: None)
        with switch:
            cpu = time.process_time()
            seconds = listener(exchange, name, count, prefetch).seconds
            cpu = time.process_time() - cpu
        return count / seconds, cpu / count * 1e6
    finally:
        cleanup(exchange, [queue])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
    without, with_guard = [], []
    for _ in range(args.rounds):
        without.append(round_rate(exchange, args.messages, args.prefetch, guarded=False))
        with_guard.append(round_rate(exchange, args.messages, args.prefetch, guarded=True))
    ratios = [guarded[0] / plain[0] for plain, guarded in zip(without, with_guard)]
    print(f"{args.messages} messages x {args.rounds} alternating rounds, prefetch {args.prefetch}, no-op handler")
    for label, rounds in (("without the guard", without), ("with the guard", with_guard)):
        rates = [rate for rate, _ in rounds]
        print(f"  {label:18} median {statistics.median(rates):8.0f} msgs/s, "
              f"{statistics.median(cpu for _, cpu in rounds):5.1f} µs CPU a message   "
              f"(rounds: {', '.join(f'{r:.0f}' for r in rates)})")
    print(f"  ratio with / without the guard: {statistics.median(ratios):.2f}x median of the rounds' ratios "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
