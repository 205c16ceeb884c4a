"""Owns: the reference pages of the documentation site, generated from the bundled references.

An mkdocs hook (`hooks:` in mkdocs.yml): when the site is built, it adds one page per class of
the bundled set under `reference/` (`reference/queue.md`, `reference/queueevents.md`, ...) and
an index, and puts them in the navigation. Nothing is written into `docs/`: the pages exist only
in the build, so they can never drift from the references the package ships.

A method reads as its call (`task(taskId)`), then its HTTP route, query keys, scopes and the
input and output schema names; an exchange as its exchange name, its routing-key fields in
order and its message schema. Each entry's heading carries the anchor `method-<name>` or
`exchange-<name>`, which the tests read back from the built site.
"""
import json
from typing import Any, Dict, List

from tcpulse.references import BUNDLED, ExchangeEntry, FunctionEntry, Reference, open_set

FOLDER = "reference"
SECTION = "Reference"


def page_name(class_name: str) -> str:
    """The page of a class, named as the class (`reference/Queue.md`): a page named for its
    module would make the Index service's page `index.md`, the folder's own page."""
    return f"{FOLDER}/{class_name}.md"


def scopes_text(scopes: Any) -> str:
    """A reference's scope expression in words: `a`, `all of (a, b)`, `any of (a, b)`,
    `if <condition>: x else y`, `for each <v> in <list>: x`."""
    if isinstance(scopes, str):
        return f"`{scopes}`"
    if isinstance(scopes, dict):
        for word, key in (("all of", "AllOf"), ("any of", "AnyOf")):
            if key in scopes:
                return f"{word} ({', '.join(scopes_text(item) for item in scopes[key])})"
        if "if" in scopes:
            text = f"if `{scopes['if']}`: {scopes_text(scopes.get('then'))}"
            return text + (f" else {scopes_text(scopes['else'])}" if "else" in scopes else "")
        if "for" in scopes:
            return f"for each `{scopes['for']}` in `{scopes['in']}`: {scopes_text(scopes['each'])}"
    if scopes is None:
        return "none"
    return f"`{json.dumps(scopes, sort_keys=True)}`"


def _description(text: str) -> List[str]:
    # The references' descriptions are Markdown whose headings would break the page outline.
    return [line.lstrip("#").strip() if line.startswith("#") else line for line in text.strip().splitlines()]


def method_section(entry: FunctionEntry) -> List[str]:
    call = ", ".join([*entry.args, *(["payload"] if entry.input else [])])
    lines = [f"### `{entry.name}({call})` {{ #method-{entry.name} }}", "", f"**{entry.title}**", "",
             f"- HTTP: `{entry.method.upper()} {entry.route}` ({entry.stability})"]
    if entry.query:
        lines.append(f"- query: {', '.join(f'`{key}`' for key in entry.query)}")
    lines.append(f"- scopes: {scopes_text(entry.scopes) if entry.scopes else 'none'}")
    lines.append(f"- input schema: {f'`{entry.input}`' if entry.input else 'none'}")
    lines.append(f"- output schema: {f'`{entry.output}`' if entry.output else 'none'}")
    return [*lines, "", *_description(entry.description), ""]


def exchange_section(entry: ExchangeEntry, prefix: str) -> List[str]:
    lines = [f"### `{entry.name}` {{ #exchange-{entry.name} }}", "", f"**{entry.title}**", "",
             f"- exchange: `{prefix}{entry.exchange}`", f"- message schema: `{entry.schema}`", "",
             "| routing-key field | required | words | about |", "|---|---|---|---|"]
    for field in entry.routing_key:
        words = "several" if field.multiple_words else ("always `%s`" % field.constant if field.constant else "one")
        summary = " ".join(field.summary.split()).replace("|", "\\|")
        lines.append(f"| `{field.name}` | {'yes' if field.required else 'no'} | {words} | {summary} |")
    return [*lines, "", *_description(entry.description), ""]


def class_page(name: str, reference: Reference) -> str:
    module = name.lower()
    lines = [f"# {name}", "", f"`from tcpulse.{module} import {name}` (or `tcpulse.{name}`; "
             f"asyncio: `tcpulse.aio.{module}`)" if reference.kind != "exchanges" else
             f"`from tcpulse.{module} import {name}` (or `tcpulse.{name}`)", "",
             f"Service `{reference.service_name}`, API version `{reference.api_version}`.", "",
             *_description(reference.description), ""]
    if reference.kind == "exchanges":
        lines += ["## Exchanges", ""]
        for entry in reference.entries:
            lines += exchange_section(entry, reference.exchange_prefix or "")
    else:
        lines += ["## Methods", ""]
        for entry in reference.entries:
            lines += method_section(entry)
    return "\n".join(lines)


def index_page(names: List[str]) -> str:
    lines = ["# Reference", "", "Every class of the bundled reference set, with every method and exchange, "
             "generated from the references tcpulse ships when this site is built. A deployment "
             "pulled with `tcpulse references pull` may have more: `tcpulse references list` "
             "prints its set.", "", "| class | module | kind |", "|---|---|---|"]
    reference_set = open_set(BUNDLED)
    for name in names:
        kind = reference_set.get(name).kind  # type: ignore[union-attr]
        lines.append(f"| [{name}]({name}.md) | `tcpulse.{name.lower()}` | {kind} |")
    return "\n".join(lines) + "\n"


def pages() -> Dict[str, str]:
    """Every generated page, by its path under the docs folder."""
    reference_set = open_set(BUNDLED)
    names = reference_set.names()
    generated = {f"{FOLDER}/index.md": index_page(names)}
    for name in names:
        generated[page_name(name)] = class_page(name, reference_set.get(name))  # type: ignore[arg-type]
    return generated


# mkdocs hooks -------------------------------------------------------------------------------

def on_config(config: Any) -> Any:
    names = open_set(BUNDLED).names()
    entry = {SECTION: [f"{FOLDER}/index.md", *(page_name(name) for name in names)]}
    config["nav"] = [*(config.get("nav") or []), entry]
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for path, content in pages().items():
        files.append(File.generated(config, path, content=content))
    return files
