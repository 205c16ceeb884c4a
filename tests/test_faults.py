"""Fault injection on a real RabbitMQ: nothing published is ever lost.

Every scenario keeps a ledger (tests/faultkit.py): the ids the broker accepted, the ids each
`tcpulse listen` process handled (one line per handler run, written unbuffered before the ack,
so a kill -9 keeps them) and the ids found in the dead-letter queue. Each asserts that
published ⊆ handled ∪ dead-lettered, prints the duplicates, bounds them by what was in flight,
and checks the listener's own /metrics counters against the ledger.

Faults that hit a whole broker run on a private RabbitMQ node (`private_rabbitmq`), never on
the shared one other tests use. Run alone with: .venv/bin/pytest -m fault
"""
import signal
import time

import pytest

import faultkit
from faultkit import Ledger, ListenerProcess, counter, quiet_metrics, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq]

PREFETCH = 100


@pytest.fixture(scope="module")
def node_user(private_rabbitmq):
    faultkit.declare_exchange(private_rabbitmq.guest_url)
    return private_rabbitmq.add_pulse_user("fault")


@pytest.fixture
def world(private_rabbitmq, node_user, tmp_path, unique_name, capsys):
    """What a scenario needs: the node, its Pulse user, a ledger, and a way to start listeners."""
    script = tmp_path / "listener.py"
    script.write_text(faultkit.LISTENER_SCRIPT)
    ledger = Ledger(tmp_path)
    ledger.show = lambda line: _show(capsys, line)
    started = []

    def listener(label, *extra, **env):
        process = ListenerProcess(script, node_user.url, unique_name, ledger, label,
                                  ("--prefetch", str(PREFETCH), *extra), {k: str(v) for k, v in env.items()})
        started.append(process)
        return process

    yield private_rabbitmq, node_user, ledger, listener, unique_name
    for process in started:
        if process.proc.poll() is None:
            process.kill()


def _show(capsys, line):
    # Past pytest's capture: the ledger line (duplicates included) belongs in every CI log.
    with capsys.disabled():
        print("\n  ledger " + line)


def all_handled(ledger, expected):
    return lambda: set(expected) <= set(ledger.handled())


def assert_nothing_lost(ledger, scenario, extra_allowed):
    """No id lost; duplicates (extra handler runs) only as many as could have been in flight."""
    ledger.report(scenario)
    assert ledger.lost() == [], f"{scenario}: lost ids {ledger.lost()[:20]}"
    extra = sum(ledger.handled().values()) - len(ledger.handled())
    assert extra <= extra_allowed, f"{scenario}: {extra} duplicate runs, more than the {extra_allowed} in flight"


def assert_metrics_match(metrics, ledger, label, failed_runs=0, retries_inherited=0):
    """Every delivery ran the one handler once. `received` counts a message once, not each retry
    of it, so it equals the handled runs, less the retries an earlier listener left waiting in the
    holding queue (their first attempt was that listener's): at most `retries_inherited`."""
    runs = sum(ledger.handled_by(label).values())
    assert counter(metrics, "handled") == runs, (label, metrics)
    assert runs - retries_inherited <= counter(metrics, "received") <= runs, (label, metrics)
    assert counter(metrics, "handler_errors") == failed_runs, (label, metrics)
    assert counter(metrics, "dead_lettered") == 0 and counter(metrics, "unmatched") == 0, (label, metrics)


def test_close_all_connections_repeatedly_during_a_20000_message_burst_loses_nothing(world):
    node, user, ledger, listener, _ = world
    consumer = listener("a")
    consumer.wait_ready()
    publisher = faultkit.BurstPublisher(node.guest_url, ledger, batch=500, pause=0.1).start(range(20_000))
    closes = closes_mid_burst = 0
    while closes < 4 or not publisher.done:
        time.sleep(1.0)
        closes_mid_burst += not publisher.done
        node.close_all_connections("fault: close_all_connections")
        closes += 1
    publisher.join()
    assert closes_mid_burst >= 2, "the burst ended before the faults: make it longer"
    wait_for(all_handled(ledger, range(20_000)), 120, "every id to be handled", consumer)
    metrics = quiet_metrics(consumer)
    print(f"closes {closes}, publisher re-sent {publisher.republished}, reconnects "
          f"{counter(metrics, 'reconnects'):.0f}")
    assert_nothing_lost(ledger, "close_all_connections x%d" % closes,
                        publisher.republished + (closes + 1) * 2 * PREFETCH)
    assert 1 <= counter(metrics, "reconnects") <= closes
    assert_metrics_match(metrics, ledger, "a")
    assert len(ledger.handled()) <= counter(metrics, "acked") <= counter(metrics, "received")
    assert consumer.terminate() == 0


def test_broker_stop_app_and_start_app_during_a_stream_loses_nothing(world):
    node, user, ledger, listener, _ = world
    consumer = listener("a")
    consumer.wait_ready()
    publisher = faultkit.BurstPublisher(node.guest_url, ledger, batch=50, pause=0.05).start(range(4_000))
    wait_for(lambda: len(ledger.handled()) >= 300, 30, "the stream to flow", consumer)
    node.stop_app()
    assert not publisher.done, "the stream ended before the broker stopped: make it longer"
    wait_for(lambda: consumer.get("/ready")[0] == 503, 30, "/ready to say the broker is gone", consumer)
    time.sleep(2)
    node.start_app()
    publisher.join()
    wait_for(all_handled(ledger, range(4_000)), 120, "every id to be handled", consumer)
    consumer.wait_ready(60)
    metrics = quiet_metrics(consumer)
    assert_nothing_lost(ledger, "stop_app/start_app", publisher.republished + 2 * PREFETCH)
    assert counter(metrics, "reconnects") >= 1
    assert_metrics_match(metrics, ledger, "a")
    assert consumer.terminate() == 0


def test_kill_9_of_a_listener_mid_burst_then_a_restart_loses_nothing(world):
    node, user, ledger, listener, _ = world
    first = listener("first", HANDLER_DELAY=0.002)  # paced, so the kill surely lands mid-burst
    first.wait_ready()
    publisher = faultkit.BurstPublisher(node.guest_url, ledger, batch=500).start(range(6_000))
    wait_for(lambda: len(ledger.handled_by("first")) >= 1_500, 60, "the first listener to get going", first)
    first.kill()
    assert first.proc.returncode == -signal.SIGKILL
    assert len(ledger.handled()) < 6_000, "the kill came after the burst: make the burst longer"
    publisher.join()
    second = listener("second")
    wait_for(all_handled(ledger, range(6_000)), 120, "every id to be handled after the restart", second)
    metrics = quiet_metrics(second)
    assert_nothing_lost(ledger, "kill -9 then restart", PREFETCH)
    assert_metrics_match(metrics, ledger, "second")
    assert second.terminate() == 0


def test_three_competing_listeners_one_killed_lose_nothing(world):
    node, user, ledger, listener, _ = world
    consumers = {label: listener(label, HANDLER_DELAY=0.001) for label in "abc"}
    for consumer in consumers.values():
        consumer.wait_ready()
    publisher = faultkit.BurstPublisher(node.guest_url, ledger, batch=200).start(range(6_000))
    wait_for(lambda: len(ledger.handled()) >= 1_500, 60, "the three listeners to share the stream")
    consumers["b"].kill()
    publisher.join()
    wait_for(all_handled(ledger, range(6_000)), 120, "every id to be handled by the survivors", consumers["a"])
    assert_nothing_lost(ledger, "3 competing listeners, one killed", PREFETCH)
    for label in "ac":
        assert ledger.handled_by(label), f"listener {label} got no share of the messages"
        assert_metrics_match(quiet_metrics(consumers[label]), ledger, label)
        assert consumers[label].terminate() == 0
    assert ledger.handled_by("b"), "the killed listener had handled some messages before dying"


def test_sigterm_while_messages_wait_for_a_retry_loses_nothing(world):
    node, user, ledger, listener, name = world
    failing = dict(FAIL_EVERY=10, FAIL_UNTIL_ATTEMPT=3, RETRY_DELAY=1.5)
    first = listener("first", **failing)
    first.wait_ready()
    faultkit.BurstPublisher(node.guest_url, ledger, batch=500).publish(range(2_000))
    wait_for(lambda: counter(first.metrics(), "retried") >= 100, 60, "failed messages to wait for a retry", first)
    assert first.terminate() == 0, first.log()[-4000:]
    assert "SIGTERM" in first.log(), "the listener logged that it drains on SIGTERM"
    second = listener("second", **failing)
    wait_for(all_handled(ledger, range(2_000)), 120, "every id to be handled after the restart", second)
    metrics = quiet_metrics(second)
    ledger.dead_lettered = faultkit.drain_ids(user.url, f"queue/{user.name}/{name}/dead-letter")
    assert_nothing_lost(ledger, "SIGTERM during retries", 0)
    assert not ledger.dead_lettered, "nothing that succeeds on attempt 3 may be dead-lettered"
    failed_runs = counter(metrics, "handler_errors")
    assert counter(metrics, "retried") == failed_runs
    # Each id fails at most until attempt 3 and waits in the holding queue at most once at a time.
    failing_ids = len(range(0, 2_000, failing["FAIL_EVERY"]))
    assert_metrics_match(metrics, ledger, "second", failed_runs=failed_runs, retries_inherited=failing_ids)
    assert second.terminate() == 0
