"""The test suite cleans up after runs that were killed before their teardown: their users and
every queue those users owned pile up on the shared broker otherwise, until RabbitMQ runs out of
file handles and stops answering (it did, with 800 queues left by interrupted runs)."""
import subprocess
import sys

import kombu

from conftest import BROKER_HOST, BROKER_PORT, purge_orphaned_test_users, rabbitmqctl


def a_dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_killed_runs_user_and_its_queues_are_purged_and_a_live_runs_are_kept(pulse_user):
    dead = f"tcpulse-test-{a_dead_pid()}-abc123"
    rabbitmqctl("add_user", dead, "left-behind")
    rabbitmqctl("set_permissions", "-p", "/", dead, f"^queue/{dead}/.*", f"^queue/{dead}/.*", f"^queue/{dead}/.*")
    with kombu.Connection(hostname=BROKER_HOST, port=BROKER_PORT, userid=dead, password="left-behind",
                          virtual_host="/") as conn:
        kombu.Queue(f"queue/{dead}/left-behind", durable=True)(conn.channel()).declare()
    purged = purge_orphaned_test_users()
    assert dead in purged and pulse_user.name not in purged
    users = rabbitmqctl("list_users", "--no-table-headers").split()
    assert dead not in users and pulse_user.name in users
    assert f"queue/{dead}/" not in rabbitmqctl("list_queues", "name", "--no-table-headers")
