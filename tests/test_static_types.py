"""The static view: mypy and pyright see the bundled set's classes, methods, exchanges and fields.

Two files of user code are checked as a user's project would be (tcpulse on the path as an
installed package, its own sources not checked): tests/typecheck/user_code.py must have no
error, and each of the ten lines marked `# mistake` in tests/typecheck/ten_mistakes.py must have
one (and no other line). The generated files must match what scripts/generate_types.py writes
now, and the stubs must name exactly what the package exports.
"""
import ast
import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

import tcpulse
import tcpulse.aio

ROOT = Path(__file__).resolve().parents[1]
CHECKED = ROOT / "tests" / "typecheck"
sys.path.insert(0, str(ROOT / "scripts"))
import generate_types  # noqa: E402

MYPY_INI = """[mypy]
strict = True
warn_unused_ignores = False
cache_dir = {cache}
[mypy-tcpulse.*]
ignore_errors = True
[mypy-slugid.*,mohawk.*,amqp.*,kombu.*,aiohttp.*,requests.*]
ignore_missing_imports = True
"""


def mistake_lines() -> Set[int]:
    lines = (CHECKED / "ten_mistakes.py").read_text().splitlines()
    return {n for n, line in enumerate(lines, 1) if re.search(r"\S  # mistake: ", line)}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project folder holding the two files, with configs that find tcpulse's sources."""
    where = tmp_path_factory.mktemp("typed-project")
    for name in ("user_code.py", "ten_mistakes.py"):
        shutil.copy(CHECKED / name, where / name)
    (where / "mypy.ini").write_text(MYPY_INI.format(cache=where / ".mypy_cache"))
    (where / "pyrightconfig.json").write_text(json.dumps(
        {"extraPaths": [str(ROOT)], "pythonVersion": "3.9", "typeCheckingMode": "standard"}))
    return where


FILES = ("user_code.py", "ten_mistakes.py")


def errors_by_line(output: str, filename: str, pattern: str) -> Dict[int, str]:
    found: Dict[int, str] = {}
    for match in re.finditer(pattern.format(file=re.escape(filename)), output):
        found.setdefault(int(match.group(1)), match.group(2))
    return found


def run_mypy(project: Path) -> Dict[str, Dict[int, str]]:
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", *FILES], cwd=project,
                          capture_output=True, text=True, timeout=300, env={"MYPYPATH": str(ROOT), "PATH": ""})
    assert "Traceback" not in done.stderr, done.stderr
    return {name: errors_by_line(done.stdout, name, r"(?m)^{file}:(\d+): error: (.*)$") for name in FILES}


def pyright_command() -> list:
    command = [str(Path(sys.executable).parent / "pyright")]
    try:
        started = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        pytest.skip("pyright is not installed (it comes with the test extra)")
    if started.returncode != 0:
        pytest.skip(f"pyright does not start here (it needs node): {started.stderr.strip()[:200]}")
    return command


def run_pyright(project: Path) -> Dict[str, Dict[int, str]]:
    """Errors by file and line; for user_code.py warnings too (an import of a module pyright
    finds only a stub of is one)."""
    done = subprocess.run([*pyright_command(), *FILES], cwd=project, capture_output=True, text=True, timeout=300)
    kinds = {"user_code.py": "error|warning", "ten_mistakes.py": "error"}
    return {name: errors_by_line(done.stdout, name, rf"(?m)^\s+\S*/{{file}}:(\d+):\d+ - (?:{kinds[name]}): (.*)$")
            for name in FILES}


@pytest.fixture(scope="module", params=[run_mypy, run_pyright], ids=["mypy", "pyright"])
def reported(request, project) -> Dict[str, Dict[int, str]]:
    """The errors one checker reports, by file and line (both files checked in one run)."""
    return request.param(project)


def test_ordinary_user_code_type_checks_without_errors(reported):
    assert reported["user_code.py"] == {}


def test_each_of_ten_typical_mistakes_is_reported(reported):
    assert len(mistake_lines()) == 10
    assert set(reported["ten_mistakes.py"]) == mistake_lines(), reported["ten_mistakes.py"]


def test_the_generated_files_are_up_to_date():
    stale = [str(p.relative_to(ROOT)) for p in generate_types.stale()]
    assert stale == [], f"stale generated files {stale}: run `{generate_types.COMMAND}`"


def stub_names(path: Path) -> Set[str]:
    names: Set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname for alias in node.names if alias.asname == alias.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_") or name == "__version__"}


@pytest.mark.parametrize("package, api_only", [(tcpulse, False), (tcpulse.aio, True)], ids=["tcpulse", "tcpulse.aio"])
def test_the_stub_names_exactly_what_the_package_exports(package, api_only):
    from tcpulse._api.services import generated_names

    exported = set(package.__all__) | set(generated_names(api_only)) | ({"__version__"} if package is tcpulse else set())
    stub = Path(package.__file__).with_suffix(".pyi")
    missing, extra = exported - stub_names(stub), stub_names(stub) - exported
    assert (missing, extra) == (set(), set()), f"{stub.name} is stale: run `{generate_types.COMMAND}`"


def test_dir_shows_only_tcpulse_names():
    names = dir(tcpulse)
    assert not {"Any", "List", "importlib", "TYPE_CHECKING"} & set(names)
    assert {"Queue", "QueueEvents", "Listener", "Event", "Exchange", "fromNow"} <= set(names)
    assert all(getattr(tcpulse, name) is not None for name in names if not name.startswith("_"))


def test_every_schema_file_has_its_typed_dict_named_from_the_file():
    from tcpulse.references import open_set

    bundled = open_set("bundled")
    for path in sorted((bundled.root / "schemas").rglob("*.json")):
        service = path.relative_to(bundled.root / "schemas").parts[0].replace("-", "")
        module = importlib.import_module(f"tcpulse.types.{service}")
        name = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", path.stem) if w)
        assert name in module.__all__ and hasattr(module, name), (path, name)
    from tcpulse.types.queue import Task, TaskCompletedMessage

    assert {"status", "runId", "workerGroup", "workerId", "version"} <= set(TaskCompletedMessage.__annotations__)
    assert "metadata" in Task.__annotations__


def test_help_of_an_exchange_and_a_method_shows_title_fields_scopes_and_schemas():
    import pydoc

    text = pydoc.render_doc(tcpulse.QueueEvents.taskCompleted, renderer=pydoc.plaintext)
    assert "QueueEvents.taskCompleted: Task Completed Messages" in text
    assert "taskGroupId (required): `taskGroupId` this task was created in." in text
    assert "Message schema: /schemas/queue/v1/task-completed-message.json (type tcpulse.types.queue.TaskCompletedMessage)" in text
    doc = tcpulse.Queue.claimWork.__doc__ or ""
    for line in ("POST /claim-work/<taskQueueId>", "Route arguments: taskQueueId",
                 "Scopes: all of: queue:claim-work:<taskQueueId>, queue:worker-id:<workerGroup>/<workerId>",
                 "Input schema: v1/claim-work-request.json# (type tcpulse.types.queue.ClaimWorkRequest)",
                 "Output schema: v1/claim-work-response.json# (type tcpulse.types.queue.ClaimWorkResponse)"):
        assert line in doc
    assert tcpulse.QueueEvents.taskCompleted.__doc__ == tcpulse.QueueEvents.taskCompleted.describe()
    assert tcpulse.Exchange.__doc__.startswith("One topic exchange of a service")
