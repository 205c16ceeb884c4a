"""What a handler pool buys for I/O-bound handlers: a Listener whose handler sleeps 20 ms
(standing in for a REST call), at concurrency 1 against 16 and 32, in the same run.

Each round preloads N messages into a fresh queue and times from connecting until the last
is acked; prints msgs/s and the speedup over concurrency 1 (ideal: the concurrency).

    .venv/bin/python benchmarks/listener_concurrency.py [--messages 2000] [--delay 0.02]
"""
import argparse
import time
import uuid

from listener_throughput import cleanup, listener, preload

import listener_throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds each handler sleeps")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 16, 32])
    args = parser.parse_args()
    listener_throughput.HANDLER = lambda event: time.sleep(args.delay)
    exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
    rates = {}
    for concurrency in args.levels:
        count = args.messages if concurrency > 1 else max(50, args.messages // 8)  # keep the serial run short
        name = "bench-" + uuid.uuid4().hex[:8]
        queue = f"queue/guest/{name}"
        try:
            preload(exchange, queue, count)
            # A window deep enough to keep every thread busy while acks travel back.
            rates[concurrency] = count / listener(exchange, name, count, prefetch=max(10, 4 * concurrency),
                                                  concurrency=concurrency).seconds
        finally:
            cleanup(exchange, [queue])
    print(f"handler sleeping {args.delay * 1000:.0f} ms, {args.messages} messages (concurrency 1: fewer)")
    for concurrency, rate in rates.items():
        speedup = rate / rates[args.levels[0]]
        print(f"  concurrency {concurrency:3}: {rate:8.1f} msgs/s   speedup {speedup:5.2f}x over concurrency {args.levels[0]}"
              f"  (ideal {concurrency / args.levels[0]:.0f}x)")


if __name__ == "__main__":
    main()
