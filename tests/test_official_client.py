"""tcpulse under its default (bundled) references against the official client of today.

`fixtures/official_today.json` is what the official `taskcluster` package (113.x) computes for
every exchange and method of the bundled set that it also has: the class that serves it, the
binding for no arguments, each routing-key field alone and every field, and `buildUrl` under
three rootUrls. Regenerate it with `tests/fixtures/make_official_today.py` (its docstring says how).
"""
import json
from pathlib import Path

import pytest

import tcpulse
from tcpulse.references import BUNDLED, open_set

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "official_today.json").read_text(encoding="utf-8"))
BUNDLE = open_set(BUNDLED)


def entries_of(kind: str) -> set:
    return {f"{ref.name}.{entry.name}" for ref in BUNDLE.references(kind) for entry in ref.entries}


def test_the_fixture_covers_every_exchange_and_method_of_the_bundle_the_official_client_has():
    recorded = {f"{c['class']}.{c['name']}" for c in FIXTURE["exchanges"] + FIXTURE["methods"]}
    assert recorded == (entries_of("exchanges") | entries_of("api")) - set(FIXTURE["in_bundle_not_official"])
    # Methods the official client dropped after v106 (the bundle's release); nothing else differs.
    assert FIXTURE["in_bundle_not_official"] == [
        "Auth.azureAccounts", "Auth.azureTables", "Auth.azureTableSAS", "Auth.azureContainers", "Auth.azureContainerSAS"]


@pytest.mark.parametrize("case", FIXTURE["exchanges"], ids=[f"{c['class']}.{c['name']}: {c['case']}" for c in FIXTURE["exchanges"]])
def test_a_binding_equals_the_official_clients(case):
    exchange = getattr(getattr(tcpulse, case["class"]), case["name"])
    assert dict(exchange(*case["args"], **case["kwargs"])) == case["result"]


@pytest.mark.parametrize("case", FIXTURE["methods"], ids=[
    f"{c['class']}.{c['name']} {c['rootUrl']} {'/'.join(c['args'])}{' query' if c['query'] else ''}" for c in FIXTURE["methods"]])
def test_a_methods_url_equals_the_official_clients(case, monkeypatch):
    monkeypatch.delenv("TASKCLUSTER_ROOT_URL", raising=False)
    client = getattr(tcpulse, case["class"])({"rootUrl": case["rootUrl"]})
    query = {"query": case["query"]} if case["query"] else {}
    assert client.buildUrl(case["name"], *case["args"], **query) == case["url"]
