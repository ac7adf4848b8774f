"""Kestra's `kestra` module for scripts: outputs, logs and metrics, sent to
the engine as `::{...}::` lines on standard output."""

import json
import logging
import time


class Kestra:
    @staticmethod
    def _send(message):
        print("::" + json.dumps(message, default=str) + "::", flush=True)

    @staticmethod
    def outputs(values):
        """Sets outputs of the task (`outputs.<task>.vars.<name>`)."""
        Kestra._send({"outputs": values})

    @staticmethod
    def counter(name, value, tags=None):
        Kestra._send({"metrics": [{"name": name, "type": "counter", "value": value, "tags": tags or {}}]})

    @staticmethod
    def timer(name, duration, tags=None):
        if callable(duration):
            start = time.time()
            duration()
            duration = time.time() - start
        Kestra._send({"metrics": [{"name": name, "type": "timer", "value": duration, "tags": tags or {}}]})

    @staticmethod
    def logger():
        """A logger whose records become the task's logs, at their level."""
        logger = logging.getLogger("kestra")
        if not any(isinstance(h, _Handler) for h in logger.handlers):
            logger.addHandler(_Handler())
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        return logger


class _Handler(logging.Handler):
    LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}

    def emit(self, record):
        level = self.LEVELS.get(record.levelname, record.levelname)
        Kestra._send({"logs": [{"level": level, "message": self.format(record)}]})
