"""Import time: `import tcpulse` and its first exchange lookup against `import taskcluster`
(the official client of today, 113.x), same run.

Each import runs in a fresh interpreter (from a temporary directory) many times; the median
counts; rounds alternate between the sides. The target row is `import tcpulse` plus the first exchange lookup
(`tcpulse.QueueEvents.taskCompleted`): it reads the references' manifest and Queue's exchanges
reference only, not the whole set. Also timed: `tcpulse.Queue` (the REST client class, which
loads requests and mohawk), the fair match for what `import taskcluster` gives.

    python3 -m venv benchmarks/.venv-official && benchmarks/.venv-official/bin/pip install 'taskcluster>=113,<114'
    .venv/bin/python benchmarks/import_time.py [--runs 15] [--official-python benchmarks/.venv-official/bin/python]
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

HERE = Path(__file__).resolve().parent
TIMER = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
FIRST_LOOKUP = "import tcpulse; tcpulse.QueueEvents.taskCompleted"
TARGET = 0.2
CASES = (
    ("import tcpulse", "import tcpulse"),
    ("import tcpulse + first exchange", FIRST_LOOKUP),
    ("import tcpulse; tcpulse.Queue", "import tcpulse; tcpulse.Queue"),
)


def one_run(python: str, code: str) -> float:
    done = subprocess.run([python, "-c", TIMER.format(code=code)], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), check=True)
    return float(done.stdout.strip().splitlines()[-1])


def medians(sides: Dict[str, Tuple[str, str]], runs: int) -> Dict[str, float]:
    """The median seconds of each side's code; rounds alternate between the sides, so that the
    load of a shared machine hits all of them alike."""
    samples: Dict[str, List[float]] = {label: [] for label in sides}
    for _ in range(runs):
        for label, (python, code) in sides.items():
            samples[label].append(one_run(python, code))
    return {label: statistics.median(values) for label, values in samples.items()}


def official_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('taskcluster'))"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def compile_package(python: str) -> None:
    """Write tcpulse's bytecode, as pip does when it installs a wheel: an editable checkout run with
    PYTHONDONTWRITEBYTECODE would otherwise compile every module on every import, which the
    installed official package never does."""
    where = subprocess.run([python, "-c", "import os, tcpulse; print(os.path.dirname(tcpulse.__file__))"],
                           capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", where], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--official-python", default=str(HERE / ".venv-official" / "bin" / "python"))
    args = parser.parse_args()
    if not Path(args.official_python).exists():
        raise SystemExit(f"no official client interpreter at {args.official_python}; create one with:\n"
                         "  python3 -m venv benchmarks/.venv-official && "
                         "benchmarks/.venv-official/bin/pip install 'taskcluster>=113,<114'")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}; python {platform.python_version()}; "
          f"median of {args.runs} fresh interpreters")
    compile_package(sys.executable)
    official = f"import taskcluster ({official_version(args.official_python)})"
    sides = {official: (args.official_python, "import taskcluster"),
             **{label: (sys.executable, code) for label, code in CASES}}
    seconds = medians(sides, args.runs)
    baseline = seconds.pop(official)
    print(f"  {official:34} {baseline * 1000:7.1f} ms")
    for label, value in seconds.items():
        print(f"  {label:34} {value * 1000:7.1f} ms   ratio {value / baseline:4.2f}x")
    print(f"  target: import tcpulse + first exchange <= {TARGET}x import taskcluster")


if __name__ == "__main__":
    main()
