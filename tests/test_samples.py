"""`tcpulse.testing.sample` and its Hypothesis strategy: bodies every bundled exchange's schema
accepts (checked with jsonschema, not with tcpulse's validator), keys carrying the given fields."""
import pytest
from hypothesis import HealthCheck, given, settings

import tcpulse
from tcpulse import Event, QueueEvents, TaskclusterTopicExchangeFailure
from tcpulse.testing import sample, samples
from test_validation import reference_errors

EXCHANGES = tcpulse.exchanges()


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda ex: f"{ex.service}.{ex.name}")
def test_a_sample_of_every_bundled_exchange_validates_against_its_schema(exchange):
    event = sample(exchange)
    assert isinstance(event, Event)
    assert event.exchange == exchange.exchange and event.attempt == 1
    assert reference_errors(exchange.schema, event.body) == []
    parsed = exchange.parse(event.routing_key)
    assert {name: parsed[name] for name in event.fields} == event.fields


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda ex: f"{ex.service}.{ex.name}")
def test_the_hypothesis_strategy_draws_varied_bodies_that_all_validate(exchange):
    bodies = []

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(samples(exchange))
    def check(event):
        assert reference_errors(exchange.schema, event.body) == []
        assert event.exchange == exchange.exchange
        bodies.append(repr(event.body))
    check()
    assert len(bodies) >= 5


def test_given_fields_are_in_the_key_and_the_body_agrees_with_the_key():
    event = sample(QueueEvents.taskFailed, taskGroupId="g1", runId=2, workerGroup="wg1")
    assert (event.fields["taskGroupId"], event.fields["runId"], event.fields["workerGroup"]) == ("g1", "2", "wg1")
    assert event.body["runId"] == 2 and event.body["workerGroup"] == "wg1"
    assert event.body["status"]["taskId"] == event.fields["taskId"]
    assert event.routing_key == QueueEvents.taskFailed.routing_key(**{k: v for k, v in event.fields.items() if v})


def test_a_misspelt_field_is_the_exchanges_own_error():
    with pytest.raises(TaskclusterTopicExchangeFailure, match="'taskGroupID' is not a routing-key field of "
                                                              "QueueEvents.taskCompleted.*Did you mean 'taskGroupId'"):
        sample(QueueEvents.taskCompleted, taskGroupID="g")


def test_a_sample_goes_through_the_harness_to_a_typed_handler():
    from tcpulse import Listener
    from tcpulse.testing import deliver
    from tcpulse.types.queue import TaskCompletedMessage

    app = Listener("samples", validate="dead-letter")
    seen = []

    @app.on(QueueEvents.taskCompleted, taskGroupId="g1")
    def completed(event: Event[TaskCompletedMessage]) -> None:
        seen.append(event.body["status"]["taskId"])

    event = sample(QueueEvents.taskCompleted, taskGroupId="g1")
    assert deliver(app, QueueEvents.taskCompleted, event.routing_key, event.body).acked
    assert seen == [event.fields["taskId"]]


def test_the_examples_of_the_types_guide_run(capsys):
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "types.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 5
    for block in blocks:
        namespace: dict = {"__name__": "types_guide"}
        exec(compile(block, "docs/types.md", "exec"), namespace)
        for name, value in namespace.items():
            if name.startswith("test_") and callable(value):
                settings(max_examples=10, deadline=None, database=None)(value)()  # the guide's property test, briefly
    assert "required property 'taskId' is missing (rule: required)" in capsys.readouterr().out
