"""Memory and speed of streaming a 200 MiB artifact to a file with `tcpulse.download`, against a
plain `requests` streaming copy of the same bytes from the same server, in the same run.

The fake Queue + Object + storage server of the tests (tests/artifactserver.py) runs in its own
process and serves a generated artifact (made on the fly, never held in memory) as an s3 artifact
and as an object artifact (then Object.startDownload, temporary credentials, sha256/sha512
verified). Each download runs in a fresh interpreter that first does a small warm-up download;
RSS growth is the peak RSS (VmHWM) after the download minus the RSS (VmRSS) just before it.
Rounds alternate between the downloaders, each round starting with another one; times are
medians, RSS growth the largest seen.

    .venv/bin/python benchmarks/download_memory.py [--mib 200] [--repeat 3]
                                                   [--official-python /tmp/official/bin/python]

With --official-python (a venv with today's `taskcluster`), the official client's
downloadArtifactToFile is measured the same way.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
TARGET_GROWTH_MIB = 20

SERVER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from artifactserver import ArtifactServer, Blob, generated
from hawkserver import running
with running(ArtifactServer()) as server:
    server.store("T", 0, "public/small", "s3", Blob(b"x" * 1024))
    big = generated(int(sys.argv[2]) * 1024 * 1024)
    server.store("T", 0, "public/big", "s3", big)
    server.store("O", 0, "public/big", "object", big)
    print(server.url, flush=True)
    sys.stdin.read()
"""

RUNNER = r"""
import json, sys, time
kind, root, task, path = sys.argv[1:5]

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

if kind == "requests":
    import requests
    def fetch(name, file):
        url = f"{root}/storage/{task}/0/{name}"
        with requests.get(url, stream=True, timeout=60) as answer:
            answer.raise_for_status()
            for chunk in answer.iter_content(64 * 1024):
                file.write(chunk)
else:
    if kind == "official":
        import taskcluster as package, taskcluster.download as download
    else:
        import tcpulse as package, tcpulse.download as download
    queue = package.Queue({"rootUrl": root})
    def fetch(name, file):
        download.downloadArtifactToFile(file, taskId=task if name != "public/small" else "T", name=name,
                                        queueService=queue)

with open(path, "wb") as file:
    fetch("public/small", file)
before = status("VmRSS")
start = time.perf_counter()
with open(path, "wb") as file:
    fetch("public/big", file)
seconds = time.perf_counter() - start
print(json.dumps({"growth": status("VmHWM") - before, "seconds": seconds, "before": before}))
"""


def measure(python: str, kind: str, root: str, task: str, size: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "artifact")
        done = subprocess.run([python, "-c", RUNNER, kind, root, task, path], capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"{kind} download failed: {done.stderr.strip().splitlines()[-1]}")
        if os.path.getsize(path) != size:
            raise SystemExit(f"{kind} wrote {os.path.getsize(path)} bytes, expected {size}")
        return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--official-python")
    args = parser.parse_args()
    size = args.mib * 1024 * 1024
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(TESTS), str(args.mib)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        root = server.stdout.readline().strip()
        sides = [("requests", sys.executable, "T"), ("tcpulse s3", sys.executable, "T"),
                 ("tcpulse object", sys.executable, "O")]
        if args.official_python:
            sides += [("official s3", args.official_python, "T"), ("official object", args.official_python, "O")]
        results: dict = {name: [] for name, _, _ in sides}
        for round_number in range(args.repeat):
            turn = round_number % len(sides)  # each round starts with another side: no side is always first
            for name, python, task in sides[turn:] + sides[:turn]:
                kind = name.split()[0]
                results[name].append(measure(python, kind, root, task, size))
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print_table(f"{args.mib} MiB artifact to a file", "downloader", results, args.mib, args.repeat)


def print_table(title: str, side: str, results: dict, mib: int, repeat: int) -> None:
    """The Markdown table of RESULTS.md: per side, median RSS before, largest growth, median
    time, speed and time against the `requests` side. Shared with upload_memory.py."""
    baseline = statistics.median(r["seconds"] for r in results["requests"])
    print(f"{title}, median of {repeat} rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"| {side} | RSS before | RSS growth (peak) | seconds | MiB/s | time vs plain requests | growth < {TARGET_GROWTH_MIB} MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        growth = max(r["growth"] for r in rows)
        seconds = statistics.median(r["seconds"] for r in rows)
        before = statistics.median(r["before"] for r in rows)
        verdict = "ok" if growth < TARGET_GROWTH_MIB else "MISSED"
        print(f"| {name} | {before:.1f} MiB | {growth:+.1f} MiB | {seconds:.2f} | {mib / seconds:.0f} | "
              f"{seconds / baseline:.2f}x | {verdict} |")

if __name__ == "__main__":
    main()
