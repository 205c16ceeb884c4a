"""The pytest harness delivers like the live listener: same selection, same retry and
dead-letter verdicts, only the failed handlers re-run."""
import pytest

from tcpulse import Listener, PermanentFailure, QueueEvents, TaskclusterRestFailure
from tcpulse.testing import deliver

KEY = "primary.t1.0.wg.w1.aws.b-linux.sched.g1._"


def make_app(**options):
    app = Listener("harness-test", broker="memory://", **options)
    calls = []

    @app.on(QueueEvents.taskCompleted, taskGroupId="g1")
    def by_group(event):
        calls.append(("by_group", event.attempt))

    @app.on(QueueEvents.taskCompleted, route="index.project.#")
    @app.on(QueueEvents.taskCompleted, taskId="t1")
    def by_task_or_route(event):
        calls.append(("by_task_or_route", event.attempt))

    return app, calls


def test_a_handler_bound_on_key_and_route_runs_once_in_registration_order():
    app, calls = make_app()
    result = deliver(app, QueueEvents.taskCompleted, KEY, {"n": 1}, routes=["index.project.a"])
    assert result.ran == ["test_testing.make_app.<locals>.by_group",
                          "test_testing.make_app.<locals>.by_task_or_route"]
    assert calls == [("by_group", 1), ("by_task_or_route", 1)] and result.acked


def test_a_cc_route_alone_selects_the_route_handler():
    app, calls = make_app()
    result = deliver(app, "QueueEvents.taskCompleted", KEY.replace("t1", "t9").replace("g1", "g9"), {},
                     routes=["index.project.x"])
    assert calls == [("by_task_or_route", 1)] and result.acked


def test_a_message_no_binding_matches_runs_nothing_and_is_acked():
    app, calls = make_app()
    result = deliver(app, QueueEvents.taskFailed, KEY, {})
    assert result.ran == [] and result.acked and calls == []


def test_a_transient_failure_is_retried_rerunning_only_the_failed_handler():
    app = Listener("flaky", broker="memory://", max_attempts=5)
    seen = []

    @app.on(QueueEvents.taskCompleted)
    def steady(event):
        seen.append(("steady", event.attempt))

    @app.on(QueueEvents.taskCompleted)
    def flaky(event):
        seen.append(("flaky", event.attempt))
        if event.attempt < 3:
            raise ConnectionError("database down")

    result = deliver(app, QueueEvents.taskCompleted, KEY, {}, rand=lambda: 0.0)
    assert seen == [("steady", 1), ("flaky", 1), ("flaky", 2), ("flaky", 3)]
    assert result.acked and result.retried == ["test_testing.test_a_transient_failure_is_retried_rerunning_only_the_failed_handler.<locals>.flaky"]
    assert [a.outcome.delay for a in result.attempts[:2]] == [5.0, 30.0]


def test_a_handler_that_always_fails_is_dead_lettered_after_the_attempt_limit():
    app = Listener("broken", broker="memory://", max_attempts=3)
    app.on(QueueEvents.taskCompleted)(lambda event: 1 / 0)
    result = deliver(app, QueueEvents.taskCompleted, KEY, {})
    assert result.dead_lettered and len(result.attempts) == 3
    assert result.reason == "failed 3 of 3 attempts"


@pytest.mark.parametrize("error", [PermanentFailure("bad task"), TaskclusterRestFailure("gone", status_code=404)])
def test_a_permanent_failure_is_dead_lettered_at_once(error):
    app = Listener("permanent", broker="memory://")

    @app.on(QueueEvents.taskCompleted)
    def handler(event):
        raise error

    result = deliver(app, QueueEvents.taskCompleted, KEY, {})
    assert result.dead_lettered and result.calls == [(1, result.ran[0])]
    assert result.reason.startswith("permanent failure in ")


def test_follow_retries_false_reports_the_scheduled_retry():
    app = Listener("once", broker="memory://")
    app.on(QueueEvents.taskCompleted)(lambda event: 1 / 0)
    result = deliver(app, QueueEvents.taskCompleted, KEY, {}, follow_retries=False)
    assert not result.acked and not result.dead_lettered and len(result.retried) == 1


@pytest.mark.parametrize("raw, reason", [(b"\xff", "not valid UTF-8"), ("[1]", "not an object"), ("{", "not JSON")])
def test_a_body_that_is_not_a_json_object_is_dead_lettered_without_running_handlers(raw, reason):
    app, calls = make_app()
    result = deliver(app, QueueEvents.taskCompleted, KEY, raw)
    assert result.dead_lettered and reason in result.reason and calls == []


def test_the_fixture_is_registered_through_the_pytest_plugin_entry_point(tcpulse_harness, pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("tcpulse")
    assert tcpulse_harness.deliver is deliver


def test_a_script_path_or_an_imported_module_can_stand_for_the_listener(tmp_path, monkeypatch, capsys):
    script = tmp_path / "mod_handlers.py"
    script.write_text("import tcpulse\n\n@tcpulse.on(tcpulse.QueueEvents.taskDefined)\n"
                      "def defined(event):\n    print('defined', event.fields['taskId'])\n")
    by_path = deliver(str(script), QueueEvents.taskDefined, KEY, {})
    monkeypatch.syspath_prepend(str(tmp_path))
    import mod_handlers
    by_module = deliver(mod_handlers, QueueEvents.taskDefined, KEY, {})
    assert by_path.ran == ["mod_handlers.defined"] and by_module.ran == ["mod_handlers.defined"]
    assert capsys.readouterr().out == "defined t1\ndefined t1\n"
    with pytest.raises(TypeError, match="expected a Listener, a handler module or a script path"):
        deliver(42, QueueEvents.taskDefined, KEY, {})


def test_by_handler_tells_each_handlers_fate():
    app = Listener("fates", broker="memory://", max_attempts=2)
    app.on(QueueEvents.taskCompleted)(lambda event: None)

    @app.on(QueueEvents.taskCompleted)
    def doomed(event):
        raise ValueError("no")

    names = [h.name for h in app.handlers]
    assert deliver(app, QueueEvents.taskCompleted, KEY, {}).by_handler == {
        names[0]: "succeeded", names[1]: "dead-lettered"}
    assert deliver(app, QueueEvents.taskCompleted, KEY, {}, follow_retries=False).by_handler == {
        names[0]: "succeeded", names[1]: "retrying"}
