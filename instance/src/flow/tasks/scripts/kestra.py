"""Kestra's `kestra` module for scripts: outputs, metrics, assets and logs,
sent to the engine as `::{...}::` lines, as Kestra's own library sends them.

This file is put in the working directory of a Python script task that
imports `kestra`. When Kestra's own library (the `kestra` package) is
installed in the interpreter, importing this module gives that library: the
user's library wins. Otherwise this stand-in answers, with the same calls
and the same lines (`Kestra.read`, for Ion files, needs the library).
"""

import base64
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone


def _installed_library():
    """The spec of another `kestra` module on `sys.path`, not this file's
    folder (the working directory), or None."""
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))

    def elsewhere(entry):
        try:
            return os.path.realpath(entry or os.getcwd()) != here
        except (OSError, ValueError):
            return True

    path = [e for e in sys.path if isinstance(e, str) and elsewhere(e)]
    spec = importlib.machinery.PathFinder.find_spec(__name__, path)
    if spec is None or spec.loader is None or not spec.has_location:
        return None  # absent, or a bare folder named `kestra`
    if os.path.realpath(spec.origin) == os.path.realpath(__file__):
        return None
    return spec


_spec = _installed_library()
if _spec is not None:
    # The import system answers whatever `sys.modules` holds once this file
    # ran: the installed library, whose own code then runs.
    _library = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _library
    _spec.loader.exec_module(_library)


class Kestra:
    """Sends outputs, metrics, assets and logs to the engine."""

    _logger = None

    @staticmethod
    def _send(map_):
        print(Kestra.format(map_), flush=True)

    @staticmethod
    def format(map_):
        """The line that carries `map_` to the engine: `::<json>::`."""
        return "::" + json.dumps(map_, default=str) + "::"

    @staticmethod
    def _metrics(name, type_, value, tags=None):
        metric = {"name": name, "type": type_, "value": value, "tags": tags or {}}
        Kestra._send({"metrics": [metric]})

    @staticmethod
    def outputs(map_):
        """Sets outputs of the task (`outputs.<task>.vars.<name>`)."""
        Kestra._send({"outputs": map_})

    @staticmethod
    def assets(map_):
        """Declares an asset (accepted; the instance keeps no asset catalog)."""
        Kestra._send({"assets": map_})

    @staticmethod
    def counter(name, value, tags=None):
        Kestra._metrics(name, "counter", value, tags)

    @staticmethod
    def timer(name, duration, tags=None):
        """A duration in seconds, or the time a callable takes."""
        if callable(duration):
            start = time.monotonic()
            duration()
            duration = time.monotonic() - start
        Kestra._metrics(name, "timer", duration, tags)

    @staticmethod
    def gauge(name, value, tags=None):
        Kestra._metrics(name, "gauge", value, tags)

    @staticmethod
    def logger():
        """A logger whose records become the task's logs, at their level:
        DEBUG and INFO on standard output, WARNING and above on standard
        error, each as a `::{"logs": [...]}::` line."""
        if Kestra._logger is not None:
            return Kestra._logger
        logger = logging.getLogger("Kestra")
        logger.setLevel(logging.DEBUG)
        out = logging.StreamHandler(sys.stdout)
        out.setLevel(logging.DEBUG)
        out.addFilter(lambda record: record.levelno <= logging.INFO)
        out.setFormatter(JsonFormatter())
        err = logging.StreamHandler(sys.stderr)
        err.setLevel(logging.WARNING)
        err.setFormatter(JsonFormatter())
        logger.addHandler(out)
        logger.addHandler(err)
        Kestra._logger = logger
        return logger

    @staticmethod
    def read(path_):
        """Reads an Ion file: needs Kestra's own library."""
        raise ImportError(
            "Kestra.read needs Kestra's own library: install the `kestra` package "
            "in the task's Python (for example in `beforeCommands`)"
        )


class LogFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):
        moment = datetime.fromtimestamp(record.created, timezone.utc)
        return moment.isoformat(sep="T", timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    _formatter = LogFormatter("%(asctime)s - %(message)s")
    _LEVELS = {
        logging.DEBUG: "DEBUG",
        logging.INFO: "INFO",
        logging.WARNING: "WARN",
        logging.ERROR: "ERROR",
        logging.CRITICAL: "ERROR",
    }

    def format(self, record):
        level = self._LEVELS.get(record.levelno, "TRACE")
        message = self._formatter.format(record)
        return Kestra.format({"logs": [{"level": level, "message": message}]})


class FlowExecution:
    """What `Flow.execute` gives: the execution's id, state, logs, error."""

    def __init__(self, execution_id, status=None, log=None, error=None):
        self.execution_id = execution_id
        self.status = status
        self.log = log
        self.error = error

    def __repr__(self):
        return f"FlowExecution(execution_id={self.execution_id!r}, status={self.status!r})"


class _Response:
    """The little of an HTTP response `Flow` callers use."""

    def __init__(self, status_code, content):
        self.status_code = status_code
        self.content = content
        self.text = content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


class Flow:
    """Starts a flow through the instance's API, and waits for its end
    unless told not to: `KESTRA_HOSTNAME` names the instance,
    `KESTRA_API_TOKEN` (or `KESTRA_USER` and `KESTRA_PASSWORD`)
    authenticates."""

    _ENDED = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")

    def __init__(self, wait_for_completion=True, poll_interval=1, labels_from_inputs=False, tenant=None):
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.labels_from_inputs = labels_from_inputs
        self.user = os.environ.get("KESTRA_USER")
        self.password = os.environ.get("KESTRA_PASSWORD")
        self.hostname = os.environ.get("KESTRA_HOSTNAME", "http://localhost:8080")
        self.api_token = os.environ.get("KESTRA_API_TOKEN")
        prefix = f"/api/v1/{tenant}" if tenant is not None else "/api/v1"
        self.API_ENDPOINT_EXECUTION_CREATE = prefix + "/executions/{namespace}/{flow_id}"
        self.API_ENDPOINT_EXECUTION_STATUS = prefix + "/executions/{execution_id}"
        self.API_ENDPOINT_EXECUTION_LOG = prefix + "/logs/{execution_id}/download"

    def _make_request(self, method, url, body=None, content_type=None):
        import urllib.error
        import urllib.request

        headers = {}
        if self.api_token is not None:
            headers["Authorization"] = f"Bearer {self.api_token}"
        elif self.user is not None and self.password is not None:
            pair = f"{self.user}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        if content_type is not None:
            headers["Content-Type"] = content_type
        for attempt in range(5):
            request = urllib.request.Request(url, data=body, headers=headers, method=method.upper())
            try:
                with urllib.request.urlopen(request) as response:
                    return _Response(response.status, response.read())
            except urllib.error.HTTPError as e:
                if e.code == 401:
                    raise Exception("Authentication required but not provided. Set KESTRA_API_TOKEN.") from None
                if e.code not in (408, 429, 500, 502, 503, 504):
                    detail = e.read().decode("utf-8", "replace")
                    raise Exception(f"{method.upper()} {url} answered {e.code}: {detail}") from None
            time.sleep(2**attempt)
        raise Exception("Failed to make the request after 5 retries")

    def check_status(self, execution_id):
        url = self.hostname + self.API_ENDPOINT_EXECUTION_STATUS.format(execution_id=execution_id)
        return self._make_request("get", url)

    def get_logs(self, execution_id):
        url = self.hostname + self.API_ENDPOINT_EXECUTION_LOG.format(execution_id=execution_id)
        return self._make_request("get", url)

    def execute(self, namespace, flow, inputs=None):
        inputs = inputs or {}
        url = self.hostname + self.API_ENDPOINT_EXECUTION_CREATE.format(namespace=namespace, flow_id=flow)
        if self.labels_from_inputs and inputs:
            from urllib.parse import urlencode

            url += "?" + urlencode([("labels", f"{k}:{v}") for k, v in inputs.items()])
        if inputs:
            body, content_type = _multipart(inputs)
            response = self._make_request("post", url, body, content_type).json()
        else:
            response = self._make_request("post", url).json()
        if "id" not in response:
            raise Exception("Starting execution failed: " + str(response))
        result = FlowExecution(response["id"])
        if not self.wait_for_completion:
            result.status = "STARTED"
            return result
        while True:
            time.sleep(self.poll_interval)
            state = self.check_status(result.execution_id).json()["state"]["current"]
            if state in self._ENDED:
                result.status = state
                result.log = self.get_logs(result.execution_id).text
                return result


def _multipart(inputs):
    """`inputs` as a multipart form: text fields, and files given as
    `(file name, file object, content type)`."""
    boundary = "kestra-" + os.urandom(12).hex()
    parts = []
    for name, value in inputs.items():
        if isinstance(value, tuple):
            filename, handle, content_type = (tuple(value) + (None, None))[:3]
            data = handle.read() if hasattr(handle, "read") else handle
            data = data.encode() if isinstance(data, str) else data
            head = (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type or 'application/octet-stream'}\r\n"
            )
        else:
            data = str(value).encode()
            head = f'Content-Disposition: form-data; name="{name}"\r\n'
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


CONTEXT_FILE = ".kestra-execution-context.json"


def _wrap(value):
    if isinstance(value, dict):
        return ExecutionContext(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class ExecutionContext(Mapping):
    """Read-only view over an execution context, with attribute access."""

    __slots__ = ("_data",)

    def __init__(self, data):
        self._data = data

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"'{name}' is not available in the execution context") from None

    def __getitem__(self, name):
        return _wrap(self._data[name])

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def to_dict(self):
        return self._data


def load_execution_context(path=None):
    """The execution context from `path`, `KESTRA_EXECUTION_CONTEXT_FILE`,
    `.kestra-execution-context.json` or the base64 `KESTRA_CONTEXT`."""
    path = path or os.environ.get("KESTRA_EXECUTION_CONTEXT_FILE", CONTEXT_FILE)
    if os.path.exists(path):
        with open(path, "r", encoding="utf-8") as file:
            return ExecutionContext(json.load(file))
    encoded = os.environ.get("KESTRA_CONTEXT")
    if encoded:
        return ExecutionContext(json.loads(base64.b64decode(encoded)))
    raise FileNotFoundError(
        f"No Kestra execution context found: '{path}' does not exist and the "
        "KESTRA_CONTEXT environment variable is not set."
    )


_context = None


def __getattr__(name):
    # `kestra.context`, loaded on first use.
    global _context
    if name == "context":
        if _context is None:
            _context = load_execution_context()
        return _context
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
