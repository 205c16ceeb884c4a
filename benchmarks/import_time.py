"""Import time: `import tcpulse` against `import taskcluster` (official 4.0.1), same run.

Each import runs in a fresh interpreter (from a temporary directory) many times; the median
counts. Also timed: `tcpulse.Queue` (the REST client class, which loads requests and mohawk),
the fair match for what `import taskcluster` gives.

    .venv/bin/python benchmarks/import_time.py [--runs 15] [--official-python /tmp/tcv/bin/python]
"""
import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TIMER = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
CASES = (
    ("import tcpulse", sys.executable, "import tcpulse"),
    ("import tcpulse; tcpulse.Queue", sys.executable, "import tcpulse; tcpulse.Queue"),
)


def timed(python: str, code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        done = subprocess.run([python, "-c", TIMER.format(code=code)], capture_output=True, text=True,
                              cwd=tempfile.gettempdir(), check=True)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--official-python", default="/tmp/tcv/bin/python")
    args = parser.parse_args()
    if not Path(args.official_python).exists():
        raise SystemExit(f"no official client interpreter at {args.official_python}; create one with:\n"
                         "  python3 -m venv V && V/bin/pip install taskcluster==4.0.1")
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}; python {platform.python_version()}; "
          f"median of {args.runs} fresh interpreters")
    baseline = timed(args.official_python, "import taskcluster", args.runs)
    print(f"  {'import taskcluster (4.0.1)':32} {baseline * 1000:7.1f} ms")
    for label, python, code in CASES:
        seconds = timed(python, code, args.runs)
        print(f"  {label:32} {seconds * 1000:7.1f} ms   ratio {seconds / baseline:4.2f}x")
    print("  target: import tcpulse <= 0.5x import taskcluster")


if __name__ == "__main__":
    main()
