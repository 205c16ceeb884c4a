"""`references pull` against deployments that misbehave (issue 18, item 7): entry names that
would become dunder methods of a generated class, a `$ref` chain without end, a server that
drips a byte at a time, a huge document; and the swap of the set folder, which readers and
concurrent pulls must never see half done."""
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import pytest

from tcpulse.errors import InvalidReference
from tcpulse.references import open_set, parse_document
from tcpulse.references import pull as pulling
from tcpulse.references.sets import MANIFEST

TCPULSE = Path(sys.executable).parent / "tcpulse"
API = {"$schema": "/schemas/common/api-reference-v0.json#", "apiVersion": "v1", "serviceName": "demo",
       "title": "Demo", "description": "", "entries": [
           {"type": "function", "name": "ping", "title": "Ping", "description": "", "stability": "stable",
            "method": "get", "route": "/ping", "args": [], "query": [], "output": "v1/s0.json#"}]}
Responder = Callable[[str], Tuple[int, bytes, float]]  # path -> status, body, seconds between bytes


class Deployment(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, respond: Responder):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.respond = respond
        self.root_url = f"http://127.0.0.1:{self.server_address[1]}"
        self.requests = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests += 1
        status, body, drip = self.server.respond(self.path)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if not drip:
                self.wfile.write(body)
            for index in range(len(body) if drip else 0):
                self.wfile.write(body[index:index + 1])
                self.wfile.flush()
                time.sleep(drip)
        except OSError:  # the client gave up
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def deployment() -> Iterator[Callable[[Responder], Deployment]]:
    servers = []

    def start(respond: Responder) -> Deployment:
        server = Deployment(respond)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def one_service(api: Dict, schema: Callable[[int], Dict]) -> Responder:
    def respond(path: str) -> Tuple[int, bytes, float]:
        if path == "/references/manifest.json":
            return 200, json.dumps({"references": ["/references/demo/v1/api.json"]}).encode(), 0
        if path == "/references/demo/v1/api.json":
            return 200, json.dumps(api).encode(), 0
        if path.startswith("/schemas/demo/v1/s"):
            return 200, json.dumps(schema(int(path[len("/schemas/demo/v1/s"):-len(".json")]))).encode(), 0
        return 404, b"{}", 0
    return respond


@pytest.mark.parametrize("name", ["__getattr__", "__copy__", "__del__", "_private", "not-an-identifier"])
def test_an_api_entry_name_that_is_not_a_plain_identifier_is_refused(deployment, tmp_path, name):
    api = json.loads(json.dumps(API))
    api["entries"][0]["name"] = name
    server = deployment(one_service(api, lambda n: {"type": "object"}))
    with pytest.raises(pulling.PullError, match=r"entries\[0\]\.name must be an identifier that does not start "
                                               rf"with '_' \(got {name!r}\)"):
        pulling.pull(server.root_url, tmp_path / "set")
    assert not (tmp_path / "set").exists()


def test_an_exchange_entry_named_like_a_dunder_method_is_refused_when_a_set_is_read():
    document = {"$schema": "/schemas/common/exchanges-reference-v0.json#", "serviceName": "demo", "title": "Demo",
                "description": "", "exchangePrefix": "exchange/demo/v1/",
                "entries": [{"type": "topic-exchange", "name": "__del__", "exchange": "x", "title": "X",
                             "description": "", "routingKey": [], "schema": "v1/x.json#"}]}
    with pytest.raises(InvalidReference, match=r"name must be an identifier that does not start with '_' "
                                               r"\(got '__del__'\)"):
        parse_document(document, "demo/v1/exchanges.json")


def test_a_schema_chain_without_end_stops_at_the_schema_cap(deployment, tmp_path):
    """A 20,000-schema `$ref` chain was fetched in full."""
    server = deployment(one_service(API, lambda n: {"$ref": f"s{n + 1}.json"}))
    with pytest.raises(pulling.PullError, match=rf"more than {pulling.MAX_SCHEMAS} schemas"):
        pulling.pull(server.root_url, tmp_path / "set")
    assert server.requests <= pulling.MAX_SCHEMAS + 10 and not (tmp_path / "set").exists()


def test_a_server_that_drips_a_byte_at_a_time_is_given_up_at_the_deadline(deployment, tmp_path):
    """One byte every 0.2 s never trips a per-read timeout; the whole pull has a deadline."""
    server = deployment(lambda path: (200, json.dumps({"references": []}).encode() * 50, 0.2))
    started = time.monotonic()
    with pytest.raises(pulling.PullError, match=r"manifest\.json: the pull took longer than 1 s; gave up"):
        pulling.pull(server.root_url, tmp_path / "set", timeout=5, deadline=1)
    assert time.monotonic() - started < 5


def test_a_document_over_the_size_cap_is_refused(deployment, tmp_path, monkeypatch):
    monkeypatch.setattr(pulling, "MAX_DOCUMENT_BYTES", 1024 * 1024)
    server = deployment(lambda path: (200, b" " * (2 * 1024 * 1024), 0))
    with pytest.raises(pulling.PullError, match=r"manifest\.json: larger than 1 MiB"):
        pulling.pull(server.root_url, tmp_path / "set")


def small_set(marker: str) -> Dict[str, object]:
    return {"/" + MANIFEST.as_posix(): {"references": ["/references/demo/v1/api.json"]},
            "/references/demo/v1/api.json": {**API, "title": marker}}


def test_a_reader_never_finds_the_folder_without_a_manifest_while_sets_are_swapped(tmp_path):
    """Before: 65 of 800 reads during swaps found no manifest."""
    target = tmp_path / "set"
    pulling._write(target, small_set("first"), "http://tc.example")
    misses, reads, done = [], [0], threading.Event()

    def read() -> None:
        while not done.is_set():
            reads[0] += 1
            if not (target / MANIFEST).is_file():
                misses.append(reads[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for swap in range(300):
            pulling._write(target, small_set(f"swap {swap}"), "http://tc.example")
    finally:
        done.set()
        reader.join()
    assert misses == [] and reads[0] > 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert json.loads((target / "references/demo/v1/api.json").read_text())["title"] == "swap 299"


def test_concurrent_pulls_into_one_folder_all_succeed_and_leave_one_whole_set(deployment, tmp_path):
    """Before: concurrent pulls failed with ENOTEMPTY and left .set.previous-PID folders."""
    server = deployment(one_service(API, lambda n: {"type": "object"}))
    target = tmp_path / "set"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKCLUSTER_", "TCPULSE_"))}
    pulls = [subprocess.Popen([str(TCPULSE), "references", "pull", "--root-url", server.root_url, "--dir",
                               str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(6)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in pulls]
    assert results == [(0, "")] * 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert open_set(str(target)).get("Demo").entries[0].name == "ping"


def test_where_the_kernel_cannot_swap_a_failed_second_rename_puts_the_old_set_back(tmp_path, monkeypatch):
    target = tmp_path / "set"
    pulling._write(target, small_set("old"), "http://tc.example")
    monkeypatch.setattr(pulling, "_exchange", lambda first, second: False)
    real_rename = Path.rename

    def rename(self: Path, destination: Path) -> Path:
        if Path(destination) == target and not self.name.endswith(".previous"):  # the new set going in
            raise OSError(28, "No space left on device")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(pulling.PullError, match=r"cannot write the reference set \(\[Errno 28\] No space left"):
        pulling._write(target, small_set("new"), "http://tc.example")
    assert json.loads((target / "references/demo/v1/api.json").read_text())["title"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_many_writers_swapping_one_folder_at_once_all_succeed(tmp_path):
    target = tmp_path / "set"
    pulling._write(target, small_set("first"), "http://tc.example")
    failures = []

    def write(writer: int) -> None:
        for round_ in range(40):
            try:
                pulling._write(target, small_set(f"{writer}.{round_}"), "http://tc.example")
            except pulling.PullError as exc:
                failures.append(str(exc))

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    assert failures == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert open_set(str(target)).get("Demo").title.endswith(".39")
