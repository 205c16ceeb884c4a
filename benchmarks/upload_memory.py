"""Memory and speed of uploading a 200 MiB file with `tcpulse.upload.uploadFromFile`, against a
plain `requests` streaming PUT of the same file to the same storage server, in the same run.

The fake Object service and storage server of the tests (tests/objectserver.py) run in their
own process; the storage server hashes the body as it arrives and keeps none of it. Each upload
runs in a fresh interpreter that first does a small warm-up upload (through putUrl, so the same
code paths are loaded); RSS growth is the peak RSS (VmHWM) after the upload minus the RSS
(VmRSS) just before it. Rounds alternate between the uploaders, each round starting with another
one; times are medians, RSS growth the largest seen.

    .venv/bin/python benchmarks/upload_memory.py [--mib 200] [--repeat 3]
                                                 [--official-python ~/.cache/tcpulse-tests/taskcluster-113.2.0/bin/python]

With --official-python (a venv with today's `taskcluster`), the official client's uploadFromFile
is measured the same way.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from download_memory import print_table  # beside this script

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"

SERVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
from objectserver import ObjectService, StorageServer
from hawkserver import running
with running(StorageServer()) as storage, running(ObjectService(storage)) as service:
    service.offer_inline = False
    print(service.url, storage.url, flush=True)
    sys.stdin.read()
"""

RUNNER = r"""
import json, os, sys, time
kind, root, path, small = sys.argv[1:5]

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

if kind == "requests":
    import requests
    def send(name, file):
        size = os.fstat(file.fileno()).st_size
        answer = requests.put(f"{root}/bucket/plain-{name}", data=file,
                              headers={"Content-Length": str(size)}, timeout=60)
        answer.raise_for_status()
else:
    if kind == "official":
        import taskcluster as package, taskcluster.upload as upload
    else:
        import tcpulse as package, tcpulse.upload as upload
    objects = package.Object({"rootUrl": root, "credentials": {"clientId": "tester",
                                                                "accessToken": "tester-secret-token"}})
    def send(name, file):
        upload.uploadFromFile(file=file, projectId="bench", name=name, contentType="application/octet-stream",
                              contentLength=os.fstat(file.fileno()).st_size, expires=package.fromNow("1 day"),
                              objectService=objects)

with open(small, "rb") as file:
    send("warm-up", file)
before = status("VmRSS")
start = time.perf_counter()
with open(path, "rb") as file:
    send("big", file)
seconds = time.perf_counter() - start
print(json.dumps({"growth": status("VmHWM") - before, "seconds": seconds, "before": before}))
"""


def measure(python: str, kind: str, root: str, path: str, small: str) -> dict:
    done = subprocess.run([python, "-c", RUNNER, kind, root, path, small], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{kind} upload failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout)


def write_file(path: str, size: int) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as file:
        for offset in range(0, size, len(block)):
            file.write(block[:size - offset])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--official-python")
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(TESTS)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    with tempfile.TemporaryDirectory() as folder:
        path, small = os.path.join(folder, "big"), os.path.join(folder, "small")
        write_file(path, args.mib * 1024 * 1024)
        write_file(small, 64 * 1024)
        try:
            service_url, storage_url = server.stdout.readline().split()
            sides = [("requests", sys.executable), ("tcpulse", sys.executable)]
            if args.official_python:
                sides.append(("official", args.official_python))
            results: dict = {name: [] for name, _ in sides}
            for round_number in range(args.repeat):
                turn = round_number % len(sides)  # each round starts with another side
                for name, python in sides[turn:] + sides[:turn]:
                    root = storage_url if name == "requests" else service_url
                    results[name].append(measure(python, name, root, path, small))
        finally:
            server.stdin.close()
            server.wait(timeout=30)
    print_table(f"{args.mib} MiB file uploaded", "uploader", results, args.mib, args.repeat)

if __name__ == "__main__":
    main()
