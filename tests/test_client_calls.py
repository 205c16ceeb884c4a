"""Calling conventions, URLs, query validation and pagination of the generated REST clients."""
import pytest

import tcpulse
from tcpulse.references import SHIPPED, load_all, open_set
from tcpulse._api.services import client_class
from hawkserver import CLIENTS, server  # noqa: F401

# Every API reference of both shipped sets, today's (the default) and legacy-2018.
API_REFERENCES = [ref for label in SHIPPED for ref in open_set(label).references("api")]
API_IDS = [f"{label}:{name}" for label in SHIPPED for name in open_set(label).names("api")]


def queue(server, **options):
    return tcpulse.Queue({"rootUrl": server.url, **options})


@pytest.mark.parametrize("call", [
    lambda q: q.createTask("t1", {"a": 1}),
    lambda q: q.createTask({"a": 1}, taskId="t1"),
    lambda q: q.createTask(payload={"a": 1}, params={"taskId": "t1"}),
    lambda q: q.createTask("t1", payload={"a": 1}),
], ids=["positional-payload", "payload-and-keywords", "payload-query-params", "positional-and-payload-keyword"])
def test_every_calling_convention_sends_the_same_request(server, call):
    call(queue(server))
    seen = server.requests[0]
    assert (seen.method, seen.path, seen.json()) == ("PUT", "/api/queue/v1/task/t1", {"a": 1})
    assert seen.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("call", [
    lambda q: q.listTaskGroup("g1", query={"limit": 2}),
    lambda q: q.listTaskGroup(query={"limit": 2}, params={"taskGroupId": "g1"}),
    lambda q: q.listTaskGroup(taskGroupId="g1", query={"limit": 2}),
])
def test_query_arguments_work_with_positional_and_named_route_arguments(server, call):
    call(queue(server))
    assert (server.requests[0].path, server.requests[0].query) == ("/api/queue/v1/task-group/g1/list", {"limit": ["2"]})


def test_route_arguments_are_url_quoted_and_ints_are_accepted(server):
    queue(server).getArtifact("a/b c?é", 0, "public/logs/live.log")
    assert server.requests[0].path == "/api/queue/v1/task/a%2Fb%20c%3F%C3%A9/runs/0/artifacts/public%2Flogs%2Flive.log"


def test_an_entry_without_output_returns_none_for_an_empty_answer(server):
    server.script = [(204, None)]
    assert queue(server).ping() is None


def test_a_success_that_is_not_json_is_returned_wrapped_as_the_official_client_does(server):
    server.script = [(200, b"plain text")]
    assert queue(server).ping()["response"].text == "plain text"


DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON, too deep for Python's parser


def test_a_success_nested_too_deep_to_decode_is_returned_wrapped_like_any_undecodable_body(server):
    server.script = [(200, DEEP)]
    assert queue(server).ping()["response"].content == DEEP


def test_an_error_nested_too_deep_to_decode_is_a_rest_failure_without_a_message(server):
    server.script = [(400, DEEP)]
    with pytest.raises(tcpulse.TaskclusterRestFailure) as info:
        queue(server).task("abc")
    assert str(info.value) == "Queue.task: HTTP 400 Bad Request: no message from the server"
    assert (info.value.status_code, info.value.body) == (400, {})


def test_pagination_handler_follows_continuation_tokens_across_three_pages(server):
    pages = {None: ("p2", [1, 2]), "p2": ("p3", [3, 4]), "p3": (None, [5])}

    def respond(seen):
        token = seen.query.get("continuationToken", [None])[0]
        following, tasks = pages[token]
        return 200, {"tasks": tasks, **({"continuationToken": following} if following else {})}

    server.responder = respond
    received = []
    client = queue(server, credentials={"clientId": "tester", "accessToken": CLIENTS["tester"]})
    assert client.listTaskGroup("g", paginationHandler=received.append, paginationLimit=2) is None
    assert all(seen.auth_error is None for seen in server.requests)
    assert [task for page in received for task in page["tasks"]] == [1, 2, 3, 4, 5]
    assert [seen.query for seen in server.requests] == [
        {"limit": ["2"]}, {"limit": ["2"], "continuationToken": ["p2"]}, {"limit": ["2"], "continuationToken": ["p3"]}]


def test_a_query_value_of_none_is_left_out(server):
    queue(server).listTaskGroup("g", query={"continuationToken": None})
    assert server.requests[0].query == {}


@pytest.mark.parametrize("call, message", [
    (lambda q: q.task(), r"Queue.task\(\) takes 1 route argument\(s\) \(taskId\); got 0 positional"),
    (lambda q: q.task("a", "b"), r"Queue.task\(\) takes 1 route argument\(s\) \(taskId\) and no payload"),
    (lambda q: q.task("a", {"x": 1}), r"Queue.task\(\) takes 1 route argument\(s\) \(taskId\) and no payload "
                                     r"\(GET /task/<taskId> has no input schema\)"),
    (lambda q: q.task("a", payload={"x": 1}), r"Queue.task\(\) takes no payload \(GET /task/<taskId>"),
    (lambda q: q.createTask("t1"), r"Queue.createTask\(\) requires a payload \(input schema v1/create-task-request"),
    (lambda q: q.createTask(payload={}), r"Queue.createTask\(\) takes 1 route argument\(s\) \(taskId\) and a payload"),
    (lambda q: q.getArtifact("t", name="n", params={"runId": 0}),
     r"Queue.getArtifact\(\): give route arguments \(taskId, runId, name\) either positionally or by name"),
    (lambda q: q.getArtifact(params={"taskId": "t", "runId": 0}), r"Queue.getArtifact\(\) is missing route argument\(s\) name"),
    (lambda q: q.task(taskID="a"), r"unexpected route argument 'taskID'. Did you mean 'taskId'\? Route arguments: taskId"),
    (lambda q: q.task(taskId="a", params={"taskId": "b"}), r"route argument 'taskId' is given twice"),
    (lambda q: q.task(["a"]), r"Queue.task\(\): route argument 'taskId' must be a non-empty string or an int \(got \['a'\]\)"),
    (lambda q: q.task(""), r"route argument 'taskId' must be a non-empty string or an int \(got ''\)"),
    (lambda q: q.listTaskGroup("g", query={"limt": 1}),
     r"Queue.listTaskGroup\(\): unknown query argument 'limt'. Did you mean 'limit'\? Valid: continuationToken, limit"),
    (lambda q: q.task("a", query={"limit": 1}), r"unknown query argument 'limit'. Valid: Queue.task takes no query arguments"),
    (lambda q: q.listTaskGroup("g", query="limit=1"), r"Queue.listTaskGroup\(\): query must be a dict \(got 'limit=1'\)"),
    (lambda q: q.listTaskGroup("g", paginationHandler=5), r"paginationHandler must be callable \(got 5\)"),
    (lambda q: q.buildUrl("tsk", "a"), r"Queue has no method 'tsk'. Did you mean 'task'\?"),
    (lambda q: q.buildSignedUrl("createTask", "a"), r"only GET endpoints can have signed URLs \(this one is PUT\)"),
])
def test_bad_arguments_raise_one_clear_error_before_any_request(server, call, message):
    with pytest.raises(tcpulse.ClientUsageError, match=message):
        call(queue(server, credentials={"clientId": "tester", "accessToken": "x"}))
    assert server.requests == []


@pytest.mark.parametrize("options, message", [
    ({"rootURL": "x"}, r"unknown client option 'rootURL'. Did you mean 'rootUrl'\? Valid options: rootUrl, baseUrl"),
    ({"maxRetries": -1}, r"option 'maxRetries' must be an int >= 0 \(got -1\)"),
    ({"timeout": 0}, r"option 'timeout' must be a number of seconds > 0 \(got 0\)"),
    ({"authorizedScopes": "queue:*"}, r"option 'authorizedScopes' must be a list of scope strings \(got 'queue:\*'\)"),
    ({"credentials": {"clientId": "a", "accesToken": "b"}}, r"option 'credentials' has unknown keys \['accesToken'\]"),
    ({"credentials": {"clientId": "a", "accessToken": "b", "certificate": "{not json"}},
     r"certificate must be the JSON text of a temporary credentials certificate"),
])
def test_bad_options_are_refused_with_the_option_named(options, message):
    with pytest.raises(tcpulse.ClientUsageError, match=message):
        tcpulse.Queue(options)


@pytest.mark.parametrize("options, url", [
    ({"rootUrl": "https://tc.example.com/"}, "https://tc.example.com/api/queue/v1/task/t"),
    ({"rootUrl": "https://tc.example.com//"}, "https://tc.example.com/api/queue/v1/task/t"),
    # taskcluster-urls 13 has no special case for the retired root URL any more.
    ({"rootUrl": "https://taskcluster.net"}, "https://taskcluster.net/api/queue/v1/task/t"),
    ({"rootUrl": "https://taskcluster.net/"}, "https://taskcluster.net/api/queue/v1/task/t"),
    ({"baseUrl": "http://127.0.0.1:9/q/v1/", "rootUrl": "https://x"}, "http://127.0.0.1:9/q/v1/task/t"),
])
def test_service_urls_follow_base_url_then_root_url_by_todays_taskcluster_urls_rules(options, url, monkeypatch):
    monkeypatch.delenv("TASKCLUSTER_ROOT_URL", raising=False)
    assert tcpulse.Queue(options).buildUrl("task", "t") == url


def test_clients_built_without_options_read_the_environment(monkeypatch):
    monkeypatch.setenv("TASKCLUSTER_ROOT_URL", "https://env.example.com")
    monkeypatch.setenv("TASKCLUSTER_CLIENT_ID", "env-client")
    monkeypatch.setenv("TASKCLUSTER_ACCESS_TOKEN", "env-token")
    assert tcpulse.optionsFromEnvironment() == {
        "rootUrl": "https://env.example.com", "credentials": {"clientId": "env-client", "accessToken": "env-token"}}
    client = tcpulse.Index()
    assert client.buildUrl("findTask", "a.b") == "https://env.example.com/api/index/v1/task/a.b"
    assert repr(client) == "<Index https://env.example.com/api/index/v1 clientId='env-client'>"


@pytest.mark.parametrize("reference", API_REFERENCES, ids=API_IDS)
def test_every_api_reference_gives_a_client_class_with_one_documented_method_per_entry(reference):
    cls = client_class(reference)
    assert cls.__name__ == reference.name and issubclass(cls, tcpulse.BaseClient)
    client = cls({"rootUrl": "https://tc.example.com"})
    for entry in reference.entries:
        method = getattr(cls, entry.name)
        assert method.__name__ == entry.name and entry.title in method.__doc__
        route = entry.route
        for number, arg in enumerate(entry.args):
            route = route.replace(f"<{arg}>", f"v{number}")
        expected = f"https://tc.example.com/api/{reference.service_name}/{reference.api_version}/{route.lstrip('/')}"
        assert client.buildUrl(entry.name, *[f"v{n}" for n in range(len(entry.args))]) == expected


def test_every_generated_method_is_the_same_thin_closure_over_call():
    codes = {getattr(tcpulse.Queue, entry.name).__code__ for entry in load_all()["Queue"].entries}
    assert len(codes) == 1


@pytest.mark.parametrize("reference", API_REFERENCES, ids=API_IDS)
def test_every_entry_of_every_api_reference_makes_a_signed_request_with_its_method_and_route(server, reference):
    client = client_class(reference)({"rootUrl": server.url, "credentials": {
        "clientId": "tester", "accessToken": CLIENTS["tester"]}})
    for entry in reference.entries:
        args = [f"v{n}" for n in range(len(entry.args))] + ([{"entry": entry.name}] if entry.input else [])
        getattr(client, entry.name)(*args)
        seen = server.requests[-1]
        route = entry.route
        for number, arg in enumerate(entry.args):
            route = route.replace(f"<{arg}>", f"v{number}")
        assert (seen.method, seen.path) == (entry.method.upper(), f"/api/{reference.service_name}/{reference.api_version}{route}")
        assert seen.auth_error is None
        assert (seen.json() if entry.input else seen.body) == ({"entry": entry.name} if entry.input else b"")
