"""Handlers that run long (issue 12 item 8): one warning per handler and message once a run
passes `slow_handler_warning`, naming the handler, the message's key and how long it has run;
and the `handler_seconds` histogram per handler on /metrics."""
import asyncio
import re
import socket
import time
import urllib.request

import pytest

from tcpulse import Listener
from asynckit import COMPLETED, MemoryBroker
from listenerkit import running, wait_for


@pytest.fixture
def memory(unique_name):
    made = MemoryBroker(unique_name)
    yield made
    made.close()


def slow_warnings(caplog):
    return [r.getMessage() for r in caplog.records if "has been running for" in r.getMessage()]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_handler_running_past_the_threshold_is_warned_about_once_per_handler_and_message(memory, caplog, kind):
    app = Listener(memory.name, broker=memory.url, slow_handler_warning=0.3, concurrency=2)

    if kind == "sync":
        @app.on(COMPLETED, taskGroupId=memory.name)
        def crawl(event):
            time.sleep(1.2)
    else:
        @app.on(COMPLETED, taskGroupId=memory.name)
        async def crawl(event):
            await asyncio.sleep(1.2)

    @app.on(COMPLETED, taskGroupId=memory.name)
    def quick(event):
        pass

    with running(app):
        keys = [memory.publish({"n": n}, taskId=f"t{n}") for n in range(2)]
        wait_for(lambda: app.metrics.get("acked") == 2, what="both acks")
    warnings = slow_warnings(caplog)
    assert len(warnings) == 2, warnings  # one per message, none for `quick`, none repeated
    name = app.handlers[0].display  # as logs show it: without "<locals>"
    for key in keys:
        [line] = [w for w in warnings if repr(key) in w]
        assert re.fullmatch(rf"handler {re.escape(name)} has been running for 0\.\d s on a message from "
                            rf"{COMPLETED.exchange} with key {re.escape(repr(key))} \(slow_handler_warning=0\.3 s\); "
                            r"it is still running and its message stays unacked until it returns", line), line


def test_no_warning_for_handlers_under_the_threshold_and_none_when_it_is_off(memory, caplog):
    app = Listener(memory.name, broker=memory.url, slow_handler_warning=None)
    app.on(COMPLETED, taskGroupId=memory.name)(lambda event: time.sleep(0.5))
    with running(app):
        memory.publish({"n": 1})
        wait_for(lambda: app.metrics.get("acked") == 1, what="the ack")
    assert slow_warnings(caplog) == []


@pytest.mark.parametrize("bad", [0, -1, "60", True])
def test_slow_handler_warning_must_be_positive_seconds_or_none(bad):
    with pytest.raises(ValueError, match=rf"slow_handler_warning must be a number of seconds > 0, "
                                         rf"or None for never \(got {re.escape(repr(bad))}\)"):
        Listener("x", broker="memory://", slow_handler_warning=bad)


def test_handler_seconds_is_a_prometheus_histogram_per_handler_on_metrics(memory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = Listener(memory.name, broker=memory.url, health_port=port)

    @app.on(COMPLETED, taskGroupId=memory.name)
    async def waits(event):
        await asyncio.sleep(0.2)

    @app.on(COMPLETED, taskGroupId=memory.name)
    def fails(event):
        raise ValueError("no")

    with running(app):
        for n in range(3):
            memory.publish({"n": n}, taskId=f"t{n}")
        wait_for(lambda: app.metrics.get("retried") == 3, what="three handled messages")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    waiting, failing = (f'listener="{app.label}",handler="{h.display}"' for h in app.handlers)
    assert "# TYPE tcpulse_handler_seconds histogram\n" in body
    assert f'tcpulse_handler_seconds_bucket{{{waiting},le="0.1"}} 0\n' in body
    assert f'tcpulse_handler_seconds_bucket{{{waiting},le="0.5"}} 3\n' in body
    assert f'tcpulse_handler_seconds_bucket{{{waiting},le="+Inf"}} 3\n' in body
    assert f'tcpulse_handler_seconds_count{{{failing}}} 3\n' in body
    total = float(re.search(rf"tcpulse_handler_seconds_sum{{{re.escape(waiting)}}} (\S+)", body).group(1))
    assert 0.6 <= total < 1.5
