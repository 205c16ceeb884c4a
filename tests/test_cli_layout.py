"""The command line is one subpackage, `tcpulse/cli/`: a module per group of commands, no import
circle between them, and nothing in the library importing it (issue 12, item 23)."""
import ast
import subprocess
import sys
from pathlib import Path

import tcpulse

PACKAGE = Path(tcpulse.__file__).parent
CLI = PACKAGE / "cli"


def imported_modules(path: Path, package: str) -> set:
    """The tcpulse modules a file imports (absolute names), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
            elif node.module and node.module.startswith("tcpulse"):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("tcpulse"))
    return names


def cli_graph() -> dict:
    graph = {}
    for path in CLI.glob("*.py"):
        name = "tcpulse.cli" if path.stem == "__init__" else f"tcpulse.cli.{path.stem}"
        graph[name] = {m for m in imported_modules(path, "tcpulse.cli") if m in
                       {f"tcpulse.cli.{p.stem}" for p in CLI.glob("*.py")} | {"tcpulse.cli"}} - {name}
    return graph


def test_the_command_line_is_one_subpackage_with_the_old_flat_modules_gone():
    assert (CLI / "__init__.py").is_file()
    assert {p.stem for p in CLI.glob("*.py")} >= {"__init__", "base", "listen", "routing", "brokers"}
    assert not any((PACKAGE / f"{old}.py").exists() for old in ("cli", "commands", "brokercli", "runner"))


def test_no_two_command_modules_import_each_other_in_a_circle():
    graph = cli_graph()

    def reaches(start: str, target: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    circles = sorted(name for name in graph if reaches(name, name, {name}))
    assert circles == [], f"modules on an import circle: {circles}"


def test_no_library_module_imports_the_command_line():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if CLI in path.parents or path == PACKAGE / "__main__.py":  # `python -m tcpulse` is the CLI's door
            continue
        package = "tcpulse" if path.parent == PACKAGE else "tcpulse." + path.parent.name
        if any(m == "tcpulse.cli" or m.startswith("tcpulse.cli.") for m in imported_modules(path, package)):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_the_console_script_and_python_dash_m_both_run_the_command_line(tmp_path):
    script = Path(sys.executable).parent / "tcpulse"
    for command in ([str(script)], [sys.executable, "-m", "tcpulse"]):
        done = subprocess.run([*command, "routing-key", "QueueEvents.taskCompleted", "taskGroupId=g"],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert (done.returncode, done.stdout, done.stderr) == (0, "primary.*.*.*.*.*.*.*.g.#\n", "")
