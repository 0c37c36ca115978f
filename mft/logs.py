"""Log formats of every process: readable lines, or one JSON object per line.

Each record gets the process role (web, gateway, worker, beat, cli) and a correlation id:
the request, session or task in hand (`mft.correlation`), else the process's own
`role:pid`, so every line carries one. A small formatter rather than python-json-logger:
the fields are fixed, and twenty lines do not justify another dependency to pin.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mft import correlation

FORMATS = ("plain", "json")


def _role_from_argv(argv: list[str]) -> str:
    """Return the role a process plays, judged from how it was started."""
    program = Path(argv[0]).as_posix() if argv else ""
    if "gunicorn" in program:
        return "web"
    if "celery" in program:
        return "beat" if "beat" in argv else "worker"
    for command, role in (("run_gateway", "gateway"), ("runserver", "web")):
        if command in argv:
            return role
    return "cli"


def role() -> str:
    """Return this process's role."""
    return _role_from_argv(sys.argv)


class ContextFilter(logging.Filter):
    """Add the role, the correlation id and the task id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = role()
        record.__dict__.update(
            role=own, task_id=correlation.current_task() or "",
            correlation_id=correlation.current() or f"{own}:{os.getpid()}")
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": getattr(record, "role", role()),
            "pid": record.process,
            "correlation_id": getattr(record, "correlation_id", None),
        }
        task_id = getattr(record, "task_id", "")
        if task_id:
            entry["task_id"] = task_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def config(log_format: str, level: str) -> dict[str, Any]:
    """Return the dictConfig for a format (`plain` or `json`) and a level."""
    formatter: dict[str, Any] = (
        {"()": "mft.logs.JsonFormatter"} if log_format == "json" else
        {"format": "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "mft.logs.ContextFilter"}},
        "formatters": {"main": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "main",
                                 "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level.upper()},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
