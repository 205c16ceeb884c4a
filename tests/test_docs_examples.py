"""Every Python example of the documentation runs (README.md and docs/*.md).

The ```python blocks of a page run in order, in one namespace (as a reader would paste them
into one session), in a subprocess of their own whose working directory is a scratch folder
holding a copy of `examples/`. `https://tc.example.com` is replaced by a fake deployment on
127.0.0.1 (Queue, Object, storage and Secrets, tests/artifactserver.py and
tests/objectserver.py; it takes any credentials, as examples show placeholders) and `amqp://...`
by the test broker. `if __name__ == "__main__":` blocks do not run (the name is `docs_example`),
so a listener example builds its listener and registers its handlers without blocking.

A block whose first line is `# not run: <why>` is left out, and listed with its reason.
"""
import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from artifactserver import ArtifactServer, Blob
from conftest import GUEST_URL
from hawkserver import Seen, running
from objectserver import ObjectService, StorageServer

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLE_URL = "https://tc.example.com"
TASK = "fQ3sX0JwTHKzSbbr7SYHQA"
NOT_RUN = re.compile(r"# not run: \S")

RUNNER = r"""
import json, sys
namespace = {"__name__": "docs_example"}
for number, code in enumerate(json.load(sys.stdin), 1):
    try:
        exec(compile(code, f"block {number}", "exec"), namespace)
    except BaseException as exc:
        print(f"block {number} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise
"""


def python_blocks(page: Path) -> List[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


class Deployment(ArtifactServer):
    """The artifacts, objects, tasks and secrets the examples ask for."""

    def __init__(self, storage: StorageServer) -> None:
        super().__init__()
        self.objects_service = ObjectService(storage)
        self.objects_service.offer_inline = False  # so that examples go through storage too
        for name, storage_type in (("public/build/target.json", "s3"), ("public/build/target.tar.bz2", "object"),
                                   ("public/build.log", "s3")):
            self.store(TASK, 0, name, storage_type, Blob(b'{"built": true}\n' * 100, "application/json"))
        self.responder = self.answer_example

    def answer(self, seen: Seen) -> Tuple[Any, ...]:
        seen.auth_error = None  # examples show placeholder credentials
        return super().answer(seen)

    def answer_example(self, seen: Seen) -> Tuple[Any, ...]:
        seen.client_id = seen.client_id or "example"
        if seen.path.startswith(("/api/object/v1/upload/", "/api/object/v1/finish-upload/")):
            return self.objects_service.route(seen)
        if seen.path.startswith("/api/queue/v1/task-group/"):
            return 200, {"taskGroupId": TASK, "tasks": [{"status": {"taskId": TASK}}]}
        if seen.path.startswith("/api/secrets/v1/secret/"):
            return 200, {"secret": {"common": {"API_TOKEN": "t"}}, "expires": "2030-01-01T00:00:00.000Z"}
        if re.fullmatch(r"/api/queue/v1/task/[^/]+", seen.path):
            return 200, {"taskGroupId": TASK, "payload": {}, "metadata": {"name": "example"}}
        return self.route(seen)


@contextlib.contextmanager
def own_exchanges(existing: List[str], named: List[str]) -> Iterator[None]:
    """The exchanges an example publishes to that are not Taskcluster's (a Pulse user's own),
    declared for the block and deleted after it."""
    import kombu

    exchanges = [kombu.Exchange(name, type="topic", durable=False) for name in sorted(set(named) - set(existing))]
    with kombu.Connection(GUEST_URL) as conn:
        for exchange in exchanges:
            exchange(conn.channel()).declare()
        try:
            yield
        finally:
            for exchange in exchanges:
                exchange(conn.channel()).delete()


@pytest.fixture(scope="module")
def deployment():
    with running(StorageServer()) as storage, running(Deployment(storage)) as srv:
        yield srv


def run_page(page: Path, deployment: Deployment, folder: Path) -> subprocess.CompletedProcess:
    blocks = [block.replace(EXAMPLE_URL, deployment.url).replace("amqp://...", GUEST_URL)
              for block in python_blocks(page) if not NOT_RUN.match(block)]
    shutil.copytree(REPO / "examples", folder / "examples")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "TASKCLUSTER_ROOT_URL": deployment.url,
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(blocks), capture_output=True, text=True,
                          timeout=120, cwd=folder, env=env)


@pytest.mark.parametrize("page", [page for page in PAGES if python_blocks(page)], ids=lambda page: page.name)
def test_the_python_examples_of_the_page_run(page, deployment, tmp_path, request):
    text = page.read_text(encoding="utf-8")
    with contextlib.ExitStack() as stack:
        if "amqp://..." in text:  # the page publishes: the exchanges must exist, as on Pulse
            stack.enter_context(own_exchanges(request.getfixturevalue("taskcluster_exchanges"),
                                              re.findall(r'"(exchange/[^"]+)"', text)))
        done = run_page(page, deployment, tmp_path)
    assert done.returncode == 0, done.stderr


def test_examples_left_out_say_why_and_are_few():
    left_out = {page.name: [block.splitlines()[0] for block in python_blocks(page) if NOT_RUN.match(block)]
                for page in PAGES}
    total = sum(len(python_blocks(page)) for page in PAGES)
    assert sum(map(len, left_out.values())) <= total // 5, left_out


def test_the_upload_example_reached_the_object_service_and_storage(deployment, tmp_path):
    done = run_page(REPO / "docs" / "downloads-uploads.md", deployment, tmp_path)
    assert done.returncode == 0, done.stderr
    names = [created["name"] for created in deployment.objects_service.created]
    assert "my-project/report.json" in names and "my-project/target.tar.bz2" in names
    stored: Dict[str, Any] = deployment.objects_service.storage.stored
    assert stored["my-project/target.tar.bz2"].length == len(b'{"built": true}\n' * 100)
