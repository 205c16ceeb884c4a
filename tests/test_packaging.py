"""The wheel a user installs (issue 12, item 22): typed (`py.typed`, so a user's mypy reads
tcpulse's hints), with its author, project URLs and licence file in the metadata."""
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_is_typed_and_names_its_author_project_urls_and_licence_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                           str(REPO), "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("tcpulse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
        licence = archive.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    assert "tcpulse/py.typed" in names
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    assert metadata["Author"] and metadata["License"] == "MPL-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert licence.startswith("Mozilla Public License Version 2.0")
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls and all(url.startswith("https://") for url in urls.values())
