"""Structured logs: one JSON object a line (LOG_FORMAT=json) or plain text, each carrying the job id.

The worker sets the current job for the span of a task, so every line logged while it runs
(services/, diffusers warnings, database errors) says which job it belongs to.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar

current_job: ContextVar[str] = ContextVar("current_job", default="")


class JobContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = current_job.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        if getattr(record, "job_id", ""):
            entry["job_id"] = record.job_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
