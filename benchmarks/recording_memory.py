"""Peak memory of reading a 100 MB recording: `tcpulse._ops.recording.read` (streamed) against
loading every line into a list (what reading did before), each in a child process of its own,
in the same run. Run by hand, not in CI:

    .venv/bin/python benchmarks/recording_memory.py            # 100 MB
    .venv/bin/python benchmarks/recording_memory.py --mb 20    # a quicker check

Prints each side's peak RSS (each child's own ru_maxrss) and the ratio; the target is a streamed
read whose peak stays within 30 MB of an interpreter that only imported tcpulse._ops.recording.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

READERS = {
    "idle": "import tcpulse._ops.recording",
    "streamed": ("from tcpulse._ops.recording import read\n"
                 "messages = read(sys.argv[1])\n"
                 "assert sum(1 for _ in messages) == len(messages)"),
    "loaded whole": ("import json\n"
                     "with open(sys.argv[1], encoding='utf-8') as f:\n"
                     "    messages = [json.loads(line) for line in f if line.strip()]"),
}


def write_recording(path: Path, megabytes: int) -> int:
    line = json.dumps({"exchange": "exchange/taskcluster-queue/v1/task-completed",
                       "routing_key": "primary.t.0.wg.w.p.wt.s.g._", "routes": ["index.a.b"],
                       "body": {"status": {"taskId": "t", "runs": [{"runId": 0, "state": "completed"}]},
                                "pad": "p" * 900}}) + "\n"
    count = megabytes * 1024 * 1024 // len(line)
    with open(path, "w") as out:
        for _ in range(count):
            out.write(line)
    return count


def peak_rss_mb(code: str, path: Path) -> float:
    """The peak RSS of a fresh interpreter running `code` (its own ru_maxrss, reported on stdout)."""
    script = f"import sys, resource\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the recording (default 100)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.jsonl"
        count = write_recording(path, args.mb)
        peaks = {name: peak_rss_mb(code, path) for name, code in READERS.items()}
    print(f"recording: {args.mb} MB, {count} lines; Python {sys.version.split()[0]}")
    for name, peak in peaks.items():
        print(f"  {name:13} peak RSS {peak:8.1f} MB")
    growth = peaks["streamed"] - peaks["idle"]
    print(f"streamed read: +{growth:.1f} MB over idle (target <= 30 MB: {'met' if growth <= 30 else 'MISSED'}); "
          f"loaded whole / streamed peak = {peaks['loaded whole'] / peaks['streamed']:.1f}x")


if __name__ == "__main__":
    main()
