"""Throughput of the embedded `memory://` broker against kombu's stock memory transport.

Both publish N Taskcluster-sized messages to a topic exchange and consume them with acks
through kombu, in the same process; rounds alternate between the two so that a busy machine
slows both alike. The stock transport routes wrongly (no `#` for zero words, no CC), so this is
a cost comparison only: tcpulse's correct routing should cost about the same.

    .venv/bin/python benchmarks/embedded_broker.py [--messages 5000] [--rounds 3]
"""
import argparse
import statistics
import time
import uuid

import kombu

EXCHANGE = "exchange/taskcluster-queue/v1/task-completed"
BODY = {"status": {"taskId": "Vj4tUqDCTWqRUhx_sYtT2A", "state": "completed",
                   "runs": [{"runId": 0, "state": "completed", "workerGroup": "us-west-2"}]},
        "runId": 0, "workerGroup": "us-west-2", "workerId": "i-0c2b4f1a93e8d7a21", "version": 1}


def messages_per_second(connection: kombu.Connection, count: int) -> float:
    channel = connection.channel()
    exchange = kombu.Exchange(EXCHANGE, type="topic")
    queue = kombu.Queue("bench-" + uuid.uuid4().hex, exchange, routing_key="primary.#", channel=channel)
    queue.declare()
    producer = kombu.Producer(channel)
    received = [0]

    def on_message(body, message):
        received[0] += 1
        message.ack()

    started = time.perf_counter()
    for _ in range(count):
        producer.publish(BODY, exchange=exchange, routing_key="primary.t.0.wg.w.p.wt.s.g._")
    with kombu.Consumer(channel, [queue], callbacks=[on_message]):
        while received[0] < count:
            connection.drain_events(timeout=5)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, stock = [], []
    for _ in range(args.rounds):
        with kombu.Connection(f"memory:///{uuid.uuid4().hex}", transport="tcpulse._broker.broker:Transport") as conn:
            ours.append(messages_per_second(conn, args.messages))
        with kombu.Connection("memory://") as conn:
            stock.append(messages_per_second(conn, args.messages))
    mine, theirs = statistics.median(ours), statistics.median(stock)
    print(f"tcpulse memory://      {mine:8.0f} msg/s (median of {args.rounds})")
    print(f"kombu stock memory://  {theirs:8.0f} msg/s")
    print(f"ratio                  {mine / theirs:8.2f}x")


if __name__ == "__main__":
    main()
