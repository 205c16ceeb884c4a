#!/usr/bin/env python3
"""Owns: the documentation's pictures of operating tcpulse, made for real, and the headless
Chromium calls the page test shares.

- `operator-page.png`: the health port's page (`/`) of a listener on RabbitMQ with two handlers
  that have handled messages, one of which failed once, screenshot by headless Chromium;
- `tail-session.png`: a real `tcpulse tail` session (the command, then what it printed while
  messages were published), rendered as a terminal in HTML and screenshot by headless Chromium.

Usage (RabbitMQ on 127.0.0.1:5672 as guest, and Debian's `chromium`):
    python3 scripts/pictures.py docs/images
The page test runs the same code into a temporary folder (tests/test_page_chromium.py).
"""
import argparse
import html
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, List, Optional

GUEST = "amqp://guest:guest@127.0.0.1:5672//"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--user-data-dir={profile}"]
TIMEOUT = 90


def chromium() -> Optional[str]:
    """The path of Debian's chromium (or another Chromium binary on PATH), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: List[str]) -> str:
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    profile = Path("/tmp") / f"tcpulse-chromium-{uuid.uuid4().hex[:8]}"
    try:
        done = subprocess.run([binary, *[f.format(profile=profile) for f in FLAGS], *args], capture_output=True,
                              text=True, timeout=TIMEOUT)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str) -> str:
    """The DOM Chromium built from `url`, serialized (what a person would see, as markup)."""
    return _run(["--dump-dom", url])


def screenshot(url: str, path: Path, width: int = 1100, height: int = 900) -> Path:
    """A PNG of `url` as Chromium renders it in a `width` x `height` window."""
    _run([f"--screenshot={path}", f"--window-size={width},{height}", url])
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_finished(event: Any) -> None:
    time.sleep(0.002 * (1 + len(event.routing_key) % 5))


def report_checked(event: Any) -> None:
    if event.body.get("bad"):
        raise ValueError("artifact public/report.json is missing")


def demo_listener(broker: str, exchange: str, health_port: int) -> Any:
    """A listener with two handlers on `exchange`; `report_checked` fails on a body with "bad"."""
    import tcpulse

    app = tcpulse.Listener(broker=broker, health_port=health_port, retry_delays=(0.2,), max_attempts=2)
    app.add_handler(build_finished, tcpulse.Binding(exchange, "primary.build.#"))
    app.add_handler(report_checked, tcpulse.Binding(exchange, "route.index.#"))
    return app


def page_picture(out: Path, broker: str = GUEST) -> Path:
    """Run the demo listener on its own exchange, publish, and screenshot its page."""
    import kombu

    import tcpulse

    exchange = f"exchange/guest/pictures-{uuid.uuid4().hex[:6]}"
    with kombu.Connection(broker) as conn:
        kombu.Exchange(exchange, "topic", durable=True)(conn.channel()).declare()
    port = free_port()
    app = demo_listener(broker, exchange, port)
    thread = threading.Thread(target=app.run, daemon=True)
    thread.start()
    try:
        _wait(app.is_ready)
        with tcpulse.Publisher(broker) as publisher:
            for n in range(12):
                publisher.publish(exchange, {"n": n, "bad": n == 5}, routing_key=f"primary.build.{n}",
                                  routes=["index.project.latest"] if n % 2 else ())
        _wait(lambda: app.metrics.total("dead_lettered") >= 1 and app.metrics.total("handled") >= 17)
        return screenshot(f"http://127.0.0.1:{port}/", out / "operator-page.png")
    finally:
        app.stop()
        thread.join(20)
        with kombu.Connection(broker) as conn:
            conn.channel().exchange_delete(exchange)


def tail_picture(out: Path, broker: str = GUEST) -> Path:
    """Run `tcpulse tail` for real while task messages are published, and picture the session."""
    import tcpulse

    group = "fQ3bTYnMR5eGrAKp0qI1nA"
    command = ["tcpulse", "tail", "QueueEvents.taskCompleted", f"taskGroupId={group}", "--count", "4"]
    proc = subprocess.Popen([str(Path(sys.executable).parent / "tcpulse"), *command[1:], "--broker", broker],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = proc.stderr.readline()
    fields = dict(runId=0, workerGroup="us-east-1", workerId="i-0a1b2c", provisionerId="proj-ci",
                  workerType="linux-large", schedulerId="taskcluster-ui", taskGroupId=group)
    with tcpulse.Publisher(broker) as publisher:
        for n, task in enumerate(("Kx1yQ2", "Vb7Lm0", "Zq4Nw8", "Pt3Ra6")):
            publisher.publish(tcpulse.QueueEvents.taskCompleted, {"status": {"taskId": task, "state": "completed"},
                                                                  "runId": 0, "workerGroup": "us-east-1"},
                              routes=[f"index.project.build.{task}"] if n % 2 == 0 else [], taskId=task, **fields)
            time.sleep(0.3)
    out_text, err_text = proc.communicate(timeout=60)
    transcript = ["$ " + " ".join(command), ready.rstrip("\n"), *out_text.splitlines(), *err_text.splitlines()]
    page = out / "tail-session.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'><style>body{margin:0;background:#0d1117}"
                    "pre{margin:0;padding:14px 18px;color:#e6edf3;font:13px/1.5 'DejaVu Sans Mono',monospace;"
                    "white-space:pre-wrap;word-break:break-all}.cmd{color:#7ee787}</style></head><body><pre>"
                    + "\n".join(f"<span class='cmd'>{html.escape(line)}</span>" if line.startswith("$ ")
                                else html.escape(line) for line in transcript)
                    + "</pre></body></html>", encoding="utf-8")
    try:
        return screenshot(page.resolve().as_uri(), out / "tail-session.png", width=1600, height=300)
    finally:
        page.unlink()


def _wait(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the folder the PNGs go to, e.g. docs/images")
    parser.add_argument("--broker", default=os.environ.get("PICTURES_BROKER", GUEST))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (page_picture(args.out, args.broker), tail_picture(args.out, args.broker)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
