"""The README's main command (the fenced block after `<!-- main-command -->`) does what the
README promises: it runs the task-group watcher on the embedded broker over the sample messages,
prints what each handler did, and exits when idle. The `tcpulse ...` part runs with this
environment's console script; CI runs the whole line in a fresh venv."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- main-command -->"


def main_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, f"README.md has no {MARKER} line followed by a fenced command block"
    block = re.search(r"```[^\n]*\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert block, f"no fenced block after {MARKER}"
    return block.group(1).strip()


def tcpulse_part(command: str) -> list:
    for part in command.split("&&"):
        words = shlex.split(part)
        if words and Path(words[0]).name == "tcpulse":
            return [str(Path(sys.executable).parent / "tcpulse"), *words[1:]]
    raise AssertionError(f"the main command runs no tcpulse: {command!r}")


def test_the_main_command_installs_the_package_and_runs_the_watcher_on_the_embedded_broker():
    command = main_command()
    assert "pip install" in command and "--broker memory://" in command and "--exit-when-idle" in command
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "TASKCLUSTER_"))}
    done = subprocess.run(tcpulse_part(command), capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("completed  Vj4tUqDCTWqRUhx_sYtT2A run 0: would fetch "
                        "queue.listArtifacts('Vj4tUqDCTWqRUhx_sYtT2A', 0)")
    assert [line.split()[0] for line in lines[:-1]] == ["completed", "completed", "failed", "exception", "completed"]
    assert lines[-1].startswith("received 5 messages; handled: task_group_watcher.completed 3, ")
