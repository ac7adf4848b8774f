"""Every call of Kestra's Python client (`kestrapy`) reaches a route of the
instance: implemented, or refused with 501 naming the feature. None may
fall through to the generic 404 ("no such endpoint"), and none may answer
5xx.

Each public method of each API class is called with dummy arguments on a
session that records the request instead of sending it; the recorded
request is then sent, as recorded, to the instance with the caller's
token. A 404 naming a missing flow or execution is an answer of the
route, and so is a 4xx for a dummy body.

Usage: routes_served.py --host URL --tenant T --token JWT
A 405 (a method Atoll does not serve on a path it serves) is accepted and
printed.

Prints one line per call that failed, one per call answered 501 (with the
feature the answer names) or 405, then the figures:
`checked N, implemented I, 501 U, 405 M, failed F`.
"""

import argparse
import enum
import inspect
import sys
import types
import typing

import requests

import kestrapy.api as client_api

# Dummy values, by parameter name; anything else named like an id is "probe".
NAMESPACE = "atoll.routes.probe"
BY_NAME = {
    "namespace": NAMESPACE,
    "tenant": None,  # filled with --tenant
    "body": {},
    "path": "/probe.txt",
    "key": "probe",
    "q": "probe",
    "labels": [],
    "page": 1,
    "size": 10,
}


class Captured(Exception):
    """What the client would have sent."""

    def __init__(self, method, url, kwargs):
        super().__init__(f"{method} {url}")
        self.method, self.url, self.kwargs = method, url, kwargs


class RecordingSession:
    """A `requests.Session` stand-in that records the first request."""

    headers: dict = {}

    def request(self, method, url, **kwargs):
        raise Captured(method.upper(), url, kwargs)

    def get(self, url, **kwargs):
        raise Captured("GET", url, kwargs)

    def post(self, url, **kwargs):
        raise Captured("POST", url, kwargs)


def dummy(name, annotation, tenant):
    """A value the client accepts for a parameter."""
    if name == "tenant":
        return tenant
    if name in BY_NAME:
        return BY_NAME[name]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return dummy(name, inner[0], tenant) if inner else None
    if origin in (list, typing.List):
        return []
    if origin in (dict, typing.Dict):
        return {}
    if annotation is int:
        return 1
    if annotation is float:
        return 1.0
    if annotation is bool:
        return False
    if annotation is bytes:
        return b"probe"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return next(iter(annotation))
    if inspect.isclass(annotation) and hasattr(annotation, "model_construct"):
        fields = {
            field: dummy(field, info.annotation, tenant)
            for field, info in annotation.model_fields.items()
            if info.is_required()
        }
        return annotation.model_construct(**fields)
    if annotation in (str, inspect.Parameter.empty, typing.Any):
        return "probe"
    return "probe"


def capture(api, name, method, tenant):
    """The request `method` sends, or an error string when none was made."""
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # a hint naming something the module does not import
        hints = {}
    kwargs = {}
    for pname, param in inspect.signature(method).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.default is not param.empty and pname != "tenant":
            continue
        kwargs[pname] = dummy(pname, hints.get(pname, param.annotation), tenant)
    try:
        result = method(**kwargs)
        if inspect.isgenerator(result):
            next(result)
    except Captured as sent:
        return sent
    except Exception as err:  # the client refused its own dummy arguments
        return f"{type(err).__name__}: {err}"
    return "no request made"


def api_classes():
    for attr in sorted(dir(client_api)):
        cls = getattr(client_api, attr)
        if inspect.isclass(cls) and attr.endswith("Api"):
            yield attr, cls


def replay(http, token, sent):
    headers = dict(sent.kwargs.get("headers") or {})
    headers["Authorization"] = f"Bearer {token}"
    return http.request(
        sent.method,
        sent.url,
        params=sent.kwargs.get("params"),
        data=sent.kwargs.get("data"),
        files=sent.kwargs.get("files"),
        headers=headers,
        stream=True,
        timeout=30,
    )


def documented(document, tenant):
    """The instance's operations: (method, path segments under /api/v1)."""
    operations = set()
    for path, item in document["paths"].items():
        if path.startswith("/api/v1/{tenant}/"):
            continue
        for method in item:
            operations.add((method.upper(), tuple(path.split("/")[3:])))
    return operations


def route_of(operations, method, path, tenant):
    """The documented operation the client meant, or None. A document
    parameter must stand where the client put a dummy id: a parameter taking
    the client's literal segment is another route (`/executions/pause/by-ids`
    read as flow `by-ids` of namespace `pause`)."""
    segments = path.split("/")[3:]
    if segments[:1] == [tenant]:
        segments = segments[1:]
    for op_method, template in operations:
        if op_method != method:
            continue
        if template and template[-1].startswith("{*"):
            if len(segments) < len(template):
                continue
            segments_cut = segments[: len(template) - 1]
            template = template[:-1]
        else:
            segments_cut = segments
        if len(template) != len(segments_cut):
            continue
        if all(
            (t.startswith("{") and "probe" in s) or t == s
            for t, s in zip(template, segments_cut)
        ):
            return "/".join(template)
    return None


def feature(resp):
    """The feature a 501 names ("not implemented by Atoll: <feature>")."""
    try:
        message = resp.json().get("message", "")
    except ValueError:
        message = resp.text[:200]
    named = message.split("not implemented by Atoll: ", 1)[-1]
    return named.split(". ", 1)[0]


def verdict(resp, path, operations, tenant, method):
    """("implemented" | "501" | None, why-failed) for the answer to `path`."""
    if resp.status_code >= 500 and resp.status_code != 501:
        return None, f"{resp.status_code} {resp.text[:200]}"
    if resp.status_code == 501:
        return "501", feature(resp)
    if resp.status_code == 405:
        # The path is served with other methods: 405 and its Allow header
        # say so (a 501 there would contradict the OpenAPI document). Printed,
        # so the note can name each one.
        if any(route_of(operations, m, path, tenant) for m in ("GET", "POST", "PUT", "DELETE")):
            return "405", ""
        return None, "405: the path belongs to another route"
    if route_of(operations, method, path, tenant) is None:
        return None, f"{resp.status_code}: no documented route of the instance is this call"
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        return "implemented", ""
    body = resp.text[:400]
    if resp.status_code == 404 and "no such endpoint" in body:
        return None, f"404 fallback {body}"
    # A 404 is only an answer about the dummy ids in the path; without any,
    # it is a neighbouring route reading the path as something else
    # (`/executions/pause/by-ids` as flow `by-ids` of namespace `pause`).
    if resp.status_code == 404 and "probe" not in path:
        return None, f"404 from another route {body}"
    return "implemented", ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("-v", action="store_true", help="print every call")
    args = parser.parse_args()
    base = args.host.rstrip("/")
    http = requests.Session()
    document = http.get(f"{base}/api/v1/openapi.json", timeout=30).json()
    operations = documented(document, args.tenant)
    counts = {"implemented": 0, "501": 0, "405": 0, "failed": 0}
    checked = 0
    for cls_name, cls in api_classes():
        api = cls(RecordingSession(), base)
        for name, method in inspect.getmembers(api, inspect.ismethod):
            if name.startswith("_"):
                continue
            sent = capture(api, name, method, args.tenant)
            checked += 1
            if not isinstance(sent, Captured):
                counts["failed"] += 1
                print(f"FAIL {cls_name}.{name}: {sent}")
                continue
            path = sent.url[len(base):]
            try:
                resp = replay(http, args.token, sent)
                kind, why = verdict(
                    resp, path.split("?")[0], operations, args.tenant, sent.method
                )
                resp.close()
            except requests.RequestException as err:
                kind, why = None, f"{type(err).__name__}: {err}"
            if kind is None:
                counts["failed"] += 1
                print(f"FAIL {cls_name}.{name}: {sent.method} {path}: {why}")
            else:
                counts[kind] += 1
                if args.v or kind in ("501", "405"):
                    named = f" ({why})" if why else ""
                    print(f"{kind:11} {cls_name}.{name}: {sent.method} {path}{named}")
    print(
        f"checked {checked}, implemented {counts['implemented']}, "
        f"501 {counts['501']}, 405 {counts['405']}, failed {counts['failed']}"
    )
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
