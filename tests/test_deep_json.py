"""Deeply nested JSON is a poison body everywhere a body is read: the live listener dead-letters
it, and then the readers of bodies (`app.dead_letters()`, `tcpulse dead-letters --list`, the test
harness) handle it like any other poison instead of dying of RecursionError."""
import json
import os
import subprocess
import sys

import pytest

from tcpulse import Listener, QueueEvents
from tcpulse._listen.outcome import MAX_DEPTH, Poison, decode_body
from tcpulse.testing import deliver
from listenerkit import Publisher, delete_delivery_exchange, running, task_key, wait_for

COMPLETED = QueueEvents.taskCompleted
TOO_DEEP = f"body is JSON nested more than {MAX_DEPTH} levels deep"


def nested(depth: int) -> bytes:
    return b'{"a": ' * depth + b"1" + b"}" * depth


def nested_dict(depth: int) -> dict:
    value: dict = {"a": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("raw", [nested(1000), nested(100_000), nested(MAX_DEPTH + 1),
                                 b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"])
def test_a_body_nested_deeper_than_the_limit_is_poison(raw):
    with pytest.raises(Poison, match=f"^{TOO_DEEP}$"):
        decode_body(raw)


def test_a_body_nested_as_deep_as_the_limit_is_a_message():
    assert decode_body(nested(MAX_DEPTH))["a"]["a"]["a"] is not None


@pytest.mark.parametrize("body", [nested(1000), nested(1000).decode(), nested_dict(5000)])
def test_the_harness_dead_letters_a_deeply_nested_body_like_the_listener(body):
    app = Listener("deep")
    ran = []
    app.add_handler(ran.append, COMPLETED)
    result = deliver(app, COMPLETED, task_key(), body)
    assert result.dead_lettered and result.reason == TOO_DEEP and ran == []


@pytest.mark.rabbitmq
def test_the_dead_letters_of_a_deeply_nested_body_can_be_listed(pulse_user, taskcluster_exchanges, unique_name):
    app = Listener(unique_name, broker=pulse_user.url)
    app.add_handler(lambda event: None, COMPLETED, taskGroupId=unique_name)
    try:
        with running(app), Publisher() as pub:
            pub.producer.publish(nested(100_000), exchange=COMPLETED.exchange, routing_key=task_key(taskGroupId=unique_name),
                                 content_type="application/json", content_encoding="utf-8")
            wait_for(lambda: app.metrics.get("dead_lettered") == 1, what="the dead letter")
        [record] = app.dead_letters()
        assert record["reason"] == TOO_DEEP and record["body_text"].startswith('{"a": {"a": ')
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
        done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tcpulse"), "dead-letters", unique_name,
                               "--list", "--broker", pulse_user.url], capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["reason"] == TOO_DEEP
    finally:
        delete_delivery_exchange(pulse_user.url, f"queue/{pulse_user.name}/{unique_name}")
