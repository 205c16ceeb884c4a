"""The official client's module layout on tcpulse: `tcpulse.queue`, `tcpulse.aio.queue`, ...,
`tcpulse.client.createSession`, `tcpulse.exceptions`, and `tcpulse.auth` holding both the public
credential helpers and the Auth service.

The official client's own import tests (test/test_imports.py of its source distribution, fetched
once with pip into ~/.cache/tcpulse-tests) run unchanged but for the package name, on tcpulse
and, as the control, on the official client itself."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import tcpulse
import tcpulse.aio
from conftest import CURRENT_OFFICIAL_CLIENT, _skip_or_fail
from tcpulse.references import BUNDLED, open_set


@pytest.fixture(scope="session")
def official_import_tests() -> str:
    """The text of the official client's test/test_imports.py, from its sdist on the package index."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tcpulse-tests" / "sdist"
    found = sorted(cache.glob(CURRENT_OFFICIAL_CLIENT.replace("==", "-") + ".tar.gz"))
    if not found:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                               "--disable-pip-version-check", CURRENT_OFFICIAL_CLIENT, "-d", str(cache)],
                              capture_output=True, text=True, timeout=300)
        found = sorted(cache.glob(CURRENT_OFFICIAL_CLIENT.replace("==", "-") + ".tar.gz"))
        if done.returncode != 0 or not found:
            _skip_or_fail(f"cannot download the {CURRENT_OFFICIAL_CLIENT} source distribution: "
                          f"{done.stderr.strip().splitlines()[-1:]}")
    with tarfile.open(found[0]) as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/test/test_imports.py"))
        return archive.extractfile(member).read().decode()  # type: ignore[union-attr]


def run_unittest(python: str, source: str, folder: Path) -> subprocess.CompletedProcess:
    (folder / "test_imports.py").write_text(source)
    return subprocess.run([python, "-m", "unittest", "-v", "test_imports"], capture_output=True, text=True,
                          timeout=120, cwd=folder)


def test_the_official_import_tests_pass_on_tcpulse(official_import_tests, tmp_path):
    source = official_import_tests.replace("taskcluster", "tcpulse")
    done = run_unittest(sys.executable, source, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Ran 5 tests" in done.stderr and "OK" in done.stderr


def test_the_official_import_tests_pass_on_the_official_client(official_import_tests, current_official_python,
                                                                tmp_path):
    done = run_unittest(current_official_python, official_import_tests, tmp_path)
    assert done.returncode == 0 and "Ran 5 tests" in done.stderr, done.stderr


@pytest.mark.parametrize("name", open_set(BUNDLED).names())
def test_every_class_of_the_bundled_set_has_its_module_in_both_packages(name):
    import importlib

    module = importlib.import_module(f"tcpulse.{name.lower()}")
    aio_module = importlib.import_module(f"tcpulse.aio.{name.lower()}")
    assert getattr(module, name) is getattr(tcpulse, name) and name in module.__all__  # tcpulse.auth: more
    expected = getattr(tcpulse.aio, name) if not name.endswith("Events") else getattr(tcpulse, name)
    assert getattr(aio_module, name) is expected


def test_tcpulse_auth_holds_the_auth_service_beside_the_public_credential_helpers():
    import tcpulse.auth
    from tcpulse._rest import hawk

    assert tcpulse.auth.Auth is tcpulse.Auth
    assert tcpulse.auth.createTemporaryCredentials is tcpulse.createTemporaryCredentials is hawk.createTemporaryCredentials
    assert tcpulse.auth.Credentials is hawk.Credentials
    with pytest.raises(AttributeError, match=r"^module 'tcpulse.auth' has no attribute 'Queue'$"):
        tcpulse.auth.Queue


def test_the_exceptions_module_is_the_errors_module_under_its_official_name():
    import tcpulse.errors
    import tcpulse.exceptions

    assert tcpulse.exceptions is tcpulse.errors
    from tcpulse.exceptions import TaskclusterRestFailure
    assert TaskclusterRestFailure is tcpulse.TaskclusterRestFailure


def test_a_service_module_names_what_it_holds_and_unknown_modules_stay_unknown():
    import tcpulse.queue

    with pytest.raises(AttributeError, match=r"^module 'tcpulse.queue' has no attribute 'Index' \(it holds Queue\)$"):
        tcpulse.queue.Index
    with pytest.raises(ModuleNotFoundError):
        import tcpulse.queues  # noqa: F401


def test_modules_follow_the_active_set_and_importing_one_does_not_fix_it():
    script = ("import tcpulse.queue, tcpulse\n"
              "tcpulse.use_references('legacy-2018')\n"
              "from tcpulse.awsprovisioner import AwsProvisioner\n"
              "from tcpulse.aio.awsprovisioner import AwsProvisioner as Async\n"
              "import tcpulse.treeherderevents\n"
              "print(AwsProvisioner.__name__, Async.__module__, tcpulse.queue.Queue.__name__)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "TCPULSE_REFERENCES"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["AwsProvisioner", "tcpulse.aio", "Queue"]


def test_create_session_is_in_the_client_module_as_in_the_official_client():
    import requests

    import tcpulse.client

    session = tcpulse.client.createSession()
    assert isinstance(session, requests.Session) and tcpulse.client.createTemporaryCredentials is tcpulse.createTemporaryCredentials
    session.close()
