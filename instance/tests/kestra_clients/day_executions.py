"""Flows, executions and logs: a user's day through `kestrapy`.

Creates flows from YAML, runs them with inputs (a FILE among them), reads,
searches, follows logs, reruns (restart, replay), kills, pauses and
resumes, labels, deletes, and calls webhooks. Calls a release of the
client does not have are left out for it (the only branching on release).
"""

from kestrapy.models.execution_repository_interface_flow_filter import (
    ExecutionRepositoryInterfaceFlowFilter,
)
from kestrapy.models.label import Label
from kestrapy.models.state_type import StateType

from day import state_of

HOOK_KEY = "a-long-webhook-key-0123456789"

HELLO = """
inputs:
  - id: who
    type: STRING
    defaults: world
  - id: attachment
    type: FILE
    required: false
labels:
  team: data
tasks:
  - id: greet
    type: io.kestra.plugin.core.log.Log
    message: "hello {{ inputs.who }}"
  - id: done
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.who }}"
triggers:
  - id: hook
    type: io.kestra.plugin.core.trigger.Webhook
    key: %s
""" % HOOK_KEY

FAILS = """
tasks:
  - id: first
    type: io.kestra.plugin.core.log.Log
    message: before the failure
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

NAPS = """
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT1S
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after the nap
"""

PAUSES = """
tasks:
  - id: before
    type: io.kestra.plugin.core.log.Log
    message: before the pause
  - id: wait
    type: io.kestra.plugin.core.flow.Pause
  - id: after
    type: io.kestra.plugin.core.log.Log
    message: after the pause
"""


def run(day):
    ex = day.client.executions
    t = day.tenant
    ns = day.namespace
    flows(day)

    started = day.check(
        "executions.create_execution",
        lambda: ex.create_execution(
            tenant=t, namespace=ns, id="hello", labels=["origin:day"],
            inputs={"who": "kestra", "attachment": ("notes.txt", b"some notes\n")},
        ),
    )
    if started is None:
        return
    run_id = started.id
    day.check("executions.execution (wait for end)", lambda: expect_state(day.wait_for_end(run_id), "SUCCESS"))
    done = day.check("executions.execution", lambda: ex.execution(execution_id=run_id, tenant=t))
    if done is not None:
        uri = done.inputs["attachment"]
        day.check("executions.file_metadatas_from_execution", lambda: expect(
            ex.file_metadatas_from_execution(execution_id=run_id, path_uri=uri, tenant=t).size == 11,
            "the uploaded file's size"))
        day.check("executions.download_file_from_execution", lambda: expect(
            ex.download_file_from_execution(execution_id=run_id, path_uri=uri, tenant=t) == b"some notes\n",
            "the uploaded file"))
    day.check("executions.follow_execution", lambda: expect(
        state_of(list(ex.follow_execution(execution_id=run_id, tenant=t))[-1]) == "SUCCESS",
        "the followed execution ends in SUCCESS"))
    day.check("executions.create_execution (wait=true)", lambda: expect_state(
        ex.create_execution(tenant=t, namespace=ns, id="hello", wait=True, inputs={"who": "again"}), "SUCCESS"))
    day.check("executions.search_executions", lambda: expect_found(
        ex.search_executions(tenant=t, page=1, size=50), run_id))
    by_flow = [{"field": "NAMESPACE", "operation": "EQUALS", "value": ns},
               {"field": "FLOW_ID", "operation": "EQUALS", "value": "hello"},
               {"field": "STATE", "operation": "IN", "value": ["SUCCESS"]}]
    day.check("executions.search_executions (filters)", lambda: expect_found(
        ex.search_executions(tenant=t, filters=by_flow), run_id))
    day.check("executions.search_executions_by_flow_id", lambda: expect_found(
        ex.search_executions_by_flow_id(tenant=t, namespace=ns, flow_id="hello"), run_id))
    logs(day, run_id)
    reruns(day)
    kill(day)
    pause_resume(day)
    labels_and_delete(day, run_id)
    webhooks(day)
    discovery(day)
    day.check("flows.delete_flow", lambda: day.client.flows.delete_flow(namespace=ns, id="sleepy", tenant=t))


def flows(day):
    fl = day.client.flows
    t = day.tenant
    ns = day.namespace
    day.check("flows.create_flow", lambda: day.create_flow("hello", HELLO))
    day.check("flows.create_flow (fails)", lambda: day.create_flow("fails", FAILS))
    day.check("flows.create_flow (sleepy)", lambda: day.create_flow("sleepy", SLEEPY))
    day.check("flows.create_flow (pauses)", lambda: day.create_flow("pauses", PAUSES))
    day.check("flows.create_flow (naps)", lambda: day.create_flow("naps", NAPS))
    day.check("flows.update_flow", lambda: fl.update_flow(
        namespace=ns, id="hello", tenant=t,
        body=day.flow_source("hello", HELLO.replace("hello {{", "hi {{"))))
    day.check("flows.flow", lambda: expect(fl.flow(namespace=ns, id="hello", tenant=t).revision == 2, "revision 2"))
    day.check("flows.search_flows", lambda: fl.search_flows(tenant=t, page=1, size=10))
    day.check("flows.list_flows_by_namespace", lambda: expect(
        len(fl.list_flows_by_namespace(namespace=ns, tenant=t)) == 5, "five flows"))
    day.check("flows.list_flow_revisions", lambda: expect(
        len(fl.list_flow_revisions(namespace=ns, id="hello", tenant=t)) == 2, "two revisions"))


def logs(day, run_id):
    lg = day.client.logs
    t = day.tenant
    day.check("logs.list_logs_from_execution", lambda: expect(
        any("hi kestra" in (e.message or "") for e in lg.list_logs_from_execution(execution_id=run_id, tenant=t)),
        "the greeting in the logs"))
    day.check("logs.follow_logs_from_execution", lambda: expect(
        any("hi kestra" in (e.message or "") for e in lg.follow_logs_from_execution(execution_id=run_id, tenant=t)),
        "the greeting in the followed logs"))
    day.check("logs.download_logs_from_execution", lambda: expect(
        "hi kestra" in str(lg.download_logs_from_execution(execution_id=run_id, tenant=t)), "the greeting"))


def reruns(day):
    ex = day.client.executions
    t = day.tenant
    failed = day.check("executions.create_execution (fails)", lambda: expect_state(
        ex.create_execution(tenant=t, namespace=day.namespace, id="fails", wait=True), "FAILED"))
    if failed is None:
        return
    day.check("executions.restart_execution", lambda: ex.restart_execution(execution_id=failed.id, tenant=t))
    day.check("executions.restart_execution (fails again)", lambda: expect_state(day.wait_for_end(failed.id), "FAILED"))
    restarted = ex.execution(execution_id=failed.id, tenant=t)
    first = next(r.id for r in restarted.task_run_list if r.task_id == "first")
    for name, kwargs in (
        ("executions.replay_execution", {}),
        ("executions.replay_execution (taskRunId)", {"task_run_id": first}),
        ("executions.replay_execution (revision)", {"revision": 1}),
    ):
        day.check(name, lambda kwargs=kwargs: expect_replay(
            day, ex.replay_execution(execution_id=failed.id, tenant=t, **kwargs), failed.id))
    day.check("executions.replay_execution_with_inputs", lambda: expect_replay(
        day, ex.replay_execution_with_inputs(execution_id=failed.id, tenant=t), failed.id))


def kill(day):
    ex = day.client.executions
    t = day.tenant
    running = day.check("executions.create_execution (sleepy)", lambda: ex.create_execution(
        tenant=t, namespace=day.namespace, id="sleepy"))
    if running is None:
        return
    day.check("executions.execution (running)", lambda: day.wait_for(running.id, {"RUNNING"}))
    day.check("executions.kill_execution", lambda: ex.kill_execution(execution_id=running.id, tenant=t))
    day.check("executions.execution (killed)", lambda: expect_state(day.wait_for_end(running.id), "KILLED"))


def pause_resume(day):
    ex = day.client.executions
    t = day.tenant
    paused = day.check("executions.create_execution (pauses)", lambda: ex.create_execution(
        tenant=t, namespace=day.namespace, id="pauses"))
    if paused is None:
        return
    day.check("executions.execution (paused)", lambda: day.wait_for(paused.id, {"PAUSED"}))
    day.check("executions.resume_execution", lambda: ex.resume_execution(execution_id=paused.id, tenant=t))
    day.check("executions.execution (resumed)", lambda: expect_state(day.wait_for_end(paused.id), "SUCCESS"))
    # Followed while it runs, until it ends.
    followed = ex.create_execution(tenant=t, namespace=day.namespace, id="naps")
    day.check("executions.follow_execution (running)", lambda: expect(
        [state_of(e) for e in ex.follow_execution(execution_id=followed.id, tenant=t)][-1] == "SUCCESS",
        "updates until SUCCESS"))
    # Paused by hand while it runs, then resumed.
    napping = ex.create_execution(tenant=t, namespace=day.namespace, id="naps")
    day.wait_for(napping.id, {"RUNNING"})
    day.check("executions.pause_execution", lambda: ex.pause_execution(execution_id=napping.id, tenant=t))
    day.check("executions.execution (paused by hand)", lambda: day.wait_for(napping.id, {"PAUSED"}))
    day.check("executions.resume_execution (paused by hand)",
              lambda: ex.resume_execution(execution_id=napping.id, tenant=t))
    day.check("executions.execution (resumed by hand)", lambda: expect_state(
        day.wait_for_end(napping.id), "SUCCESS"))


def labels_and_delete(day, run_id):
    ex = day.client.executions
    t = day.tenant
    labels = [Label(key="reviewed", value="yes"), Label(key="origin", value="day")]
    day.check("executions.set_labels_on_terminated_execution", lambda: expect_labels(
        ex.set_labels_on_terminated_execution(execution_id=run_id, tenant=t, labels=labels), labels))
    day.check("executions.execution (labels kept)", lambda: expect_labels(
        ex.execution(execution_id=run_id, tenant=t), labels))
    day.check("executions.eval_expression", lambda: expect(
        ex.eval_expression(execution_id=run_id, tenant=t, expression="{{ inputs.who }}")["result"] == "kestra",
        "the input's value"))
    day.check("executions.update_execution_status", lambda: expect_state(
        ex.update_execution_status(execution_id=run_id, status=StateType.WARNING, tenant=t), "WARNING"))
    gone = ex.create_execution(tenant=t, namespace=day.namespace, id="hello", wait=True)
    day.check("executions.delete_execution", lambda: ex.delete_execution(execution_id=gone.id, tenant=t))
    day.check("executions.execution (deleted: 404)", lambda: expect_status(
        lambda: ex.execution(execution_id=gone.id, tenant=t), 404))


def webhooks(day):
    ex = day.client.executions
    t = day.tenant
    ns = day.namespace
    calls = (
        ("executions.trigger_execution_by_get_webhook",
         lambda: ex.trigger_execution_by_get_webhook(tenant=t, namespace=ns, id="hello", key=HOOK_KEY)),
        ("executions.trigger_execution_by_get_webhook_with_path",
         lambda: ex.trigger_execution_by_get_webhook_with_path(
             tenant=t, namespace=ns, id="hello", key=HOOK_KEY, webhook_path="orders/42")),
        ("executions.trigger_execution_by_post_webhook_with_path",
         lambda: ex.trigger_execution_by_post_webhook_with_path(
             tenant=t, namespace=ns, id="hello", key=HOOK_KEY, webhook_path="orders")),
        ("executions.trigger_execution_by_put_webhook_with_path",
         lambda: ex.trigger_execution_by_put_webhook_with_path(
             tenant=t, namespace=ns, id="hello", key=HOOK_KEY, webhook_path="orders")),
    )
    for name, call in calls:
        day.check(name, lambda call=call: expect_webhook(day, call()))
    # POST and PUT without a trailing path: the client has no method of its
    # own for them, so through its request helper and response model.
    from kestrapy.models.webhook_response import WebhookResponse
    path = ex._tenant_path(t, "executions", "webhook", ns, "hello", HOOK_KEY)
    for method in ("POST", "PUT"):
        day.check(f"executions.webhook {method} without path", lambda method=method: expect_webhook(
            day, ex._json_request(method, path, WebhookResponse, body={"order": 42})))


def discovery(day):
    ex = day.client.executions
    t = day.tenant
    ns = day.namespace
    filters = [ExecutionRepositoryInterfaceFlowFilter(namespace=ns, id="hello"),
               ExecutionRepositoryInterfaceFlowFilter(namespace=ns, id="fails")]
    day.check("executions.latest_executions", lambda: expect(
        len(ex.latest_executions(tenant=t, filters=filters)) == 2, "two latest executions"))
    if hasattr(ex, "list_executable_namespaces"):
        day.check("executions.list_executable_namespaces", lambda: expect(
            ns in ex.list_executable_namespaces(tenant=t), f"{ns} listed"))
        day.check("executions.list_executable_flows_by_namespace", lambda: expect(
            {"hello", "fails"} <= {f.id for f in ex.list_executable_flows_by_namespace(namespace=ns, tenant=t)},
            "hello and fails listed"))
    if hasattr(ex, "validate_new_execution_inputs"):
        day.check("executions.validate_new_execution_inputs", lambda: ex.validate_new_execution_inputs(
            namespace=ns, id="hello", tenant=t, inputs={"who": "checker"}))


# -- expectations -----------------------------------------------------------

def expect(condition, what):
    if not condition:
        raise AssertionError(f"expected {what}")
    return condition


def expect_state(execution, state):
    expect(state_of(execution) == state, f"state {state}, got {state_of(execution)}")
    return execution


def expect_found(page, execution_id):
    results = page["results"] if isinstance(page, dict) else page.results
    ids = [r["id"] if isinstance(r, dict) else r.id for r in results]
    return expect(execution_id in ids, f"{execution_id} among {len(ids)} results")


def expect_replay(day, execution, original_id):
    expect(execution.id != original_id, "a new execution")
    day.wait_for_end(execution.id)
    return execution


def expect_labels(execution, labels):
    have = {(lb.key, lb.value) for lb in execution.labels or []}
    want = {(lb.key, lb.value) for lb in labels}
    return expect(want <= have, f"labels {sorted(want)} among {sorted(have)}")


def expect_status(call, status):
    try:
        call()
    except Exception as err:
        if getattr(err, "status", None) == status:
            return True
        raise
    raise AssertionError(f"expected HTTP {status}")


def expect_webhook(day, response):
    execution_id = getattr(response, "id", None) or getattr(response, "execution_id", None)
    expect(execution_id, "an execution id in the webhook's answer")
    day.wait_for_end(execution_id)
    return response
