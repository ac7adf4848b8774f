"""Triggers, bulk execution actions and flow tools: a user's day through
`kestrapy`.

Validates flows before saving them, draws their graphs, lists namespaces;
searches triggers, disables and enables them (one, listed, by query),
unlocks, restarts and deletes their state, backfills a schedule (pause,
unpause, delete, and one left to finish with its executions counted);
restarts, replays, kills, resumes and deletes executions in bulk, by ids
and by query, and sees a refused bulk action name the execution. Calls a
release of the client does not have are made with its own request helper
(backfill creation and the single set-disabled call, new in 2.x).

Raw-JSON answers are checked against the client's own models here, since
the client does not parse them.
"""

import datetime
import time

import importlib

from kestrapy.models.bulk_response import BulkResponse

from day import TERMINATED

HOURLY = """
inputs:
  - id: region
    type: STRING
    defaults: eu
tasks:
  - id: report
    type: io.kestra.plugin.core.log.Log
    message: "report for {{ trigger.date ?? 'now' }} in {{ inputs.region }}"
triggers:
  - id: hourly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 * * * *"
"""

NIGHTLY = """
tasks:
  - id: seq
    type: io.kestra.plugin.core.flow.Sequential
    tasks:
      - id: extract
        type: io.kestra.plugin.core.log.Log
        message: extract
      - id: branch
        type: io.kestra.plugin.core.flow.Parallel
        tasks:
          - {id: left, type: io.kestra.plugin.core.log.Log, message: left}
          - {id: right, type: io.kestra.plugin.core.log.Log, message: right}
errors:
  - id: alert
    type: io.kestra.plugin.core.log.Log
    message: failed
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 2 * * *"
"""

BROKEN = """
tasks:
  - id: oops
    type: io.kestra.plugin.core.does.not.Exist
"""

FAILS = """
tasks:
  - id: boom
    type: io.kestra.plugin.core.execution.Fail
    errorMessage: failing on purpose
"""

SLEEPY = """
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT60S
"""

PAUSES = """
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: resumed
"""


def filters(**fields):
    """Kestra query filters (EQUALS) as the client encodes them."""
    return [{"field": k, "operation": "EQUALS", "value": v} for k, v in fields.items()]


def bulk_count(answer):
    """The count of a BulkResponse, checked against the client's model."""
    return BulkResponse.from_dict(answer).count


def model(day, one, two):
    """A model of the client: module.Class `one` in 1.x, `two` in 2.x."""
    module, name = (one if day.major() < 2 else two).rsplit(".", 1)
    return getattr(importlib.import_module(f"kestrapy.models.{module}"), name)


def paged_triggers(day, answer):
    """A trigger search, checked against the client's model; the triggers'
    states (Kestra 1: `triggerContext`, 2: `state`)."""
    model(
        day,
        "paged_results_trigger_controller_triggers.PagedResultsTriggerControllerTriggers",
        "paged_results_api_trigger_and_state.PagedResultsApiTriggerAndState",
    ).from_dict(answer)
    key = "triggerContext" if day.major() < 2 else "state"
    return [r[key] for r in answer["results"]]


def trigger_state(day, answer):
    """A single-trigger answer, checked against the client's model."""
    model(day, "trigger.Trigger", "api_trigger_state.ApiTriggerState").from_dict(answer)
    return answer


def trigger_ref(day, state):
    """A trigger as the client's bulk requests hold it."""
    return model(
        day, "trigger.Trigger", "trigger_controller_api_trigger_id.TriggerControllerApiTriggerId"
    ).from_dict(state if day.major() < 2 else {k: state[k] for k in ("namespace", "flowId", "triggerId")})


def refused(status, fn):
    """Runs a call that must be refused with `status`; returns the error."""
    try:
        fn()
    except Exception as err:  # the client's ApiException subclasses
        if getattr(err, "status", None) == status:
            return err
        raise
    raise AssertionError(f"the call was not refused with {status}")


def create_flow(day, flow_id, body):
    """Creates a flow (its answer's model is checked by the flows area)."""
    fl = day.client.flows
    fl._raw_json_request(
        "POST", fl._tenant_path(day.tenant, "flows"), body=day.flow_source(flow_id, body),
        content_type=fl.YAML,
    )


class Area:
    """The day, in a namespace of this area's own (beside, not below, the
    day's), so that other areas' flows and triggers are not selected."""

    def __init__(self, day):
        self._day = day
        self.namespace = f"{day.namespace}tr"

    def __getattr__(self, name):
        return getattr(self._day, name)

    def flow_source(self, flow_id, body):
        return f"id: {flow_id}\nnamespace: {self.namespace}\n{body.strip()}\n"


def run(day):
    day = Area(day)
    flow_tools(day)
    ids = trigger_calls(day)
    backfills(day, ids)
    bulk_executions(day)


def flow_tools(day):
    fl = day.client.flows
    t = day.tenant
    docs = "\n---\n".join(
        [day.flow_source("nightly", NIGHTLY), day.flow_source("broken", BROKEN)]
    )

    def validate():
        answers = fl.validate_flows(tenant=t, body=docs)
        assert [a.index for a in answers] == [0, 1], answers
        assert answers[0].constraints is None and answers[0].flow == "nightly", answers[0]
        assert answers[1].constraints and "does.not.Exist" in answers[1].constraints, answers[1]
        assert answers[1].namespace == day.namespace

    day.check("flows.validate_flows", validate)

    def validate_task():
        ok = fl.validate_task(
            section="TASKS", tenant=t,
            body={"id": "t", "type": "io.kestra.plugin.core.log.Log", "message": "m"},
        )
        assert ok.constraints is None, ok
        bad = fl.validate_task(section="TASKS", tenant=t, body={"id": "t", "type": "nope"})
        assert bad.constraints, bad

    day.check("flows.validate_task", validate_task)
    day.check(
        "flows.validate_trigger",
        lambda: fl.validate_trigger(
            tenant=t, body={"id": "s", "type": "io.kestra.plugin.core.trigger.Schedule", "cron": "not a cron"}
        ).constraints or (_ for _ in ()).throw(AssertionError("a bad cron passed")),
    )

    def graph_from_source():
        graph = fl.generate_flow_graph_from_source(tenant=t, body=day.flow_source("nightly", NIGHTLY))
        uids = {n.uid for n in graph.nodes}
        assert {"seq", "seq.extract", "seq.branch.left", "alert"} <= uids, uids
        assert len(graph.clusters) == 2, graph.clusters

    day.check("flows.generate_flow_graph_from_source", graph_from_source)
    refused(400, lambda: fl.generate_flow_graph_from_source(tenant=t, body=day.flow_source("b", BROKEN)))

    create_flow(day, "nightly", NIGHTLY)
    day.check(
        "flows.generate_flow_graph",
        lambda: fl.generate_flow_graph(namespace=day.namespace, id="nightly", tenant=t).edges
        or (_ for _ in ()).throw(AssertionError("no edges")),
    )
    day.check(
        "flows.task_from_flow",
        lambda: fl.task_from_flow(namespace=day.namespace, id="nightly", task_id="left", tenant=t),
    )
    day.check(
        "flows.list_distinct_namespaces",
        lambda: day.namespace in fl.list_distinct_namespaces(tenant=t)
        or (_ for _ in ()).throw(AssertionError("namespace missing")),
    )


def trigger_calls(day):
    tr = day.client.triggers
    t = day.tenant
    ns = day.namespace
    create_flow(day, "hourly", HOURLY)
    hourly = {"namespace": ns, "flowId": "hourly", "triggerId": "hourly"}

    def search():
        results = paged_triggers(day, tr.search_triggers(tenant=t, filters=filters(namespace=ns)))
        found = sorted(r["triggerId"] for r in results)
        assert found == ["hourly", "nightly"], found
        return results

    day.check("triggers.search_triggers", search)

    def context():
        answer = tr.search_triggers_for_flow(tenant=t, namespace=ns, flow_id="hourly")
        (only,) = paged_triggers(day, answer)
        return only

    ctx = day.check("triggers.search_triggers_for_flow", context)

    def is_disabled():
        return context()["disabled"]

    if day.major() >= 2:
        day.check(
            "triggers.disable_trigger_by_id",
            lambda: trigger_state(day, tr.disable_trigger_by_id(tenant=t, request={**hourly, "disabled": True})),
        )
    else:
        tr._raw_json_request(
            "PUT", tr._tenant_path(t, "triggers", "set-disabled"), body={**hourly, "disabled": True}
        )
    assert is_disabled(), "the trigger did not show disabled"

    def enable_listed():
        request = model(
            day, "trigger_controller_set_disabled_request.TriggerControllerSetDisabledRequest",
            "trigger_controller_set_disabled_request.TriggerControllerSetDisabledRequest",
        )(triggers=[trigger_ref(day, ctx)], disabled=False)
        assert bulk_count(tr.disabled_triggers_by_ids(tenant=t, request=request)) == 1
        assert not is_disabled()

    day.check("triggers.disabled_triggers_by_ids", enable_listed)

    def by_query():
        answer = tr.disabled_triggers_by_query(tenant=t, disabled=True, filters=filters(namespace=ns))
        assert bulk_count(answer) == 2, answer
        assert is_disabled()
        tr.disabled_triggers_by_query(tenant=t, disabled=False, filters=filters(namespace=ns, flowId="hourly"))
        assert not is_disabled()

    day.check("triggers.disabled_triggers_by_query", by_query)
    day.check("triggers.unlock_trigger", lambda: trigger_state(
        day, tr.unlock_trigger(tenant=t, namespace=ns, flow_id="hourly", trigger_id="hourly")))
    day.check("triggers.restart_trigger", lambda: trigger_state(
        day, tr.restart_trigger(tenant=t, namespace=ns, flow_id="hourly", trigger_id="hourly")))
    day.check("triggers.unlock_triggers_by_ids",
              lambda: bulk_count(tr.unlock_triggers_by_ids(tenant=t, trigger_ids=[ctx])) == 1 or 1 / 0)
    day.check("triggers.unlock_triggers_by_query",
              lambda: bulk_count(tr.unlock_triggers_by_query(tenant=t, filters=filters(namespace=ns))) == 2 or 1 / 0)
    nightly = {"namespace": ns, "flowId": "nightly", "triggerId": "nightly"}
    day.check("triggers.delete_trigger",
              lambda: tr.delete_trigger(tenant=t, namespace=ns, flow_id="nightly", trigger_id="nightly"))
    day.check("triggers.delete_triggers_by_ids",
              lambda: bulk_count(tr.delete_triggers_by_ids(tenant=t, trigger_ids=[nightly])) == 1 or 1 / 0)

    def delete_by_query():
        from kestrapy.models.delete_triggers_by_query_request import DeleteTriggersByQueryRequest
        # The model's field names: UPPER_SNAKE in 1.x, camelCase in 2.x.
        if day.major() < 2:
            fields = {"NAMESPACE": {"value": ns}, "FLOW_ID": {"value": "nightly"}}
        else:
            fields = {"namespace": ns, "flowId": "nightly"}
        request = DeleteTriggersByQueryRequest.from_dict({"filters": filters(**fields)})
        assert bulk_count(tr.delete_triggers_by_query(tenant=t, request=request)) == 1

    day.check("triggers.delete_triggers_by_query", delete_by_query)
    refused(404, lambda: tr.unlock_trigger(tenant=t, namespace=ns, flow_id="hourly", trigger_id="nope"))
    return hourly


def create_backfill(day, trigger, start, end, labels=None):
    tr = day.client.triggers
    body = {**trigger, "backfill": {"start": start.isoformat(), "end": end.isoformat(),
                                    "labels": labels or []}}
    if day.major() >= 2:
        return tr.create_backfill(tenant=day.tenant, request=body)
    return tr._raw_json_request("PUT", tr._tenant_path(day.tenant, "triggers", "backfill", "create"), body=body)


def runs_of(day, flow_id):
    """The executions of one of this run's flows."""
    ex = day.client.executions
    # The search's plain parameters (the same in both releases).
    params = {"namespace": day.namespace, "flowId": flow_id, "size": 100}
    path = ex._tenant_path(day.tenant, "executions", "search")
    return ex._raw_json_request("GET", path, params=params)["results"]


def hourly_runs(day, label):
    """The executions a backfill labelled `backfill: label` started."""
    return [
        r for r in runs_of(day, "hourly")
        if {"key": "backfill", "value": label} in (r.get("labels") or [])
    ]


def backfills(day, hourly):
    tr = day.client.triggers
    t = day.tenant
    now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
    start, end = now - datetime.timedelta(hours=6), now - datetime.timedelta(hours=2)

    def set_disabled(disabled):
        request = model(
            day, "trigger_controller_set_disabled_request.TriggerControllerSetDisabledRequest",
            "trigger_controller_set_disabled_request.TriggerControllerSetDisabledRequest",
        )(triggers=[trigger_ref(day, {**hourly, "date": now.isoformat()})], disabled=disabled)
        assert bulk_count(tr.disabled_triggers_by_ids(tenant=t, request=request)) == 1

    # A disabled schedule's backfill waits: these are never run.
    set_disabled(True)

    def paused_then_deleted():
        created = create_backfill(day, hourly, start - datetime.timedelta(days=30), end, [{"key": "backfill", "value": "old"}])
        trigger_state(day, created)
        paused = trigger_state(day, tr.pause_backfill(tenant=t, trigger_id=hourly))
        assert paused["backfill"]["paused"] is True, paused
        assert tr.unpause_backfill(tenant=t, trigger_id=hourly)["backfill"]["paused"] is False
        assert bulk_count(tr.pause_backfill_by_ids(tenant=t, trigger_ids=[hourly])) == 1
        assert bulk_count(tr.unpause_backfill_by_query(tenant=t, filters=filters(namespace=day.namespace))) == 1
        assert bulk_count(tr.pause_backfill_by_query(tenant=t, filters=filters(namespace=day.namespace))) == 1
        assert bulk_count(tr.unpause_backfill_by_ids(tenant=t, trigger_ids=[hourly])) == 1
        assert trigger_state(day, tr.delete_backfill(tenant=t, trigger_id=hourly)).get("backfill") is None
        refused(409, lambda: tr.pause_backfill(tenant=t, trigger_id=hourly))

    day.check("triggers backfill pause/unpause/delete", paused_then_deleted)

    def bulk_delete():
        create_backfill(day, hourly, start, end, [{"key": "backfill", "value": "gone"}])
        tr.pause_backfill(tenant=t, trigger_id=hourly)
        assert bulk_count(tr.delete_backfill_by_ids(tenant=t, trigger_ids=[hourly])) == 1
        create_backfill(day, hourly, start, end, [{"key": "backfill", "value": "gone"}])
        tr.pause_backfill(tenant=t, trigger_id=hourly)
        assert bulk_count(tr.delete_backfill_by_query(tenant=t, filters=filters(namespace=day.namespace))) == 1

    day.check("triggers backfill delete by ids and by query", bulk_delete)

    def completes():
        create_backfill(day, hourly, start, end, [{"key": "backfill", "value": "day"}])
        assert runs_of(day, "hourly") == [], "a disabled schedule's backfill ran"
        set_disabled(False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if len(hourly_runs(day, "day")) == 5:
                break
            time.sleep(0.2)
        runs = hourly_runs(day, "day")
        assert len(runs) == 5, f"{len(runs)} backfilled executions, not 5"
        dates = sorted(r["trigger"].get("variables", r["trigger"])["date"] for r in runs)
        assert dates[0].startswith(start.strftime("%Y-%m-%dT%H")), dates
        refused(400, lambda: create_backfill(day, hourly, end, start))

    day.check("triggers backfill runs the schedule's ticks", completes)


def execution(day, execution_id):
    """An execution as JSON (its model is checked by the executions area)."""
    ex = day.client.executions
    return ex._raw_json_request("GET", ex._tenant_path(day.tenant, "executions", execution_id))


def wait_for(day, execution_id, states, timeout=60.0):
    """Polls the execution until its state is one of `states`."""
    deadline = time.monotonic() + timeout
    while True:
        state = execution(day, execution_id)["state"]["current"]
        if state in states:
            return execution_id
        assert time.monotonic() < deadline, f"{execution_id} is {state}, not {sorted(states)}"
        time.sleep(0.2)


def wait_for_end(day, execution_id):
    return wait_for(day, execution_id, TERMINATED)


def started(day, flow_id, states):
    """Starts an execution of one of this run's flows; waits for `states`."""
    ex = day.client.executions
    path = ex._tenant_path(day.tenant, "executions", day.namespace, flow_id)
    run = ex._raw_json_request("POST", path)
    return wait_for(day, run["id"], states)


def bulk_executions(day):
    ex = day.client.executions
    t = day.tenant
    for flow_id, body in [("fails", FAILS), ("sleepy", SLEEPY), ("pauses", PAUSES)]:
        create_flow(day, flow_id, body)
    failed = [started(day, "fails", {"FAILED"}) for _ in range(2)]
    by_flow = filters(namespace=day.namespace, flowId="fails")

    def restart():
        assert bulk_count(ex.restart_executions_by_ids(tenant=t, ids=failed)) == 2
        for i in failed:
            wait_for_end(day, i)
        assert bulk_count(ex.restart_executions_by_query(tenant=t, filters=by_flow)) == 2

    day.check("executions.restart_executions_by_ids/by_query", restart)
    for i in failed:
        wait_for_end(day, i)

    def replay():
        assert bulk_count(ex.replay_executions_by_ids(tenant=t, ids=failed[:1])) == 1
        deadline = time.monotonic() + 30
        while len(runs_of(day, "fails")) < 3:
            assert time.monotonic() < deadline, "the replay did not appear"
            time.sleep(0.2)
        for r in runs_of(day, "fails"):
            wait_for_end(day, r["id"])
        assert bulk_count(ex.replay_executions_by_query(tenant=t, filters=by_flow)) == 3
        # The three replays just started: labels are set on ended executions only.
        while len(runs_of(day, "fails")) < 6:
            assert time.monotonic() < deadline + 30, "the replays did not appear"
            time.sleep(0.2)
        for r in runs_of(day, "fails"):
            wait_for_end(day, r["id"])

    day.check("executions.replay_executions_by_ids/by_query", replay)

    def labels():
        from kestrapy.models.execution_controller_set_labels_by_ids_request import (
            ExecutionControllerSetLabelsByIdsRequest,
        )
        from kestrapy.models.label import Label

        request = ExecutionControllerSetLabelsByIdsRequest(
            executions_id=failed, execution_labels=[Label(key="reviewed", value="yes")]
        )
        assert bulk_count(ex.set_labels_on_terminated_executions_by_ids(tenant=t, request=request)) == 2
        assert {"key": "reviewed", "value": "yes"} in execution(day, failed[0])["labels"]
        answer = ex.set_labels_on_terminated_executions_by_query(
            tenant=t, labels=[Label(key="batch", value="b1")], filters=by_flow
        )
        assert bulk_count(answer) == len(runs_of(day, "fails")), answer
        assert {"key": "batch", "value": "b1"} in execution(day, failed[1])["labels"]

    day.check("executions.set_labels_on_terminated_executions_by_ids/by_query", labels)

    def refusal():
        err = refused(400, lambda: ex.kill_executions_by_ids(tenant=t, ids=[failed[0], "no-such-id"]))
        assert "no-such-id" in str(err.body) and failed[0] in str(err.body), err.body

    day.check("executions.kill_executions_by_ids refused for ended executions", refusal)

    def kill():
        one = started(day, "sleepy", {"RUNNING"})
        assert bulk_count(ex.kill_executions_by_ids(tenant=t, ids=[one])) == 1
        wait_for(day, one, {"KILLED"})
        two = started(day, "sleepy", {"RUNNING"})
        running = filters(namespace=day.namespace, flowId="sleepy", state="RUNNING")
        assert bulk_count(ex.kill_executions_by_query(tenant=t, filters=running)) == 1
        wait_for(day, two, {"KILLED"})

    day.check("executions.kill_executions_by_ids/by_query", kill)

    def resume():
        one = started(day, "pauses", {"PAUSED"})
        assert bulk_count(ex.resume_executions_by_ids(tenant=t, ids=[one])) == 1
        wait_for(day, one, {"SUCCESS"})
        two = started(day, "pauses", {"PAUSED"})
        paused = filters(namespace=day.namespace, flowId="pauses", state="PAUSED")
        assert bulk_count(ex.resume_executions_by_query(tenant=t, filters=paused)) == 1
        wait_for(day, two, {"SUCCESS"})

    day.check("executions.resume_executions_by_ids/by_query", resume)

    def delete():
        for r in runs_of(day, "fails"):
            wait_for_end(day, r["id"])
        assert ex.delete_executions_by_ids(tenant=t, ids=failed[:1]).count == 1
        left = len(runs_of(day, "fails"))
        assert bulk_count(ex.delete_executions_by_query(tenant=t, filters=by_flow)) == left
        assert runs_of(day, "fails") == []

    day.check("executions.delete_executions_by_ids/by_query", delete)
