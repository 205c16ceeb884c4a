"""REST calls per second: tcpulse against the official taskcluster 4.0.1 client, same run, same server.

A local HTTPS server (self-signed certificate made now with the `openssl` CLI, trusted by both
clients through REQUESTS_CA_BUNDLE, so both verify it) runs in its own process. Each client runs
`Queue.task(taskId)` N times in its own subprocess: tcpulse with this interpreter, the official
client with --official-python. Two rounds: anonymous calls, and Hawk-signed calls (the official
client needs `base64.encodestring` put back to sign at all on Python >= 3.9).

    .venv/bin/python benchmarks/rest_calls.py [--calls 500] [--repeat 3] [--plain-http]
                                              [--official-python /tmp/tcv/bin/python]

Needs the official client in a separate venv (it pins old mohawk/slugid):
    python3 -m venv V && V/bin/pip install taskcluster==4.0.1
"""
import argparse
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LATENCY = 0.0  # seconds the server waits before answering (aio_calls.py: a service's own time)

RUNNER = r"""
import json, sys, time
package, url, calls, signed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "signed"
if package == "taskcluster":
    import base64
    base64.encodestring = base64.encodebytes  # removed in Python 3.9; the official client signs with it
client_module = __import__(package)
options = {"baseUrl": url, "maxRetries": 0}
if signed:
    options["credentials"] = {"clientId": "bench", "accessToken": "bench-secret-token"}
queue = client_module.Queue(options)
assert queue.task("warm-up") == {"taskId": "x"}
start, cpu = time.perf_counter(), time.process_time()
for number in range(calls):
    queue.task("abc%d" % number)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}))
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        time.sleep(LATENCY)
        body = b'{"taskId": "x"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops the SYNs of clients that open many connections at
    # once (aio_calls.py: 50), which then wait a full SYN retransmit (1 s) to connect.
    request_queue_size = 128


def serve(cert: str, key: str, latency: str = "0") -> None:
    """Server process: print the port, then answer until killed (plain HTTP when cert is '-'),
    each answer after `latency` seconds."""
    global LATENCY
    LATENCY = float(latency)
    server = _Server(("127.0.0.1", 0), _Handler)
    if cert != "-":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def make_certificate(folder: Path) -> tuple:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


def run_client(python: str, package: str, url: str, calls: int, mode: str, cert: str) -> dict:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": cert} if cert != "-" else dict(os.environ)
    env.pop("DEBUG_TASKCLUSTER_CLIENT", None)
    done = subprocess.run([python, "-c", RUNNER, package, url, str(calls), mode], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{package} run failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def machine_info(official_python: str) -> str:
    official = subprocess.run([official_python, "-c", "import platform; print(platform.python_version())"],
                              capture_output=True, text=True).stdout.strip()
    return (f"machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}; "
            f"python {platform.python_version()} (tcpulse), {official} (official)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per client and mode, interleaved (load on a shared box hits both); the median counts")
    parser.add_argument("--official-python", default="/tmp/tcv/bin/python")
    parser.add_argument("--plain-http", action="store_true", help="no TLS (shows what keep-alive alone gives)")
    parser.add_argument("--serve", nargs="+", metavar="CERT KEY [LATENCY]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve)
    if not Path(args.official_python).exists():
        raise SystemExit(f"no official client interpreter at {args.official_python}; create one with:\n"
                         "  python3 -m venv V && V/bin/pip install taskcluster==4.0.1\n"
                         "and pass --official-python V/bin/python")
    print(machine_info(args.official_python))
    with tempfile.TemporaryDirectory() as folder:
        cert, key = ("-", "-") if args.plain_http else make_certificate(Path(folder))
        server = subprocess.Popen([sys.executable, __file__, "--serve", cert, key], stdout=subprocess.PIPE, text=True)
        try:
            scheme = "http" if args.plain_http else "https"
            url = f"{scheme}://127.0.0.1:{server.stdout.readline().strip()}/api/queue/v1"
            compare(args, url, cert)
        finally:
            server.terminate()
            server.wait()


def compare(args: argparse.Namespace, url: str, cert: str) -> None:
    transport = "plain HTTP" if args.plain_http else "HTTPS (verified self-signed cert)"
    print(f"{args.calls} x Queue.task() over {transport}, median of {args.repeat} runs")
    clients = (("tcpulse", sys.executable), ("taskcluster", args.official_python))
    for mode in ("anonymous", "signed"):
        runs: dict = {package: [] for package, _ in clients}
        for _ in range(args.repeat):
            for package, python in clients:
                runs[package].append(run_client(python, package, url, args.calls, mode, cert))
        rate = {p: args.calls / statistics.median(r["seconds"] for r in runs[p]) for p in runs}
        cpu = {p: 1000 * statistics.median(r["cpu"] for r in runs[p]) / args.calls for p in runs}
        print(f"  {mode:9}  tcpulse {rate['tcpulse']:7.1f} calls/s ({cpu['tcpulse']:.2f} ms CPU/call)   "
              f"taskcluster 4.0.1 {rate['taskcluster']:7.1f} calls/s ({cpu['taskcluster']:.2f} ms CPU/call)   "
              f"ratio {rate['tcpulse'] / rate['taskcluster']:5.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
