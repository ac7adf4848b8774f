"""A day of ordinary calls to an Atoll instance through Kestra's official
Python client (`kestrapy`), as a Kestra user would make them.

    python day.py --host http://127.0.0.1:8080 --tenant acme --token TOKEN

Runs every `day_*.py` module of this folder, in name order; each exposes
`run(day)` and makes its calls through `day.check(name, fn)`. Prints one
line per call (`ok  area.call` or `FAIL area.call: error`), then
`N passed, M failed` alone on the last line; exits 1 on any failure.

A response that does not parse into the client's own model is a failure:
the client would otherwise fall back to an unchecked `model_construct`, so
`strict_models()` makes its deserializer validate first and raise.
"""

import argparse
import glob
import importlib
import importlib.metadata
import os
import sys
import time
import traceback
import uuid

from kestrapy import KestraClient
from pydantic import ValidationError
from kestrapy.base_api import BaseApi

# Execution states after which nothing more happens.
TERMINATED = {"SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED", "SKIPPED"}


class ModelParseError(Exception):
    """Our JSON did not validate against the client's response model."""


def getter_artefact(error):
    """A required field the generated models take from a Java getter
    (`State.getDuration`, `getStartDate`, `getEndDate`): Kestra's own server
    does not send it (it sends `duration`, `startDate`, `endDate`), so its
    absence is not held against us."""
    last = str(error["loc"][-1]) if error.get("loc") else ""
    return error.get("type") in ("missing", "string_type", "datetime_type") and (
        last.startswith("get") and last[3:4].isupper()
    ) and error.get("input") is None


def strict_models():
    """Makes the client's deserializer refuse JSON its models reject."""
    lenient = BaseApi._deserialize

    def strict(data, return_type):
        if isinstance(data, dict) and hasattr(return_type, "from_dict"):
            try:
                return_type.from_dict(data)
            except ValidationError as err:
                errors = [e for e in err.errors() if not getter_artefact(e)]
                if errors:
                    raise ModelParseError(f"{return_type.__name__}: {errors}") from None
            except Exception as err:
                raise ModelParseError(f"{return_type.__name__}: {err}") from None
        return lenient(data, return_type)

    BaseApi._deserialize = staticmethod(strict)


class Day:
    """What each area module gets: the client, the tenant, and helpers."""

    def __init__(self, host, tenant, token):
        self.host = host.rstrip("/")
        self.tenant = tenant
        self.token = token
        self.client = KestraClient(host=host, token=token)
        self.release = importlib.metadata.version("kestrapy")
        # One namespace per run, so that runs of both releases against one
        # instance do not meet.
        tag = self.release.replace(".", "")
        self.namespace = f"company.day{tag}.{uuid.uuid4().hex[:6]}"
        self.passed = 0
        self.failed = 0

    def major(self):
        """The client's major release number (1 or 2)."""
        return int(self.release.split(".")[0])

    def check(self, name, fn):
        """Runs one call; records and prints ok or FAIL. Returns its result
        (None when it failed)."""
        try:
            result = fn()
        except Exception as err:  # report every failure, go on with the day
            self.failed += 1
            detail = str(err).strip().replace("\n", " ")
            print(f"FAIL {name}: {type(err).__name__}: {detail[:600]}", flush=True)
            if os.environ.get("DAY_TRACEBACK"):
                traceback.print_exc()
            return None
        self.passed += 1
        print(f"ok   {name}", flush=True)
        return result

    def flow_source(self, flow_id, body):
        """A flow's YAML source in this run's namespace."""
        return f"id: {flow_id}\nnamespace: {self.namespace}\n{body.strip()}\n"

    def create_flow(self, flow_id, body):
        """Creates a flow from YAML (see `flow_source`)."""
        return self.client.flows.create_flow(
            tenant=self.tenant, body=self.flow_source(flow_id, body)
        )

    def wait_for(self, execution_id, states, timeout=60.0):
        """Polls the execution until its state is one of `states`."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            execution = self.client.executions.execution(
                execution_id=execution_id, tenant=self.tenant
            )
            last = state_of(execution)
            if last in wanted:
                return execution
            time.sleep(0.2)
        raise TimeoutError(
            f"execution {execution_id} is {last}, not {sorted(wanted)}, after {timeout} s"
        )

    def wait_for_end(self, execution_id, timeout=60.0):
        """Polls the execution until it has terminated."""
        return self.wait_for(execution_id, TERMINATED, timeout)


def state_of(execution):
    """The current state's name of an Execution model."""
    current = execution.state.current
    return getattr(current, "value", current)


def area_modules():
    """The `day_*` modules next to this file, in name order."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    names = sorted(
        os.path.splitext(os.path.basename(p))[0]
        for p in glob.glob(os.path.join(here, "day_*.py"))
    )
    return [importlib.import_module(name) for name in names]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    strict_models()
    day = Day(args.host, args.tenant, args.token)
    print(f"kestrapy {day.release} against {day.host}, tenant {day.tenant}", flush=True)
    run_namespace = day.namespace
    for module in area_modules():
        print(f"-- {module.__name__}", flush=True)
        # Each area in a namespace of its own, so that one area's flows
        # (say, a webhook) are not in another's searches.
        area = module.__name__.removeprefix("day_").replace("_", "")
        day.namespace = f"{run_namespace}.{area}"
        try:
            module.run(day)
        except Exception as err:  # an area that stops half-way is a failure
            day.failed += 1
            print(f"FAIL {module.__name__}: stopped: {type(err).__name__}: {err}", flush=True)
            traceback.print_exc()
    print(f"{day.passed} passed, {day.failed} failed", flush=True)
    return 1 if day.failed else 0


if __name__ == "__main__":
    sys.exit(main())
