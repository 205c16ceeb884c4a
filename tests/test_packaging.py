"""The wheel a user installs (issue 12, item 22): typed (`py.typed`, so a user's mypy reads
tcpulse's hints), with its author, project URLs and licence file in the metadata."""
import zipfile
from email.parser import Parser


def test_the_wheel_is_typed_and_names_its_author_project_urls_and_licence_file(built_wheel):
    with zipfile.ZipFile(built_wheel) as archive:
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
