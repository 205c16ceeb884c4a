"""Reference sets: today's references by default, `legacy-2018` by name, a folder by path;
selection through TCPULSE_REFERENCES or use_references; one service's file read per class.

Selection is process-wide and fixed at first use, so each selection case runs in a fresh
interpreter (from a temporary directory, so the installed package is what gets imported).
"""
import doctest
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tcpulse
from tcpulse import InvalidReference
from tcpulse.references import BUNDLED, LEGACY, open_set
from tcpulse.references.records import class_name

TODAY_CLASSES = {
    "Auth", "Github", "Hooks", "Index", "Notify", "Object", "PurgeCache", "Queue", "Secrets", "WebServer",
    "WorkerManager", "AuthEvents", "GithubEvents", "HooksEvents", "NotifyEvents", "QueueEvents", "WorkerManagerEvents"}
RETIRED = ["AwsProvisioner", "AwsProvisionerEvents", "EC2Manager", "Login", "PurgeCacheEvents", "TreeherderEvents"]


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TCPULSE_REFERENCES"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**environ, **env})


def test_the_default_set_has_todays_classes_with_the_official_clients_names():
    assert set(open_set(BUNDLED).names()) == TODAY_CLASSES
    assert set(open_set(BUNDLED).names("exchanges")) == {n for n in TODAY_CLASSES if n.endswith("Events")}
    assert tcpulse.Queue.reference is open_set(BUNDLED).get("Queue")


def test_the_legacy_set_keeps_the_2018_classes():
    assert set(open_set(LEGACY).names()) == {
        "Auth", "AwsProvisioner", "EC2Manager", "Github", "Hooks", "Index", "Login", "Notify", "PurgeCache",
        "Queue", "Secrets", "AuthEvents", "AwsProvisionerEvents", "GithubEvents", "PurgeCacheEvents",
        "QueueEvents", "TreeherderEvents"}


@pytest.mark.parametrize("service, kind, expected", [
    ("queue", "api", "Queue"), ("purge-cache", "api", "PurgeCache"), ("web-server", "api", "WebServer"),
    ("worker-manager", "exchanges", "WorkerManagerEvents"), ("auth", "exchanges", "AuthEvents"),
])
def test_a_class_is_named_from_the_service_name_as_the_official_client_names_it(service, kind, expected):
    assert class_name(service, kind) == expected


def operators(expression) -> set:
    """Every key of every object in a scope expression, at any depth."""
    if isinstance(expression, dict):
        return set(expression).union(*map(operators, expression.values()))
    if isinstance(expression, list):
        return set().union(*map(operators, expression))
    return set()


def test_every_scope_expression_of_todays_references_loads_as_data():
    entries = [e for ref in open_set(BUNDLED).references("api") for e in ref.entries]
    assert {"AllOf", "AnyOf", "if", "then", "for", "in", "each"} <= operators([e.scopes for e in entries])
    assert sum(1 for e in entries if e.scopes is not None) > 100


@pytest.mark.parametrize("name", RETIRED)
def test_a_retired_class_under_the_default_set_says_how_to_select_legacy_2018(name):
    with pytest.raises(AttributeError) as info:
        getattr(tcpulse, name)
    assert str(info.value) == (
        f"module 'tcpulse' has no attribute {name!r}: {name} is a retired 2018 Taskcluster service, not in "
        f"the bundled reference set; to use it, select the 2018 set with TCPULSE_REFERENCES=legacy-2018 or "
        f"tcpulse.use_references('legacy-2018') before the first use of any class")


def test_a_name_no_set_has_is_an_attribute_error_with_no_other_sets_hint():
    with pytest.raises(AttributeError, match=r"^module 'tcpulse' has no attribute 'Zyxwvut'$"):
        tcpulse.Zyxwvut


def test_looking_up_a_class_reads_the_manifest_and_that_services_file_only(tmp_path):
    code = """
import sys
import zipfile
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and str(args[0]).endswith(".json") else None)
import tcpulse
tcpulse.QueueEvents.taskCompleted(taskGroupId="g")
tcpulse.Object
print("\\n".join(opened))
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    opened = [line.split("bundled/")[-1] for line in done.stdout.split()]
    assert opened == ["references/manifest.json", "references/queue/v1/exchanges.json", "references/object/v1/api.json"]


@pytest.mark.parametrize("name", [n for n in RETIRED if not n.endswith("Events")])
def test_a_retired_async_class_under_the_default_set_says_how_to_select_legacy_2018(name):
    import tcpulse.aio

    with pytest.raises(AttributeError) as info:
        getattr(tcpulse.aio, name)
    assert str(info.value).startswith(
        f"module 'tcpulse.aio' has no attribute {name!r}: {name} is a retired 2018 Taskcluster service")
    assert "TCPULSE_REFERENCES=legacy-2018" in str(info.value)


def test_looking_up_an_async_class_reads_the_manifest_and_that_services_file_only(tmp_path):
    code = """
import sys
opened = []
sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" and str(args[0]).endswith(".json") else None)
import tcpulse.aio
assert not hasattr(tcpulse.aio, "__wrapped__")
print("\\n".join(opened), file=sys.stderr)
tcpulse.aio.Queue.task
print("\\n".join(opened))
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.split() == []
    opened = [line.split("bundled/")[-1] for line in done.stdout.split()]
    assert opened == ["references/manifest.json", "references/queue/v1/api.json"]


def test_the_environment_variable_selects_the_legacy_set(tmp_path):
    code = """
import tcpulse
print(tcpulse.TreeherderEvents.jobs().exchange, len(tcpulse.exchanges()))
try:
    tcpulse.Object
except AttributeError as exc:
    print(exc)
"""
    done = run_python(code, tmp_path, TCPULSE_REFERENCES="legacy-2018")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "exchange/taskcluster-treeherder/v1/jobs 22",
        "module 'tcpulse' has no attribute 'Object': Object is not in the legacy-2018 reference set; the "
        "bundled set has it (TCPULSE_REFERENCES=bundled or tcpulse.use_references('bundled') selects it)"]


def test_use_references_before_first_use_selects_a_set_and_afterwards_refuses_another(tmp_path):
    code = """
import tcpulse
tcpulse.use_references("legacy-2018")
print(tcpulse.PurgeCacheEvents.purgeCache.exchange)
tcpulse.use_references("legacy-2018")
try:
    tcpulse.use_references("bundled")
except tcpulse.ReferenceSetError as exc:
    print(exc)
"""
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "exchange/taskcluster-purge-cache/v1/purge-cache",
        "use_references('bundled') comes after classes were built from the legacy-2018 reference set; call it "
        "before the first use of any tcpulse class, or set TCPULSE_REFERENCES before Python starts"]


def test_an_unknown_set_is_refused_with_the_closest_name(tmp_path):
    with pytest.raises(tcpulse.ReferenceSetError) as info:
        open_set("legacy-2081")
    assert str(info.value) == (
        "reference set 'legacy-2081' is not a folder: give 'bundled', 'legacy-2018' or a folder written by "
        "'tcpulse references pull'. Did you mean 'legacy-2018'?")
    with pytest.raises(tcpulse.ReferenceSetError, match="has no references/manifest.json"):
        open_set(str(tmp_path))


def copy_of_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    shutil.copytree(open_set(BUNDLED).root / "references", folder / "references")
    return folder


def test_a_folder_in_the_deployment_layout_is_a_set(tmp_path):
    folder = copy_of_bundle(tmp_path)
    refset = open_set(str(folder))
    assert refset.names() == open_set(BUNDLED).names() and refset.label == str(folder.resolve())
    assert refset.get("Queue").entries == open_set(BUNDLED).get("Queue").entries


def test_a_reference_whose_service_name_does_not_match_its_manifest_path_is_refused(tmp_path):
    folder = copy_of_bundle(tmp_path)
    path = folder / "references/index/v1/api.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "serviceName": "indexer"}))
    with pytest.raises(InvalidReference) as info:
        open_set(str(folder)).get("Index")
    assert str(info.value) == (f"{path}: its serviceName 'indexer' makes class 'Indexer', but the manifest "
                               f"lists it as 'Index'")


def test_a_malformed_reference_lists_every_problem_at_once(tmp_path):
    folder = copy_of_bundle(tmp_path)
    path = folder / "references/secrets/v1/api.json"
    doc = json.loads(path.read_text())
    doc["entries"][0]["args"] = ["nope"]
    del doc["entries"][1]["route"]
    path.write_text(json.dumps(doc))
    with pytest.raises(InvalidReference) as info:
        open_set(str(folder)).get("Secrets")
    assert str(info.value) == (
        f"{path}: document.entries[0] (ping): args ['nope'] do not match route '/ping'; "
        f"document.entries[1] is missing 'route'")


def test_a_manifest_that_is_not_a_list_of_paths_is_refused(tmp_path):
    folder = copy_of_bundle(tmp_path)
    (folder / "references/manifest.json").write_text(json.dumps({"references": "all"}))
    with pytest.raises(InvalidReference, match=re.escape(
            "manifest.json: a manifest must be an object whose 'references' is a list of paths")):
        open_set(str(folder)).names()


@pytest.mark.parametrize("module", ["references", "references.records", "references.sets", "references.pull",
                                    "references.compare", "cli.references", "_api.services", "_api.binding"])
def test_every_public_example_in_the_module_runs(module):
    failures, tried = doctest.testmod(importlib.import_module(f"tcpulse.{module}"))
    assert tried >= 1 and failures == 0


def test_the_wheel_carries_both_shipped_sets_whole(built_wheel):
    repo = Path(__file__).resolve().parent.parent
    with zipfile.ZipFile(built_wheel) as archive:
        names = {name[len("tcpulse/apis/"):] for name in archive.namelist() if name.startswith("tcpulse/apis/")}
    shipped = {str(p.relative_to(repo / "references")) for p in (repo / "references").rglob("*") if p.is_file()}
    assert names == shipped
    assert {"README.md", "bundled/references/manifest.json", "legacy-2018/queue-events.json",
            "bundled/schemas/queue/v1/task-completed-message.json"} <= names
