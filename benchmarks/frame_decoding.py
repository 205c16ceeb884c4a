"""What tcpulse's tolerant frame handler (tcpulse._listen.wire) costs per message against
py-amqp's own, on the frames of a typical Pulse message (method, content header with a CC
header, a 1.5 kB JSON body), with no broker: both handlers decode the same frames and hand them
to a no-op callback. Rounds alternate (py-amqp, tcpulse, py-amqp, ...); the ratio is the median
of the rounds' ratios, in CPU time (target: about 1x, i.e. no measurable cost).

    .venv/bin/python benchmarks/frame_decoding.py [--messages 200000] [--rounds 5]
"""
import argparse
import json
import statistics
import time
from typing import Callable, List, Tuple

import amqp
from amqp import spec
from amqp.method_framing import frame_handler as amqp_frame_handler
from amqp.serialization import dumps

from tcpulse._listen.wire import frame_handler as tcpulse_frame_handler

Frame = Tuple[int, int, bytes]


def message_frames() -> List[Frame]:
    """The three frames of one delivery, as the broker sends them."""
    body = json.dumps({"status": {"taskId": "x" * 22, "runs": [{"runId": 0, "state": "completed"}] * 10},
                       "pad": "p" * 1000}).encode()
    deliver = bytes(dumps("sLbss", ["amq.ctag-1", 7, False, "exchange/taskcluster-queue/v1/task-completed",
                                    "primary.abc.0.wg.wid.prov.wtype.sched.group._"]))
    properties = amqp.Message(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                              application_headers={"CC": ["route.index.project.a", "route.tc-treeherder.v2.x"]})
    header = spec.Basic.CLASS_ID.to_bytes(2, "big") + bytes(2) + len(body).to_bytes(8, "big")
    return [(1, 1, (60).to_bytes(2, "big") + (60).to_bytes(2, "big") + deliver),
            (2, 1, header + properties._serialize_properties()), (3, 1, body)]


def rate(make: Callable, frames: List[Frame], messages: int) -> float:
    connection = type("Connection", (), {"bytes_recv": 0})()
    on_frame = make(connection, lambda channel, method, args, content: None)
    start = time.process_time()  # CPU time: the machine's other load moves it far less than the wall clock
    for _ in range(messages):
        for frame in frames:
            on_frame(frame)
    return messages / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    frames = message_frames()
    results = {"py-amqp": [], "tcpulse": []}
    for _ in range(args.rounds):
        results["py-amqp"].append(rate(amqp_frame_handler, frames, args.messages))
        results["tcpulse"].append(rate(tcpulse_frame_handler, frames, args.messages))
    ratios = [ours / theirs for theirs, ours in zip(results["py-amqp"], results["tcpulse"])]
    print(f"{args.messages} messages x {args.rounds} alternating rounds, 3 frames each, no-op callback")
    for label, rates in results.items():
        print(f"  {label:8} frame handler median {statistics.median(rates):9.0f} msgs/CPU-s   "
              f"({1e6 / statistics.median(rates):.2f} us CPU/msg; rounds: {', '.join(f'{r:.0f}' for r in rates)})")
    print(f"  ratio tcpulse / py-amqp: {statistics.median(ratios):.2f}x median of the rounds' ratios "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
