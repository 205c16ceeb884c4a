"""Shared fixtures: the real RabbitMQ on 127.0.0.1:5672 and Pulse-like users on it.

Broker tests are marked `rabbitmq`. When the broker is unreachable they skip with the reason,
except under CI=true, where they fail: a green CI run must have exercised the broker.
"""
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import uuid

import pytest
from hypothesis import HealthCheck, settings

# The suite shares two cores with the broker and with the handlers it starts: drawing a body can
# be slow then, which no test is about (`tcpulse.testing.samples`' doctest included: a profile
# loaded here is the default its own @settings inherits from).
settings.register_profile("tcpulse-suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tcpulse-suite")

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
GUEST_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}//"


def broker_reachable() -> bool:
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2):
            return True
    except OSError:
        return False


def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl and return its stdout; a failure raises with its stderr."""
    done = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The guest URL of the real broker; skips (or fails under CI=true) when it is down."""
    if not broker_reachable():
        message = f"RabbitMQ is not reachable on {BROKER_HOST}:{BROKER_PORT} (start it: rabbitmq-server -detached)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return GUEST_URL


class PulseUser:
    """A broker user with Pulse's permissions: it owns only queue/<name>/... and exchange/<name>/..."""

    def __init__(self, name: str, password: str):
        self.name = name
        self.password = password
        self.url = f"amqp://{name}:{password}@{BROKER_HOST}:{BROKER_PORT}//"

    def __repr__(self) -> str:
        return f"PulseUser({self.name!r})"

    def close_connections(self, reason: str = "test: connection closed on purpose") -> int:
        """Close every broker connection of this user (as `close_all_connections` would) and
        return how many were closed; other users' connections are left alone so that tests
        running beside this one are not disturbed."""
        rows = rabbitmqctl("list_connections", "pid", "user").splitlines()
        pids = [row.split("\t")[0] for row in rows if row.endswith("\t" + self.name)]
        for pid in pids:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, reason],
                           capture_output=True, timeout=60)
        return len(pids)

    def delete_own_objects(self) -> None:
        """Delete every queue and exchange this user created (its retry, dead-letter and
        delivery topology included)."""
        delete_broker_objects(self.name, self.password, f"queue/{self.name}/", f"exchange/{self.name}/")


def delete_broker_objects(user: str, password: str, queue_prefix: str, exchange_prefix: str) -> None:
    """Delete, over AMQP as `user`, the queues and exchanges whose names start with
    the prefixes. One rabbitmqctl call lists each kind (it costs about 1 s a call); a delete the
    user may not do falls back to rabbitmqctl."""
    import kombu

    def names(kind: str, prefix: str) -> list:
        rows = rabbitmqctl(f"list_{kind}", "name", "--no-table-headers").splitlines()
        return [row.strip() for row in rows if row.strip().startswith(prefix)]

    with kombu.Connection(hostname=BROKER_HOST, port=BROKER_PORT, userid=user, password=password,
                          virtual_host="/") as conn:
        for kind, prefix in (("queues", queue_prefix), ("exchanges", exchange_prefix)):
            for name in names(kind, prefix):
                channel = conn.channel()  # a refused delete closes only its own channel
                try:
                    if kind == "queues":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                    channel.close()
                except Exception:
                    subprocess.run(["rabbitmqctl", "-q", f"delete_{kind[:-1]}", name],
                                   capture_output=True, timeout=60)


# A test user's name carries the pid of the pytest that made it, so that a later session can
# tell the users (and queues) of a run that was killed before its teardown from a live run's.
TEST_USER = re.compile(r"^tcpulse-[a-z]+-(\d+)-[0-9a-f]{6}$")


def create_pulse_user(prefix: str = "tcpulse-test") -> PulseUser:
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    user = PulseUser(name, "p/@%" + secrets.token_hex(8))
    rabbitmqctl("add_user", name, user.password)
    rabbitmqctl("set_permissions", "-p", "/", name,
                f"^(queue/{name}/.*|exchange/{name}/.*)",
                f"^(queue/{name}/.*|exchange/{name}/.*)",
                f"^(queue/{name}/.*|exchange/.*)")
    return user


@pytest.fixture(scope="session")
def pulse_user(rabbitmq) -> PulseUser:
    """One Pulse-like user for the whole session (rabbitmqctl is slow, about 1 s a call).

    Its password holds '/', '@' and '%' so that URL quoting is exercised on every connection.
    """
    user = create_pulse_user()
    yield user
    user.delete_own_objects()
    subprocess.run(["rabbitmqctl", "-q", "delete_user", user.name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def attacker(rabbitmq) -> PulseUser:
    """A second Pulse-like user, for tests that replay what another Pulse user can do to the
    first (`pulse_user`)."""
    user = create_pulse_user("tcpulse-attacker")
    yield user
    user.delete_own_objects()
    subprocess.run(["rabbitmqctl", "-q", "delete_user", user.name], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def taskcluster_exchanges(rabbitmq) -> list:
    """Declare, as guest, every exchange of the shipped references on the broker, as the
    Taskcluster services themselves do on Pulse; a Pulse user may then declare them passively."""
    import kombu

    import tcpulse

    names = [exchange.exchange for exchange in tcpulse.exchanges()]
    with kombu.Connection(rabbitmq) as conn:
        channel = conn.channel()
        for name in names:
            kombu.Exchange(name, type="topic", durable=True)(channel).declare()
    return names


@pytest.fixture(params=["classic", "quorum"])
def queue_type(request) -> str:
    """Each delivery test runs on both queue types a listener may use."""
    return request.param


UNIQUE_PREFIX = "t-"


@pytest.fixture
def unique_name() -> str:
    """A queue or listener name no other test uses (removed from the guest account when the
    session ends, with whatever topology a guest listener of that name declared)."""
    return UNIQUE_PREFIX + uuid.uuid4().hex[:10]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def purge_orphaned_test_users() -> list:
    """Delete the test users whose pytest is gone, with every queue and exchange they own: a
    killed run leaves them behind, and a broker that piles up queues runs out of file handles
    (every queue holds some). Returns the names purged."""
    users = rabbitmqctl("list_users", "--no-table-headers").split()
    orphans = [name for name in users if TEST_USER.match(name) and not _alive(int(TEST_USER.match(name).group(1)))]
    for name in orphans:
        delete_broker_objects("guest", "guest", f"queue/{name}/", f"exchange/{name}/")
        rabbitmqctl("delete_user", name)
    return orphans


@pytest.fixture(scope="session", autouse=True)
def _sweep_guest_test_objects():
    if broker_reachable():
        purge_orphaned_test_users()
    yield
    if broker_reachable():
        delete_broker_objects("guest", "guest", f"queue/guest/{UNIQUE_PREFIX}", f"exchange/guest/{UNIQUE_PREFIX}")


OFFICIAL_CLIENT = "taskcluster==4.0.1"  # the release whose wire formats tcpulse matches
# Today's official client: the control that upload, helper and module-layout tests also run on.
CURRENT_OFFICIAL_CLIENT = "taskcluster==113.2.0"


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def official_venv_python(spec: str, variable: str) -> str:
    """A Python interpreter with the official client `spec` installed: $`variable` when set, else
    a venv built once with pip under ~/.cache/tcpulse-tests (reused by later runs; needs the
    package index the first time). Skips when it cannot be had, except under CI=true."""
    given = os.environ.get(variable)
    if given:
        if not os.path.exists(given):
            _skip_or_fail(f"{variable}={given} does not exist")
        return given
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    venv = cache / "tcpulse-tests" / spec.replace("==", "-")
    python, built = venv / "bin" / "python", venv / "built"
    if not built.exists():  # a half-built venv (an interrupted run) is rebuilt from scratch
        shutil.rmtree(venv, ignore_errors=True)
        steps = ([sys.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                _skip_or_fail(f"cannot build a venv with {spec} in {venv} ({' '.join(step[-2:])}: "
                              f"{done.stderr.strip().splitlines()[-1:]}); set {variable} to an "
                              "interpreter that has it")
        built.write_text(spec + "\n")
    return str(python)


@pytest.fixture(scope="session")
def official_python() -> str:
    """A Python interpreter with the official client (taskcluster 4.0.1) installed, for the
    byte-for-byte comparisons (TCPULSE_OFFICIAL_PYTHON overrides)."""
    return official_venv_python(OFFICIAL_CLIENT, "TCPULSE_OFFICIAL_PYTHON")


@pytest.fixture(scope="session")
def current_official_python() -> str:
    """A Python interpreter with today's official client (taskcluster 113.x), the control of the
    upload, helper and import tests (TCPULSE_CURRENT_OFFICIAL_PYTHON overrides)."""
    return official_venv_python(CURRENT_OFFICIAL_CLIENT, "TCPULSE_CURRENT_OFFICIAL_PYTHON")


REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory) -> pathlib.Path:
    """The wheel `pip wheel` builds from the source tree, built once per session from a clean copy
    (setuptools reuses an in-tree build/ directory, so a stale one would leak old files into it)."""
    source = tmp_path_factory.mktemp("source") / "tcpulse"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                           str(source), "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [wheel] = out.glob("tcpulse-*.whl")
    return wheel


@pytest.fixture(scope="session")
def private_rabbitmq(rabbitmq):
    """A private RabbitMQ node (tests/faultkit.py: own node name, port, cookie, data dir) that
    fault tests may stop, start and disconnect without disturbing tests on the shared broker."""
    from faultkit import RABBIT_BIN, PrivateRabbit

    if not (RABBIT_BIN / "rabbitmq-server").exists():
        message = f"cannot start a private RabbitMQ node: {RABBIT_BIN / 'rabbitmq-server'} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    node = PrivateRabbit().start()
    yield node
    node.stop()
