"""How fast a no-op-handler Listener drains a queue, against a raw kombu consumer that acks
each message by hand, at the same prefetch, on the same broker, in the same run.

Each round preloads N messages into a fresh listener's queue (declared by the listener itself)
and times raw kombu draining it from connecting until its last ack; then preloads N more and
times the listener from the moment it consumes until its last ack. Rounds alternate (raw,
listener, raw, ...) so broker warm-up and machine noise hit both; the median of each side is
reported, and the ratio listener / raw is the median of the rounds' ratios (target >= 1.2).

    .venv/bin/python benchmarks/listener_throughput.py [--messages 20000] [--rounds 5] [--prefetch 100]
"""
import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from typing import Callable, NamedTuple

import amqp
import kombu

# Public names only: benchmarks/listener_revisions.py runs this module's helpers on older trees too.
from tcpulse import Binding, Listener

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
HANDLER = lambda event: None  # noqa: E731 - the no-op handler (listener_concurrency swaps it)


def declare(name: str, bind: Callable[[Listener], None], broker: str = BROKER) -> None:
    """Run the Listener `name` (its handlers added by `bind`) until it consumes, then stop it: its
    queue, private delivery exchange and bindings then exist as the listener declares them. A
    queue declared by hand would be in another layout, and the listener would first move its
    messages back through its delivery exchange: a one-off start-up path, not the one measured."""
    app = Listener(name, broker=broker, declare_exchanges=True)
    bind(app)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    while not app.is_ready():
        _alive(thread, name)
        time.sleep(0.01)
    app.stop()
    thread.join()


def _alive(thread: threading.Thread, name: str) -> None:
    if not thread.is_alive():
        sys.exit(f"the listener {name} stopped (see its log above)")


def preload(exchange: str, queue: str, count: int) -> None:
    """`count` messages waiting in `queue` (queue/<user>/<name>), the queue of a listener whose
    one handler binds `primary.#` on `exchange`, declared by that listener the first time."""
    with kombu.Connection(BROKER) as conn:
        conn.channel().exchange_declare(exchange=exchange, type="topic", durable=True, auto_delete=False)
        try:
            conn.channel().queue_declare(queue=queue, passive=True)
        except amqp.exceptions.NotFound:
            declare(queue.split("/")[2], lambda app: app.add_handler(HANDLER, Binding(exchange, "primary.#")))
        channel = conn.channel()
        producer = kombu.Producer(channel, exchange=kombu.Exchange(exchange, type="topic"), auto_declare=False)
        for i in range(count):
            producer.publish(json.dumps({"i": i}), routing_key=f"primary.t{i}.0", content_type="application/json")
        while channel.queue_declare(queue=queue, passive=True).message_count < count:
            time.sleep(0.05)


def raw_kombu(exchange: str, queue: str, count: int, prefetch: int) -> float:
    acked = 0

    def on_message(body, message):
        nonlocal acked
        message.ack()
        acked += 1
    start = time.perf_counter()
    with kombu.Connection(BROKER) as conn:
        with kombu.Consumer(conn, queues=[kombu.Queue(queue, no_declare=True)], callbacks=[on_message],
                            prefetch_count=prefetch, accept=["json"]):
            while acked < count:
                conn.drain_events(timeout=10)
    return time.perf_counter() - start


class Drained(NamedTuple):
    seconds: float  # from the moment the listener consumes until its last ack
    cpu_seconds: float  # this process's CPU time over the same span


def listener(exchange: str, queue_name: str, count: int, prefetch: int, concurrency: int = 1) -> Drained:
    app = Listener(queue_name, broker=BROKER, prefetch=prefetch, concurrency=concurrency, declare_exchanges=True)
    app.add_handler(HANDLER, Binding(exchange, "primary.#"))
    app.backlog_warning = 0  # the preloaded queue is a backlog on purpose
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    while not app.is_ready():  # timed from the moment it consumes: start-up is not throughput
        _alive(thread, queue_name)
        time.sleep(0.01)
    start, cpu = time.perf_counter(), time.process_time()
    while app.metrics.get("acked") < count:
        _alive(thread, queue_name)
        time.sleep(0.01)
    drained = Drained(time.perf_counter() - start, time.process_time() - cpu)
    app.stop()
    thread.join()
    return drained


def delete_listeners(names: list, broker: str = BROKER) -> None:
    """Delete bench listeners as `tcpulse delete NAME --include-dead-letters` does (queue,
    holding, dead-letter, isolation and binding-record queues, private delivery exchange):
    leftovers would pile up on the broker from one run to the next."""
    from tcpulse._broker.connection import resolve_broker
    from tcpulse._ops.maintenance import delete_listener

    address = resolve_broker(broker)
    with kombu.Connection(broker) as conn:
        for name in dict.fromkeys(names):
            delete_listener(conn, address, name, include_dead_letters=True, report=lambda line: None)


def cleanup(exchange: str, queues: list, broker: str = BROKER) -> None:
    """Delete the listeners behind `queues` (queue/<user>/<name>) and the bench exchange."""
    delete_listeners([queue.split("/")[2] for queue in queues], broker)
    with kombu.Connection(broker) as conn:
        conn.channel().exchange_delete(exchange=exchange)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefetch", type=int, default=100)
    args = parser.parse_args()
    exchange = f"exchange/tcpulse-bench/{uuid.uuid4().hex[:8]}"
    results = {"raw kombu": [], "tcpulse Listener": []}
    for _ in range(args.rounds):
        name = "bench-" + uuid.uuid4().hex[:8]
        queue = f"queue/guest/{name}"
        try:
            preload(exchange, queue, args.messages)
            results["raw kombu"].append(args.messages / raw_kombu(exchange, queue, args.messages, args.prefetch))
            preload(exchange, queue, args.messages)
            results["tcpulse Listener"].append(args.messages / listener(exchange, name, args.messages, args.prefetch).seconds)
        finally:
            cleanup(exchange, [queue])
    medians = {k: statistics.median(v) for k, v in results.items()}
    # Each round runs both sides back to back, so its ratio is what machine noise disturbs least.
    ratios = [ours / raw for raw, ours in zip(results["raw kombu"], results["tcpulse Listener"])]
    print(f"{args.messages} messages x {args.rounds} alternating rounds, prefetch {args.prefetch}, no-op handler")
    for label, rates in results.items():
        print(f"  {label:18} median {medians[label]:8.0f} msgs/s   (rounds: {', '.join(f'{r:.0f}' for r in rates)})")
    print(f"  ratio listener / raw kombu: {statistics.median(ratios):.2f}x median of the rounds' ratios "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
