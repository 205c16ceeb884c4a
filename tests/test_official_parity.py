"""tcpulse answers as the official client did on the same inputs, as recorded in
tests/fixtures/official_client/observed.json by record.py (run with the official `taskcluster`
package, today's 113.x; its version is in the file)."""
import datetime
import json
import pickle
import warnings
from pathlib import Path

import pytest

import tcpulse
from fixtures.official_client.probes import utils_answers
from hawkserver import server  # noqa: F401 - the fixture

HERE = Path(__file__).parent / "fixtures" / "official_client"
CASES = json.loads((HERE / "cases.json").read_text())
OBSERVED = json.loads((HERE / "observed.json").read_text())
ENVIRONMENT = ("TASKCLUSTER_ROOT_URL", "TASKCLUSTER_CLIENT_ID", "TASKCLUSTER_ACCESS_TOKEN", "TASKCLUSTER_CERTIFICATE")


def outcome(function, *args):
    try:
        return {"value": function(*args)}
    except Exception as exc:
        return {"raises": type(exc).__name__}


def test_the_fixture_was_recorded_from_todays_official_client():
    assert int(OBSERVED["version"].split(".")[0]) >= 100


@pytest.mark.parametrize("index", range(len(CASES["scopeMatch"])))
def test_scope_match_gives_the_official_boolean_even_for_input_of_the_wrong_shape(index):
    assert outcome(tcpulse.scopeMatch, *CASES["scopeMatch"][index]) == OBSERVED["scopeMatch"][index]


@pytest.mark.parametrize("index", range(len(CASES["optionsFromEnvironment"])))
def test_options_from_environment_gives_the_official_options(index, monkeypatch):
    case = CASES["optionsFromEnvironment"][index]
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in case["environment"].items():
        monkeypatch.setenv(name, value)
    assert tcpulse.optionsFromEnvironment(case["defaults"]) == OBSERVED["optionsFromEnvironment"][index]


def test_from_now_is_aware_utc_by_default_and_keeps_a_naive_date_naive_as_the_official():
    assert tcpulse.fromNow("1 hour").utcoffset().total_seconds() == OBSERVED["fromNow"]["default_utcoffset_seconds"]
    naive = tcpulse.fromNow("1 day", datetime.datetime(2020, 1, 1)).tzinfo is None
    assert naive is OBSERVED["fromNow"]["naive_stays_naive"]


@pytest.mark.parametrize("name, args, kwargs", CASES["exceptions"])
def test_exception_constructors_take_the_official_arguments(name, args, kwargs):
    error = getattr(tcpulse, name)(*args, **kwargs)
    expected = OBSERVED["exceptions"][name + json.dumps([args, kwargs])]
    attributes = {key: getattr(error, key) for key in ("status_code", "body", "reason") if hasattr(error, key)}
    assert (str(error), attributes, str(pickle.loads(pickle.dumps(error)))) == (
        expected["str"], expected["attributes"], expected["pickled_str"])
    assert getattr(error, "superExc", "absent") == expected["superExc"]


def test_the_official_utilities_answer_the_same():
    expected = OBSERVED["utils"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        observed = utils_answers(tcpulse)
    assert observed == expected


def test_scope_match_under_its_deprecated_name_warns_and_answers():
    with pytest.warns(DeprecationWarning, match="scope_match is deprecated; use scopeMatch"):
        assert tcpulse.scope_match(["a:*"], [["a:b"]]) is True
    assert tcpulse.utils.scope_match is tcpulse.scope_match


def test_client_attributes_equal_the_officials():
    queue = tcpulse.Queue({"rootUrl": "https://tc.example.com"})
    expected = OBSERVED["client"]
    assert (queue.serviceName, queue.apiVersion, queue.classOptions) == (
        expected["serviceName"], expected["apiVersion"], expected["classOptions"])
    assert queue.funcinfo["task"] == expected["funcinfo_task"]
    assert queue.funcinfo["createTask"] == expected["funcinfo_createTask"]


@pytest.mark.parametrize("root", CASES["rootUrls"])
def test_build_url_follows_todays_taskcluster_urls_rules(root):
    assert tcpulse.Queue({"rootUrl": root}).buildUrl("task", "t") == OBSERVED["buildUrl"][root]


def test_credentials_that_are_not_ascii_fail_as_the_officials_do():
    built = outcome(lambda: tcpulse.Queue(
        {"rootUrl": "https://tc", "credentials": {"clientId": "me", "accessToken": "s\u00e9cret"}}) and None)
    assert built == OBSERVED["nonAsciiCredentials"]


def test_a_redirect_answer_gives_the_same_result_as_the_officials(server):
    target = OBSERVED["redirects"]["303_with_json"]["url"]
    server.script = [(303, OBSERVED["redirects"]["303_with_json"], {"Location": target}),
                     (302, b"", {"Location": target})]
    queue = tcpulse.Queue({"rootUrl": server.url, "maxRetries": 0})
    assert queue.getLatestArtifact("json", "public/x") == OBSERVED["redirects"]["303_with_json"]
    bare = queue.getLatestArtifact("bare", "public/x")
    assert sorted(bare) == OBSERVED["redirects"]["302_without_body"]
    assert bare["response"].status_code == OBSERVED["redirects"]["302_status"]
