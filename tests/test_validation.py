"""Opt-in schema validation: the listener (warn, dead-letter; memory:// and RabbitMQ as a Pulse
user), the client (`validate: True`: nothing is sent for an invalid payload), and tcpulse's own
validator against jsonschema on every bundled schema."""
import copy
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Tuple

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT6

import tcpulse
from tcpulse import ClientUsageError, Listener, QueueEvents
from tcpulse._api.schemas import checker, store
from tcpulse._api.validator import compile_schema
from tcpulse._broker.connection import resolve_broker
from tcpulse.references import open_set
from tcpulse.testing import deliver, sample
from listenerkit import Publisher, running, wait_for

BUNDLED = open_set("bundled")
COMPLETED = QueueEvents.taskCompleted


def bundled_schemas() -> Dict[str, Any]:
    root = BUNDLED.root / "schemas"
    return {"/" + p.relative_to(BUNDLED.root).as_posix(): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


SCHEMAS = bundled_schemas()
REGISTRY = Registry().with_resources(
    (sid, Resource.from_contents(doc, default_specification=DRAFT6)) for sid, doc in SCHEMAS.items())


def reference_errors(sid: str, value: Any) -> List[str]:
    """What jsonschema (independent of tcpulse) finds wrong with `value` under schema `sid`."""
    validator = jsonschema.Draft6Validator(SCHEMAS[sid], registry=REGISTRY, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


def drifted(body: Dict[str, Any]) -> Dict[str, Any]:
    """A body as Firefox CI sent them in 2019: without status.taskQueueId, which today's schema requires."""
    old = copy.deepcopy(body)
    del old["status"]["taskQueueId"]
    return old


# -- the validator itself -----------------------------------------------------------------------
@pytest.mark.parametrize("module", ["_api.validator", "_api.schemas", "_api.samples", "_api.typenames",
                                    "_listen.bodycheck"])
def test_the_docstring_examples_run(module):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(f"tcpulse.{module}"))
    assert tried > 0 and failures == 0


def mutations(value: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Tuple[Any, ...], Any]]:
    """(path, a copy of the top value with one thing at `path` broken) for a few places."""
    if isinstance(value, dict):
        for key, item in list(value.items())[:6]:
            yield path + (key,), {"__broken__": True}
            yield from mutations(item, path + (key,))
    elif isinstance(value, str):
        yield path, 12345


def apply(top: Any, path: Tuple[Any, ...], replacement: Any) -> Any:
    broken = copy.deepcopy(top)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = replacement
    return broken


@pytest.mark.parametrize("exchange", tcpulse.exchanges(), ids=lambda ex: f"{ex.service}.{ex.name}")
def test_tcpulse_validator_agrees_with_jsonschema_on_samples_and_their_mutations(exchange):
    body = sample(exchange).body
    check = checker(BUNDLED, exchange.schema)
    assert check(body, ()) is None and reference_errors(exchange.schema, body) == []
    for path, replacement in mutations(body):
        broken = apply(body, path, replacement)
        ours, theirs = check(broken, ()), reference_errors(exchange.schema, broken)
        assert (ours is None) == (theirs == []), (path, ours, theirs)


@pytest.mark.parametrize("sid", sorted(SCHEMAS))
def test_every_bundled_schema_compiles_and_rejects_a_value_of_the_wrong_type(sid):
    schema = SCHEMAS[sid]
    check = checker(BUNDLED, sid)
    wrong = "not an object" if schema.get("type") == "object" else {"not": "a string"}
    if schema.get("type") in ("object", "string", "array"):
        assert check(wrong, ()) is not None
        assert reference_errors(sid, wrong)


@pytest.mark.parametrize("schema, value, where, rule", [
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"enum": ["x"]}}}}, {"a": ["x", "y"]}, "$.a[1]", "enum"),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {}}}, {"b": 1}, "$", "additionalProperties"),
    ({"type": "integer", "maximum": 3}, 4, "$", "maximum"),
    ({"type": "integer"}, True, "$", "type"),
    ({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}, "abcd", "$", "maxLength"),
    ({"type": "array", "uniqueItems": True}, [1, 2, 1], "$", "uniqueItems"),
    ({"oneOf": [{"type": "string"}, {"type": "string", "minLength": 1}]}, "ab", "$", "oneOf"),
    ({"type": "object", "minProperties": 1}, {}, "$", "minProperties"),
])
def test_a_problem_names_the_json_path_and_the_rule(schema, value, where, rule):
    problem = compile_schema(schema, None)(value, ())
    assert problem is not None and (problem.where, problem.rule) == (where, rule)
    assert str(problem).startswith(f"{where}: ") and str(problem).endswith(f"(rule: {rule})")


# -- the listener -------------------------------------------------------------------------------
@pytest.fixture(params=["memory", "rabbitmq"])
def broker(request, unique_name) -> Iterator[Tuple[str, Any]]:
    """(listener's broker URL, send(exchange, key, body)): memory://, or RabbitMQ with the listener
    as a Pulse user and the message published as the Taskcluster service would (as guest)."""
    if request.param == "memory":
        yield "memory://", lambda ex, key, body: tcpulse.publish(ex, body, routing_key=key, broker="memory://")
        return
    user = request.getfixturevalue("pulse_user")
    request.getfixturevalue("taskcluster_exchanges")
    with Publisher() as pub:
        yield user.url, lambda ex, key, body: pub.publish(ex.exchange, key, body)
    with resolve_broker(user.url, environ={}).connection() as conn:
        conn.channel().exchange_delete(f"exchange/{user.name}/{unique_name}/delivery")


def test_dead_letter_mode_parks_a_drifted_body_naming_the_path_and_rule_and_handles_the_rest(broker, unique_name):
    url, send = broker
    app = Listener(unique_name, broker=url, validate="dead-letter")
    handled: List[str] = []
    app.add_handler(lambda event: handled.append(event.fields["taskId"]), COMPLETED, taskGroupId=unique_name)
    good, old = sample(COMPLETED, taskGroupId=unique_name), sample(COMPLETED, taskGroupId=unique_name)
    with running(app):
        send(COMPLETED, old.routing_key, drifted(old.body))
        send(COMPLETED, good.routing_key, good.body)
        wait_for(lambda: handled and app.metrics.get("dead_lettered") == 1, what="one handled, one dead letter")
        [record] = app.dead_letters()
    assert handled == [good.fields["taskId"]]
    assert record["routing_key"] == old.routing_key
    assert record["reason"] == ("body does not match /schemas/queue/v1/task-completed-message.json: "
                                "$.status: required property 'taskQueueId' is missing (rule: required)")


def test_warn_mode_handles_a_drifted_body_and_logs_the_path_and_rule_once(broker, unique_name, caplog):
    url, send = broker
    app = Listener(unique_name, broker=url, validate="warn")
    handled: List[str] = []
    app.add_handler(lambda event: handled.append(event.fields["taskId"]), COMPLETED, taskGroupId=unique_name)
    olds = [sample(COMPLETED, taskGroupId=unique_name) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="tcpulse.listener"), running(app):
        for old in olds:
            send(COMPLETED, old.routing_key, drifted(old.body))
        wait_for(lambda: len(handled) == 3, what="every drifted message handled")
    assert sorted(handled) == sorted(old.fields["taskId"] for old in olds)
    assert app.metrics.get("dead_lettered") == 0
    warnings = [r.getMessage() for r in caplog.records if "does not match" in r.getMessage()]
    assert len(warnings) == 1, "the same problem on the same exchange is logged once a minute"
    assert "$.status: required property 'taskQueueId' is missing (rule: required)" in warnings[0]
    assert "handled anyway (validate='warn')" in warnings[0]


def test_the_harness_validates_like_the_listener():
    app = Listener("harness", validate="dead-letter")
    ran: List[Any] = []
    app.add_handler(ran.append, COMPLETED)
    event = sample(COMPLETED)
    assert deliver(app, COMPLETED, event.routing_key, event.body).acked and len(ran) == 1
    result = deliver(app, COMPLETED, event.routing_key, drifted(event.body))
    assert result.dead_lettered and "$.status: required property 'taskQueueId'" in (result.reason or "")
    assert len(ran) == 1


def test_validation_off_by_default_and_a_bad_mode_is_refused():
    assert Listener("x").validate == "off"
    with pytest.raises(ValueError, match="validate must be one of 'off', 'warn', 'dead-letter' \\(got 'dead_letter'\\)"):
        Listener("x", validate="dead_letter")  # type: ignore[arg-type]


def test_a_set_without_schemas_is_one_clear_error_when_the_listener_starts():
    script = ("import tcpulse\n"
              "app = tcpulse.Listener('x', broker='memory://', validate='warn')\n"
              "app.add_handler(print, tcpulse.QueueEvents.taskCompleted)\n"
              "app.run()\n")
    env = {**os.environ, "TCPULSE_REFERENCES": "legacy-2018"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert ("InvalidReference: schema /schemas/queue/v1/task-completed-message.json is not in the legacy-2018 "
            "reference set") in done.stderr
    assert "validation needs the set's schemas" in done.stderr


# -- the client ---------------------------------------------------------------------------------
class CountingServer:
    """A real local HTTP server that counts the requests it gets and answers {} to each."""

    def __init__(self) -> None:
        counter = self
        self.requests: List[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                counter.requests.append(self.path)
                body = b'{"namespace": "a.b", "taskId": "fQ3sX0JwTHKzSbbr7SYHQA", "rank": 0, "data": {}, "expires": "2030-01-01T00:00:00.000Z"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.close()


GOOD_INDEX = {"taskId": "fQ3sX0JwTHKzSbbr7SYHQA", "rank": 0, "data": {}, "expires": "2030-01-01T00:00:00.000Z"}


@pytest.mark.parametrize("payload, message", [
    ({k: v for k, v in GOOD_INDEX.items() if k != "taskId"}, "$: required property 'taskId' is missing (rule: required)"),
    ({**GOOD_INDEX, "rank": "first"}, "$.rank: \"first\" is not of type number (rule: type)"),
    ({**GOOD_INDEX, "taskID": "x"}, "$: property 'taskID' is not allowed"),
])
def test_validate_true_sends_nothing_for_an_invalid_payload_and_names_the_property(counting_server, payload, message):
    index = tcpulse.Index({"rootUrl": counting_server.url, "validate": True, "maxRetries": 0})
    with pytest.raises(ClientUsageError) as refused:
        index.insertTask("a.b", payload)
    assert str(refused.value).startswith("Index.insertTask: payload does not match v1/insert-task-request.json#: ")
    assert message in str(refused.value)
    assert counting_server.requests == []
    assert index.insertTask("a.b", GOOD_INDEX)["taskId"] == GOOD_INDEX["taskId"]
    assert counting_server.requests == ["/api/index/v1/task/a.b"]


def test_validate_true_checks_query_values_and_off_sends_whatever_it_is_given(counting_server):
    queue = tcpulse.Queue({"rootUrl": counting_server.url, "validate": True, "maxRetries": 0})
    with pytest.raises(ClientUsageError, match="query argument 'limit' must be a string or an integer \\(got \\[1\\]\\)"):
        queue.listTaskGroup("g", query={"limit": [1]})
    assert counting_server.requests == []
    tcpulse.Index({"rootUrl": counting_server.url, "maxRetries": 0}).insertTask("a.b", {"rank": "first"})
    assert counting_server.requests == ["/api/index/v1/task/a.b"], "validation is opt-in"


def test_the_validate_option_must_be_a_bool():
    with pytest.raises(ClientUsageError, match="option 'validate' must be True or False \\(got 'yes'\\)"):
        tcpulse.Queue({"rootUrl": "https://tc", "validate": "yes"})  # type: ignore[typeddict-item]


def test_a_pulled_set_is_checked_against_its_own_schemas(tmp_path):
    """A deployment's set (here the bundled one, copied, whose message schema also requires a
    'deployment' property) validates with its schemas, not the bundled ones."""
    import shutil

    pulled = tmp_path / "pulled"
    shutil.copytree(BUNDLED.root, pulled)
    schema_file = pulled / "schemas" / "queue" / "v1" / "task-completed-message.json"
    schema = json.loads(schema_file.read_text())
    schema["required"].append("deployment")
    schema["properties"]["deployment"] = {"type": "string"}
    schema_file.write_text(json.dumps(schema))
    event = sample(COMPLETED)
    script = ("import json, sys, tcpulse\n"
              "from tcpulse.testing import deliver\n"
              "app = tcpulse.Listener('x', validate='dead-letter')\n"
              "app.add_handler(print, tcpulse.QueueEvents.taskCompleted)\n"
              "for body in json.loads(sys.argv[2]):\n"
              "    print(deliver(app, tcpulse.QueueEvents.taskCompleted, sys.argv[1], body).reason)\n")
    bodies = [event.body, {**event.body, "deployment": "firefox-ci"}]
    env = {**os.environ, "TCPULSE_REFERENCES": str(pulled)}
    done = subprocess.run([sys.executable, "-c", script, event.routing_key, json.dumps(bodies)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("body does not match /schemas/queue/v1/task-completed-message.json: "
                        "$: required property 'deployment' is missing (rule: required)")
    assert lines[-1] == "None", "the body with the deployment's property is handled"
