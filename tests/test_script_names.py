"""A handler script's file name, and the files beside it, never shadow a module: scripts named
like the standard library or tcpulse's dependencies run, and a stray `amqp.py` beside a script
is not imported instead of the library (each run for real with `tcpulse listen`)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TCPULSE = Path(sys.executable).parent / "tcpulse"
MESSAGES = str(REPO / "examples" / "messages" / "task-group.jsonl")
COMPLETED = Path(MESSAGES).read_text().count('"exchange/taskcluster-queue/v1/task-completed"')
SCRIPT = '''import tcpulse
from helper import PREFIX  # a neighbour module still imports


@tcpulse.on(tcpulse.QueueEvents.taskCompleted)
def completed(event):
    print(PREFIX, event.fields["taskId"], flush=True)
'''


def listen(script: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
    return subprocess.run([str(TCPULSE), "listen", str(script), "--broker", "memory://", "--replay", MESSAGES,
                           "--exit-when-idle"], capture_output=True, text=True, timeout=60, env=env, cwd=script.parent)


def write_script(folder: Path, name: str) -> Path:
    (folder / "helper.py").write_text("PREFIX = 'handled'\n")
    script = folder / name
    script.write_text(SCRIPT)
    return script


@pytest.mark.parametrize("name", ["queue.py", "json.py", "logging.py", "select.py", "socket.py", "kombu.py",
                                  "amqp.py", "tcpulse.py", "threading.py"])
def test_a_script_named_like_a_module_tcpulse_needs_runs_its_handlers(tmp_path, name):
    done = listen(write_script(tmp_path, name))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("handled ") == COMPLETED, done.stdout
    assert f"handled: {Path(name).stem}.completed {COMPLETED};" in done.stdout  # handler names still read <file stem>.<function>


@pytest.mark.parametrize("stray", ["amqp.py", "kombu.py", "queue.py"])
def test_a_module_file_beside_the_script_is_not_imported_instead_of_the_library(tmp_path, stray):
    (tmp_path / stray).write_text("raise ImportError('the stray file beside the script was imported')\n")
    script = write_script(tmp_path, "watcher.py")
    script.write_text(f"import {Path(stray).stem}\n" + SCRIPT)
    done = listen(script)
    assert done.returncode == 0, done.stderr
    assert "stray" not in done.stderr and done.stdout.count("handled ") == COMPLETED
