"""The package reads like a map (issue 22, item 7): the top level of `tcpulse/` holds what users
import and nothing else, the internals sit in subpackages named for their layer, and no two
modules import each other in a circle."""
import ast
from pathlib import Path

import tcpulse
from tcpulse.references import active_set

PACKAGE = Path(tcpulse.__file__).parent
PUBLIC_MODULES = {"__init__", "__main__", "client", "utils", "download", "upload", "helper", "testing",
                  "errors", "auth"}
PUBLIC_PACKAGES = {"aio", "cli", "types", "references"}
INTERNAL_PACKAGES = {"_api", "_rest", "_listen", "_ops", "_broker"}


def service_module_names() -> set:
    """`queue`, `queueevents`, ...: the official client's module per service of the bundled set."""
    return {name.lower() for name in active_set().names()}


def test_the_top_level_holds_only_public_modules_and_layer_subpackages():
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert modules - PUBLIC_MODULES - service_module_names() == set()
    assert packages - PUBLIC_PACKAGES - INTERNAL_PACKAGES == set()
    assert INTERNAL_PACKAGES <= packages


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path, known: set) -> set:
    """The tcpulse modules a file imports at run time, at any depth (imports inside functions
    count too; those under `if TYPE_CHECKING:` do not)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING" for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("tcpulse"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
    return found & known


def test_no_two_modules_import_each_other_in_a_circle():
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: runtime_imports(path, set(paths)) - {name} for name, path in paths.items()}

    def circle_from(start: str) -> list:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return []

    circles = [" -> ".join(circle) for circle in map(circle_from, sorted(graph)) if circle]
    assert circles == []


def test_inside_the_package_every_import_of_tcpulse_is_absolute():
    relative = [f"{path.relative_to(PACKAGE)}:{node.lineno}" for path in PACKAGE.rglob("*.py")
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []
