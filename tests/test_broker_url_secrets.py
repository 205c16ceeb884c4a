"""No form of broker URL, well-formed or not, puts its password in any output: the parser's
errors, the listener's attributes, and every command that takes a broker (run for real)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcpulse import Listener
from tcpulse._broker.connection import parse_urls, redact_url

REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"
SECRET = "S3cretPw"
MALFORMED = [
    f"amqp//alice:{SECRET}@127.0.0.1:5672",  # no ':' after the scheme
    f"amqp://alice:{SECRET}",  # no host: the password reads as a port
    f"amqp:/alice:{SECRET}@127.0.0.1",  # one slash
    f"alice:{SECRET}@127.0.0.1",  # no scheme
    f"amqp:alice:{SECRET}@127.0.0.1",  # no slashes
    f"http://alice:{SECRET}@127.0.0.1/",  # another scheme
    f"amqp://alice:{SECRET}/vhost",  # no host, a vhost
    f"amqp://alice:{SECRET}@127.0.0.1:notaport//",
    f" amqp//alice:{SECRET}:more@127.0.0.1 ",  # a colon in the password, spaces around
    f"amqp://alice:{SECRET}@127.0.0.1//;http://alice:{SECRET}@127.0.0.1/",  # a bad second node of a cluster
    # A raw password holding ';<letters>://' splits into two URLs: the tail must not be shown.
    f"amqp://alice:123;abc://{SECRET}@127.0.0.1//",
    f"amqp://alice:x;amqp://{SECRET}@127.0.0.1:notaport//",
]
COMMANDS = {
    "publish": ["publish", "QueueEvents.taskCompleted", "--routing-key", "primary.t.0.wg.w.p.wt.s.g._", "--body", "{}"],
    "replay": ["replay", "examples/messages/task-group.jsonl"],
    "record": ["record", "QueueEvents.taskCompleted", "--out", os.devnull, "--timeout", "1"],
    "dead-letters": ["dead-letters", "watcher", "--list"],
    "listen": ["listen", "examples/task_group_watcher.py"],
}


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_broker_url_is_refused_naming_the_problem_without_its_password(url):
    with pytest.raises(ValueError, match=r"^broker URL (must look like|port must be a number)") as info:
        parse_urls(url)
    assert SECRET not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("url,shown", [
    (f"amqp//alice:{SECRET}@127.0.0.1:5672", "amqp//alice:***@127.0.0.1:5672"),
    (f"amqp://alice:{SECRET}", "amqp://alice:***"),
    (f"amqp:/alice:{SECRET}@h", "amqp:/alice:***@h"),
    (f"alice:{SECRET}@h", "alice:***@h"),
    (f"amqp://alice:p@ss:{SECRET}@h:5672//", "amqp://alice:***@h:5672//"),
    ("amqp://h:5672/vhost", "amqp://h:5672/vhost"),
    ("amqp://h", "amqp://h"),
    ("memory://", "memory://"),
])
def test_redact_url_keeps_the_user_and_host_and_hides_whatever_may_be_a_password(url, shown):
    assert redact_url(url) == shown


def test_the_listener_broker_attribute_shows_no_password_in_any_view():
    app = Listener("w", broker=f"amqp://alice:{SECRET}@h:5672//")
    views = [str(app.broker), repr(app.broker), repr(app), repr(vars(app)), f"{app.broker}"]
    assert all(SECRET not in view for view in views), views
    assert str(app.broker) == "amqp://alice:***@h:5672//"
    assert app.broker.password == SECRET  # still there for the connection itself
    with pytest.raises(TypeError):
        vars(app.broker)


def _run(args, environ):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
    return subprocess.run([str(TCPULSE), *args], capture_output=True, text=True, timeout=60,
                          env={**env, **environ}, cwd=REPO)


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_prints_the_password_of_a_malformed_broker_flag(command, url):
    done = _run([*COMMANDS[command], "--broker", url], {})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("tcpulse: error: ") and "broker URL" in done.stderr
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.parametrize("url", MALFORMED)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_command_prints_the_password_of_a_malformed_pulse_url(command, url):
    done = _run(COMMANDS[command], {"PULSE_URL": url})
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "broker URL" in done.stderr and SECRET not in done.stdout + done.stderr
