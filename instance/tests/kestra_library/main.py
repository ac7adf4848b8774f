# A script using Kestra's Python library as Kestra's documentation shows,
# run by a script task (tests/kestra_library.rs). With `subflow` as its
# argument it also starts the flow `company.team/child` through the API
# (KESTRA_HOSTNAME and KESTRA_API_TOKEN come from the task's `env`).
# The task sets `executionContext: true`, for `kestra.context`.
import sys

import kestra
from kestra import Kestra, context

print("kestra module: " + kestra.__file__)

Kestra.outputs({"greeting": "hello", "count": 3})
Kestra.outputs({"nested": {"list": [1, 2, 3], "flag": True, "inner": {"x": 1.5} } })
# `executionContext: true`: the execution's context, read as data.
Kestra.outputs({"context": {
    "flow": context.flow.id,
    "execution": context.execution.id,
    "team": context.labels.team,
} })
Kestra.counter("rows", 3, {"table": "users"})
Kestra.timer("load", 1.5)
Kestra.gauge("ratio", 0.25, {"kind": "share"})

logger = Kestra.logger()
logger.info("info from the library")
logger.warning("warning from the library")
logger.error("error from the library")

if sys.argv[1:] == ["subflow"]:
    from kestra import Flow

    child = Flow().execute("company.team", "child", {"who": "a script"})
    Kestra.outputs({"child": {"id": child.execution_id, "status": child.status} })
