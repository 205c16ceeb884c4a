"""`tcpulse.aio` clients against the real Hawk-verifying server (tests/hawkserver.py): every
calling convention, permanent and temporary credentials with authorizedScopes, retries with
backoff, 4xx not retried, timeouts, keep-alive, pagination, and the sync client's errors."""
import asyncio
import datetime
import logging
import socket

import aiohttp
import pytest

import tcpulse
import tcpulse.aio
from hawkserver import CLIENTS, DROP, server  # noqa: F401 - the fixture

PERMANENT = {"clientId": "tester", "accessToken": CLIENTS["tester"]}


def run(coroutine_function, *args, **kwargs):
    return asyncio.run(coroutine_function(*args, **kwargs))


async def call(server, method, *args, options=None, **kwargs):
    """One call on a fresh async Queue client, closed afterwards."""
    async with tcpulse.aio.Queue({"rootUrl": server.url, "maxRetries": 2, **(options or {})}) as queue:
        return await getattr(queue, method)(*args, **kwargs)


def temporary(name=None, scopes=("queue:*",)):
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=1)
    return tcpulse.createTemporaryCredentials("issuer", CLIENTS["issuer"], start,
                                              start + datetime.timedelta(hours=1), list(scopes), name)


def test_an_answer_nested_too_deep_to_decode_is_handled_like_any_undecodable_body(server):
    deep = b"[" * 100_000 + b"]" * 100_000
    server.script = [(200, deep)]
    assert run(call, server, "ping")["response"].status == 200
    server.script = [(400, deep)]
    with pytest.raises(tcpulse.TaskclusterRestFailure, match=r"^Queue.task: HTTP 400 Bad Request: no message from the server$"):
        run(call, server, "task", "abc")


@pytest.mark.parametrize("args, kwargs", [
    (("t1", {"a": 1}), {}),
    (({"a": 1},), {"taskId": "t1"}),
    ((), {"payload": {"a": 1}, "params": {"taskId": "t1"}}),
    (("t1",), {"payload": {"a": 1}}),
], ids=["positional-payload", "payload-and-keywords", "payload-query-params", "positional-and-payload-keyword"])
def test_every_calling_convention_sends_the_same_signed_request(server, args, kwargs):
    assert run(call, server, "createTask", *args, options={"credentials": PERMANENT}, **kwargs) == \
        {"path": "/api/queue/v1/task/t1"}
    [seen] = server.requests
    assert (seen.method, seen.path, seen.json()) == ("PUT", "/api/queue/v1/task/t1", {"a": 1})
    assert (seen.client_id, seen.auth_error, seen.ext) == ("tester", None, {})


def test_query_arguments_and_a_dot_dot_route_argument_stay_as_the_reference_says(server):
    run(call, server, "listTaskGroup", "g1", query={"limit": 2})
    run(call, server, "task", "..")
    assert (server.requests[0].path, server.requests[0].query) == ("/api/queue/v1/task-group/g1/list", {"limit": ["2"]})
    assert server.requests[1].path == "/api/queue/v1/task/%2E%2E"


def test_misuse_is_the_sync_clients_client_usage_error_before_anything_is_sent(server):
    with pytest.raises(tcpulse.ClientUsageError, match=r"Queue.listTaskGroup\(\): unknown query argument 'limt'. "
                                                       r"Did you mean 'limit'\?"):
        run(call, server, "listTaskGroup", "g1", query={"limt": 2})
    assert server.requests == []


def test_authorized_scopes_travel_in_ext(server):
    run(call, server, "task", "abc", options={"credentials": PERMANENT, "authorizedScopes": ["queue:a"]})
    [seen] = server.requests
    assert (seen.client_id, seen.auth_error, seen.ext) == ("tester", None, {"authorizedScopes": ["queue:a"]})


@pytest.mark.parametrize("name", [None, "named-temp"])
def test_temporary_credentials_sign_with_their_certificate_and_the_server_accepts_them(server, name):
    options = {"credentials": temporary(name), "authorizedScopes": ["queue:get-task:*"]}
    assert run(call, server, "task", "abc", options=options) == {"path": "/api/queue/v1/task/abc"}
    [seen] = server.requests
    assert seen.auth_error is None and seen.client_id == (name or "issuer")
    assert seen.ext["certificate"]["scopes"] == ["queue:*"]
    assert seen.ext["authorizedScopes"] == ["queue:get-task:*"]


def test_500_500_200_succeeds_on_the_third_attempt_after_logged_backoff(server, caplog):
    server.script = [(500, {"message": "a"}), (503, {"message": "b"})]
    with caplog.at_level(logging.WARNING, logger="tcpulse.client"):
        assert run(call, server, "task", "abc", options={"credentials": PERMANENT}) == {"path": "/api/queue/v1/task/abc"}
    assert len(server.requests) == 3 and all(s.auth_error is None for s in server.requests)
    assert "HTTP 500 from GET" in caplog.text and "attempt 2 of 3" in caplog.text and "attempt 3 of 3" in caplog.text
    gaps = [b.arrived - a.arrived for a, b in zip(server.requests, server.requests[1:])]
    assert 0.075 <= gaps[0] and 0.15 <= gaps[1], gaps  # 0.1 s then 0.2 s, +-25 %


def test_a_dropped_connection_is_retried(server):
    server.script = [(DROP, None)]
    assert run(call, server, "task", "abc") == {"path": "/api/queue/v1/task/abc"}
    assert len(server.requests) == 2


@pytest.mark.parametrize("status, error, message", [
    (404, tcpulse.TaskclusterRestFailure, "Queue.task: HTTP 404 Not Found: Task not found"),
    (401, tcpulse.TaskclusterAuthFailure, "Queue.task: HTTP 401 Unauthorized: Task not found"),
    (400, tcpulse.TaskclusterRestFailure, "Queue.task: HTTP 400 Bad Request: Task not found"),
])
def test_a_4xx_is_called_once_and_raises_what_the_sync_client_raises(server, status, error, message):
    answer = (status, {"message": "Task not found", "code": "X"})
    server.script = [answer]
    with pytest.raises(error) as async_error:
        run(call, server, "task", "abc")
    assert len(server.requests) == 1
    server.script = [answer]
    with pytest.raises(error) as sync_error:
        tcpulse.Queue({"rootUrl": server.url}).task("abc")
    assert str(async_error.value) == str(sync_error.value) == message
    assert async_error.value.status_code == status and async_error.value.body == {"message": "Task not found", "code": "X"}


def test_a_server_error_on_the_last_attempt_is_raised_with_its_message(server):
    server.script = [(500, {"message": "still broken"})] * 2
    with pytest.raises(tcpulse.TaskclusterRestFailure, match="HTTP 500 Internal Server Error: still broken"):
        run(call, server, "task", "abc", options={"maxRetries": 1})
    assert len(server.requests) == 2


def test_a_refused_port_is_a_connection_error_after_max_retries_plus_one_attempts(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def refused():
        async with tcpulse.aio.Queue({"rootUrl": f"http://127.0.0.1:{port}", "maxRetries": 2}) as queue:
            await queue.task("abc")
    with pytest.raises(tcpulse.TaskclusterConnectionError, match=r"Queue.task: connection refused \(ClientConnectorError on GET "
                                                                   r"http://127.0.0.1:\d+/api/queue/v1/task/abc\), "
                                                                   r"after 3 attempt\(s\)") as caught:
        run(refused)
    assert caplog.text.count("retrying in") == 2
    assert caught.value.__cause__ is caught.value.superExc


def test_a_hanging_server_hits_the_timeout(server):
    server.delay = 2.0
    with pytest.raises(tcpulse.TaskclusterConnectionError, match=r"no answer within 0.2 s \("):
        run(call, server, "task", "abc", options={"timeout": 0.2, "maxRetries": 0})


def test_fifty_calls_on_one_client_use_one_keep_alive_connection(server):
    async def fifty():
        async with tcpulse.aio.Queue({"rootUrl": server.url, "credentials": PERMANENT}) as queue:
            return [await queue.task(f"t{n}") for n in range(50)]
    assert len(run(fifty)) == 50
    assert len(server.requests) == 50 and server.connections == 1
    assert all(seen.auth_error is None for seen in server.requests)


def test_concurrent_calls_share_the_clients_pool(server):
    server.delay = 0.05

    async def gathered():
        async with tcpulse.aio.Queue({"rootUrl": server.url, "credentials": PERMANENT}) as queue:
            return await asyncio.gather(*(queue.task(f"t{n}") for n in range(20)))
    results = run(gathered)
    assert [r["path"] for r in results] == [f"/api/queue/v1/task/t{n}" for n in range(20)]
    assert all(seen.auth_error is None for seen in server.requests) and server.connections <= 20


def test_pagination_handler_may_be_async_and_follows_continuation_tokens(server):
    pages = {None: ("p2", [1, 2]), "p2": (None, [3])}
    server.responder = lambda seen: (200, dict(zip(("continuationToken", "tasks"),
                                                   pages[seen.query.get("continuationToken", [None])[0]])))
    got = []

    async def handler(page):
        await asyncio.sleep(0)
        got.extend(page["tasks"])
    assert run(call, server, "listTaskGroup", "g", paginationHandler=handler) is None
    assert got == [1, 2, 3] and server.requests[1].query["continuationToken"] == ["p2"]


def test_a_redirect_is_an_answer_and_is_not_followed(server):
    server.script = [(303, {"url": "http://elsewhere.invalid/x"}, {"Location": "http://elsewhere.invalid/x"})]
    assert run(call, server, "getLatestArtifact", "t", "public/x", options={"credentials": PERMANENT}) == \
        {"url": "http://elsewhere.invalid/x"}
    assert len(server.requests) == 1


def test_a_session_the_caller_owns_is_used_and_left_open(server):
    async def shared():
        async with aiohttp.ClientSession() as session:
            queue = tcpulse.aio.Queue({"rootUrl": server.url}, session=session)
            await queue.task("a")
            await queue.close()
            assert not session.closed
            return queue.session is session
    assert run(shared)


def test_every_api_of_the_active_set_has_an_async_class_with_awaitable_methods():
    from tcpulse.references import load_all

    names = sorted(name for name, ref in load_all().items() if ref.kind == "api")
    assert "Queue" in names and set(names) <= set(dir(tcpulse.aio))
    for name in names:
        cls = getattr(tcpulse.aio, name)
        assert issubclass(cls, tcpulse.aio.AsyncClient) and cls.__module__ == "tcpulse.aio"
        assert set(cls.funcinfo) == set(getattr(tcpulse, name).funcinfo)
    with pytest.raises(AttributeError, match="module 'tcpulse.aio' has no attribute 'QueueEvents'"):
        tcpulse.aio.QueueEvents
