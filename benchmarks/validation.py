"""What schema validation costs, and why tcpulse validates with its own small validator.

1. Validators on the same bodies (varied samples of every bundled exchange, the real Taskcluster
   message shapes), formats unchecked by all: tcpulse's validator (compiled to closures) against
   fastjsonschema (compiled to Python source) and jsonschema, when those are installed;
   microseconds per body and the ratio to tcpulse's.
2. The listener on RabbitMQ draining N preloaded QueueEvents.taskCompleted messages (valid
   sample bodies of varied shape, 50 drawn as the Hypothesis strategy draws them) with validate="dead-letter" against the same
   listener without validation. Rounds alternate (off, dead-letter, off, ...) so broker warm-up
   and machine noise hit both; medians and the ratio dead-letter / off are printed (target >= 0.7x).

    .venv/bin/python benchmarks/validation.py [--messages 5000] [--rounds 3] [--bodies 2000]
"""
import argparse
import json
import random
import statistics
import sys
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Tuple

import kombu

import tcpulse
from tcpulse import Listener, QueueEvents
from tcpulse._api.schemas import checker
from tcpulse.references import open_set
from tcpulse.testing import _sample

from listener_throughput import declare, delete_listeners  # a sibling script, not a package

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
COMPLETED = QueueEvents.taskCompleted


def bodies(count: int) -> List[Tuple[str, Any]]:
    """(schema id, body) pairs cycling over every bundled exchange, the bodies of varied shape
    (optional properties, array lengths) as the Hypothesis strategy draws them."""
    exchanges = tcpulse.exchanges()
    return [(ex.schema, _sample(ex, {}, random.Random(i)).body) for i, ex in
            ((i, exchanges[i % len(exchanges)]) for i in range(count))]


def validators() -> Dict[str, Callable[[str], Callable[[Any], bool]]]:
    """Name -> (schema id -> a function that says whether a body is valid), for what is installed."""
    refset = open_set("bundled")
    docs = {"/" + p.relative_to(refset.root).as_posix(): json.loads(p.read_text())
            for p in (refset.root / "schemas").rglob("*.json")}
    found: Dict[str, Callable[[str], Callable[[Any], bool]]] = {
        "tcpulse": lambda sid: (lambda body, check=checker(refset, sid): check(body, ()) is None)}
    try:
        import fastjsonschema

        def compiled(sid: str) -> Callable[[Any], bool]:
            # Formats unchecked, as by the other two: the same work for all three.
            run = fastjsonschema.compile(docs[sid], handlers={"": lambda uri: docs[uri.split("#")[0]]},
                                         use_formats=False)

            def valid(body: Any) -> bool:
                try:
                    run(body)
                    return True
                except fastjsonschema.JsonSchemaException:
                    return False
            return valid
        found["fastjsonschema"] = compiled
    except ImportError:
        print("(fastjsonschema not installed: skipped)")
    try:
        import jsonschema
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT6

        registry = Registry().with_resources(
            (sid, Resource.from_contents(doc, default_specification=DRAFT6)) for sid, doc in docs.items())
        found["jsonschema"] = lambda sid: jsonschema.Draft6Validator(docs[sid], registry=registry).is_valid
    except ImportError:
        print("(jsonschema not installed: skipped)")
    return found


def compare_validators(count: int) -> None:
    work = bodies(count)
    print(f"validators: {count} bodies of {len(tcpulse.exchanges())} exchanges' schemas")
    per_body = {}
    for name, make in validators().items():
        started = time.perf_counter()
        checks = {sid: make(sid) for sid in {sid for sid, _ in work}}
        compile_ms = (time.perf_counter() - started) * 1000
        for sid, body in work[:50]:  # warm-up (lazy $refs, caches)
            assert checks[sid](body), (name, sid)
        started = time.perf_counter()
        for sid, body in work:
            checks[sid](body)
        per_body[name] = (time.perf_counter() - started) / count * 1e6
        print(f"  {name:15} {per_body[name]:8.1f} µs/body   (compiling {len(checks)} schemas: {compile_ms:.0f} ms)")
    for name, micro in per_body.items():
        if name != "tcpulse":
            print(f"  {name} / tcpulse time: {micro / per_body['tcpulse']:.2f}x")


def preload(name: str, count: int, group: str) -> None:
    queue = f"queue/guest/{name}"
    with kombu.Connection(BROKER) as conn:
        channel = conn.channel()
        channel.exchange_declare(exchange=COMPLETED.exchange, type="topic", durable=True, auto_delete=False)
        declare(name, lambda app: app.add_handler(lambda event: None, COMPLETED, taskGroupId=group))
        producer = kombu.Producer(channel, auto_declare=False)
        # Varied bodies (optional properties, several runs), as a real queue's messages are.
        events = [_sample(COMPLETED, {"taskGroupId": group}, random.Random(i)) for i in range(50)]
        for i in range(count):
            event = events[i % len(events)]
            producer.publish(json.dumps(event.body), exchange=COMPLETED.exchange, routing_key=event.routing_key,
                             content_type="application/json")
        while channel.queue_declare(queue=queue, passive=True).message_count < count:
            time.sleep(0.05)


def drain(name: str, group: str, count: int, validate: str) -> Tuple[float, float]:
    """(seconds to drain `count` messages, CPU seconds this process spent doing it)."""
    app = Listener(name, broker=BROKER, prefetch=100, validate=validate)  # type: ignore[arg-type]
    app.add_handler(lambda event: None, COMPLETED, taskGroupId=group)
    app.backlog_warning = 0  # the preloaded queue is a backlog on purpose
    start, cpu = time.perf_counter(), time.process_time()
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    while app.metrics.get("acked") < count:
        if not thread.is_alive():
            sys.exit("the listener stopped before draining the queue (see its log above)")
        time.sleep(0.01)
    elapsed, used = time.perf_counter() - start, time.process_time() - cpu
    app.stop()
    thread.join()
    if app.metrics.get("dead_lettered"):
        sys.exit(f"{app.metrics.get('dead_lettered')} sample bodies were dead-lettered: the samples must be valid")
    return elapsed, used


def compare_listeners(count: int, rounds: int) -> None:
    rates: Dict[str, List[float]] = {"off": [], "dead-letter": []}
    cpu: Dict[str, List[float]] = {"off": [], "dead-letter": []}
    for _ in range(rounds):
        for mode in rates:
            name, group = "bench-" + uuid.uuid4().hex[:8], "g" + uuid.uuid4().hex[:8]
            try:
                preload(name, count, group)
                elapsed, used = drain(name, group, count, mode)
                rates[mode].append(count / elapsed)
                cpu[mode].append(used / count * 1e6)
            finally:
                delete_listeners([name])
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    cpu_medians = {mode: statistics.median(values) for mode, values in cpu.items()}
    print(f"listener: {count} QueueEvents.taskCompleted messages x {rounds} rounds, prefetch 100, no-op handler")
    for mode, values in rates.items():
        print(f"  validate={mode:12} median {medians[mode]:7.0f} msgs/s, {cpu_medians[mode]:5.0f} µs CPU/msg   "
              f"(rounds: {', '.join(f'{r:.0f}' for r in values)} msgs/s)")
    print(f"  ratio dead-letter / off: {medians['dead-letter'] / medians['off']:.2f}x (target >= 0.7x); "
          f"CPU per message {cpu_medians['dead-letter'] / cpu_medians['off']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bodies", type=int, default=2000)
    args = parser.parse_args()
    compare_validators(args.bodies)
    compare_listeners(args.messages, args.rounds)


if __name__ == "__main__":
    main()
