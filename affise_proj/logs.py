"""Log lines that say what they concern: postback id, clickid, Celery task id.

What a line concerns is kept in a context variable: the request middleware
starts each request with an empty one, the accept path adds the postback's id
and clickid (``bind``), and each Celery task starts with its task id, its
name and the ids its arguments name (``task_prerun``). ContextFilter copies it
onto every record the console handler writes; with LOG_FORMAT=json,
JsonFormatter writes one JSON object per line with those fields, so one
postback can be followed from its accept, through its batch's checks and
settle, to its partner deliveries with one search (its id, or its clickid).

Celery configures the worker's own logging (its --loglevel and handlers);
``after_setup_logger`` gives those handlers the same filter and, for json,
the same formatter.
"""

import contextvars
import logging
from collections.abc import Callable
from types import MappingProxyType

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

# Never mutated: bind() sets a new mapping, so one request's fields never leak into another's.
_context: contextvars.ContextVar = contextvars.ContextVar(
    "log_context", default=MappingProxyType({})
)


def bind(**fields) -> None:
    """Add fields to every later line of this request or task (ended by the middleware/signal)."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v not in (None, "")}})


def current() -> dict:
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (a field the call set itself wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(_JsonFormatter):
    """One JSON object per line: time, level, logger, message, the bound fields, any extra."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("fmt", "%(asctime)s %(levelname)s %(name)s %(message)s")
        kwargs.setdefault(
            "rename_fields", {"asctime": "time", "levelname": "level", "name": "logger"}
        )
        kwargs.setdefault("timestamp", False)
        super().__init__(*args, **kwargs)


def request_context(get_response: Callable) -> Callable:
    """Middleware: each request's lines carry only what this request binds."""

    def middleware(request):
        token = _context.set({})
        try:
            return get_response(request)
        finally:
            _context.reset(token)

    return middleware


# Task arguments that name postbacks (check tasks, settle) or a delivery.
_ID_LISTS = {"ids"}


def task_started(task_id=None, task=None, args=(), kwargs=None, **_) -> None:
    """Celery task_prerun: the task's lines carry its id, name and the postbacks it works on."""
    fields = {"task_id": task_id, "task": getattr(task, "name", None)}
    kwargs = kwargs or {}
    name = fields["task"] or ""
    ids = kwargs.get("ids")
    if ids is None and args:
        # check_<name>(ids) and settle(results, ids): the last list of strings.
        lists = [a for a in args if isinstance(a, list) and all(isinstance(x, str) for x in a)]
        ids = lists[-1] if lists and (".check_" in name or name.endswith(".settle")) else None
    if ids:
        fields["postback_ids"] = list(ids)
    if name.endswith(".deliver") and args:
        fields["delivery_id"] = args[0]
    _context.set({k: v for k, v in fields.items() if v is not None})


def task_finished(**_) -> None:
    _context.set({})


def celery_handlers(logger: logging.Logger, **_) -> None:
    """Celery after_setup_logger/after_setup_task_logger: our filter (and json) on its handlers."""
    from django.conf import settings

    for handler in logger.handlers:
        handler.addFilter(ContextFilter())
        if settings.LOG_FORMAT == "json":
            handler.setFormatter(JsonFormatter())
