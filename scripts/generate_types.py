"""Write tcpulse's static view from the bundled references: `tcpulse/types/<service>.py` (one
TypedDict per schema) and the stubs `tcpulse/__init__.pyi` and `tcpulse/aio/__init__.pyi`.

    python scripts/generate_types.py           # write the files
    python scripts/generate_types.py --check   # exit 1, naming the stale files, if any differs

Run it after changing the bundled references or the public names of `tcpulse` or `tcpulse.aio`
(tests/test_static_types.py fails until you do).
"""
import argparse
import sys
from pathlib import Path
from typing import Dict

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from typegen.schematypes import ServiceTypes  # noqa: E402
from typegen.stubs import StubWriter  # noqa: E402

COMMAND = "python scripts/generate_types.py"


def generated() -> Dict[Path, str]:
    """Every generated file by path, with the text it should have."""
    import tcpulse
    import tcpulse.aio
    from tcpulse.references import open_set
    from tcpulse._api.typenames import type_module

    bundled = open_set("bundled")
    files: Dict[Path, str] = {}
    titles = {ref.service_name: ref.title for ref in bundled.references("api")}
    for folder in sorted(p for p in (bundled.root / "schemas").iterdir() if p.is_dir()):
        title = titles.get(folder.name, folder.name)
        files[ROOT / "tcpulse" / "types" / f"{type_module(folder.name)}.py"] = ServiceTypes(bundled.root, folder.name).source(title)
    files[ROOT / "tcpulse" / "__init__.pyi"] = StubWriter(bundled).write(
        tcpulse, tcpulse.__doc__ or "", "from tcpulse.client import BaseClient as _Client\n")
    files[ROOT / "tcpulse" / "aio" / "__init__.pyi"] = StubWriter(bundled, asynchronous=True).write(
        tcpulse.aio, tcpulse.aio.__doc__ or "", "from tcpulse.aio.client import AsyncClient as _Client\n")
    return files


def stale() -> list:
    """The generated files whose text on disk differs from what the generator writes now."""
    return [path for path, text in generated().items()
            if not path.is_file() or path.read_text(encoding="utf-8") != text]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1 if any)")
    check = parser.parse_args().check
    if check:
        paths = stale()
        for path in paths:
            print(f"stale: {path.relative_to(ROOT)}")
        if paths:
            print(f"run: {COMMAND}")
        return 1 if paths else 0
    for path, text in generated().items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
