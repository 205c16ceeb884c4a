"""The documentation site builds with `mkdocs build --strict` (a broken link, anchor or page left
out of the navigation fails it), and its reference mentions every method and exchange of the
bundled set, read back from the built HTML.

Needs the `docs` extra (mkdocs-material): without it the tests skip, except under CI=true,
where they fail, as the README's test command installs it."""
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tcpulse.references import BUNDLED, open_set

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        reason = "mkdocs-material is not installed (pip install '.[docs]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must build the site")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def anchors(page: Path, kind: str) -> set:
    return set(re.findall(rf'id="{kind}-([A-Za-z0-9_]+)"', page.read_text(encoding="utf-8")))


def test_the_site_builds_strictly_with_every_guide(site: Path) -> None:
    for guide in ("handlers", "delivery", "brokers", "testing", "rest", "downloads-uploads", "async",
                  "operating", "migrating"):
        assert (site / guide / "index.html").is_file(), guide


def test_the_reference_has_a_page_per_class_with_every_method_and_exchange_of_the_bundled_set(site: Path) -> None:
    reference_set = open_set(BUNDLED)
    missing, extra = [], []
    for name in reference_set.names():
        reference = reference_set.get(name)
        kind = "exchange" if reference.kind == "exchanges" else "method"
        page = site / "reference" / name / "index.html"
        assert page.is_file(), f"no reference page for {name}"
        expected = {entry.name for entry in reference.entries}
        found = anchors(page, kind)
        missing += [f"{name}.{entry}" for entry in sorted(expected - found)]
        extra += [f"{name}.{entry}" for entry in sorted(found - expected)]
    assert (missing, extra) == ([], [])


def entry_text(site: Path, name: str, anchor: str) -> str:
    """The text of one entry of a reference page, from its heading to the next one."""
    page = (site / "reference" / name / "index.html").read_text(encoding="utf-8")
    section = page.split(f'id="{anchor}"', 1)[1].split("<h3", 1)[0]
    return html.unescape(re.sub(r"<[^>]+>", "", section))


def test_a_method_entry_shows_its_args_route_query_scopes_and_schemas(site: Path) -> None:
    section = entry_text(site, "Queue", "method-listTaskGroup")
    assert "listTaskGroup(taskGroupId)" in section
    assert "GET /task-group/<taskGroupId>/list" in section
    assert "query: continuationToken, limit" in section
    assert "scopes: queue:list-task-group:<taskGroupId>" in section
    assert "output schema: v1/list-task-group-response.json#" in section


def test_an_exchange_entry_shows_its_exchange_routing_key_fields_and_message_schema(site: Path) -> None:
    section = entry_text(site, "QueueEvents", "exchange-taskCompleted")
    assert "exchange: exchange/taskcluster-queue/v1/task-completed" in section
    assert "message schema: v1/task-completed-message.json#" in section
    assert section.index("taskGroupId") < section.index("reserved")


def test_the_readme_links_only_to_pages_and_anchors_that_exist(site: Path) -> None:
    links = re.findall(r"\]\(([^)#]+\.md)(#[^)]*)?\)", (REPO / "README.md").read_text(encoding="utf-8"))
    assert len(links) >= 10
    for target, anchor in links:
        assert (REPO / target).is_file(), target
        page = site / Path(target).relative_to("docs").with_suffix("") / "index.html"
        if Path(target).stem == "index":
            page = site / "index.html"
        if anchor:
            assert f'id="{anchor[1:]}"' in page.read_text(encoding="utf-8"), f"{target}{anchor}"
