"""Who changed what, when and why: the history of conversions and of the configuration.

Rows are written by PostgreSQL triggers (django-pghistory): every insert,
every update of a tracked field and every delete of a tracked model adds an
event row in the same statement, whatever path changed it (a save, a bulk
insert, a conditional UPDATE). Chosen over django-simple-history for its write
cost in the settle batch (README, "History"). On SQLite (the embedded
default) there are no triggers and no history.

The who and why come from the context the change ran in (:func:`context`):
``source`` (postback, manager, import or system: no context), the user and
a comment. Changes made through the admin and the API run in the manager's
context (:class:`ManagerChangesMiddleware`).
"""

import contextlib
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

import pghistory
from django.apps import apps
from django.db import connection, models

POSTBACK = "postback"
MANAGER = "manager"
IMPORT = "import"
SYSTEM = "system"
SOURCES = (POSTBACK, MANAGER, IMPORT, SYSTEM)
# Shown as changed, never as their values: whoever reads a history may not read these.
SECRET_FIELDS = frozenset({"secure"})
SECRET_MASK = "••••••"
EMPTY = ("", None, [], {})
# Paths where staff change things, and the methods that change them.
MANAGED_PATHS = ("/admin/", "/api/")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def context(source: str, user=None, comment: str = ""):
    """The context of the changes made inside it (a context manager).

    Nested inside another, it adds to that one: the changes of a request
    share one context, and what is added last (a comment, an import's source)
    is what its entries show. Nothing on other databases than PostgreSQL
    (pghistory would put PostgreSQL's set_config before their statements).
    """
    if connection.vendor != "postgresql":
        return contextlib.nullcontext()
    metadata = {"source": source}
    if user is not None and getattr(user, "is_authenticated", False):
        metadata.update(user=user.pk, username=user.get_username())
    if comment:
        metadata["comment"] = comment
    return pghistory.context(**metadata)


def attribute(user) -> None:
    """Name ``user`` in the current context, if one is open (an API token's user)."""
    if user is not None and getattr(user, "is_authenticated", False):
        pghistory.context(user=user.pk, username=user.get_username())


class ManagerChangesMiddleware:
    """Changes made through the admin and the API are a manager's, by the signed-in user.

    Only unsafe methods under MANAGED_PATHS open a context: the machine
    endpoints (/click, /postback) never pay for one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method not in UNSAFE_METHODS or not request.path.startswith(MANAGED_PATHS):
            return self.get_response(request)
        with context(MANAGER, getattr(request, "user", None)):
            return self.get_response(request)


def _plain(value):
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _masked(changes: dict) -> dict:
    """Secret fields' values replaced by a mask (an empty one stays empty: none was set)."""
    return {
        name: [SECRET_MASK if value else value for value in pair] if name in SECRET_FIELDS else pair
        for name, pair in changes.items()
    }


def entries(events: Iterable[models.Model], fields: Iterable[str]) -> list[dict]:
    """The events of one object, oldest first, as DESIGN.md's history entries.

    Each entry: ``at``, ``user`` (username; None for the system), ``source``,
    ``changes`` (``{field: [old, new]}``, against the event before it; a
    creation's old values are None, a deletion's new ones) and ``comment``.
    An event that changed none of ``fields`` is left out; SECRET_FIELDS show
    that they changed, not their values.
    """
    fields = list(fields)
    out, before = [], None
    for event in events:
        now = {name: _plain(getattr(event, name)) for name in fields}
        if event.pgh_label == "delete":
            changes = {name: [value, None] for name, value in now.items() if value not in EMPTY}
        elif before is None:
            changes = {name: [None, value] for name, value in now.items() if value not in EMPTY}
        else:
            changes = {
                name: [before[name], now[name]] for name in fields if before[name] != now[name]
            }
        before = now
        if not changes:
            continue
        metadata = event.pgh_context.metadata if event.pgh_context_id else {}
        out.append(
            {
                "at": event.pgh_created_at.isoformat(),
                "user": metadata.get("username"),
                "source": metadata.get("source", SYSTEM),
                "changes": _masked(changes),
                "comment": metadata.get("comment", ""),
            }
        )
    return out


def event_model_of(model: type[models.Model]) -> type[models.Model] | None:
    """The event model pghistory made for ``model`` (``<Model>Event``), if it is tracked."""
    try:
        return apps.get_model(model._meta.app_label, f"{model.__name__}Event")
    except LookupError:
        return None


def history_of(obj: models.Model) -> list[dict]:
    """The history of ``obj`` ([] for a model that is not tracked)."""
    event_model = event_model_of(obj.__class__)
    if event_model is None:
        return []
    fields = [
        field.name
        for field in event_model._meta.fields
        if not field.name.startswith("pgh_") and field.name != "id"
    ]
    events = (
        event_model.objects.filter(pgh_obj_id=obj.pk)
        .select_related("pgh_context")
        .order_by("pgh_id")
    )
    return entries(events, fields)


def track(*, exclude: Iterable[str] = ()) -> pghistory.track:
    """Track a configuration model: creation, every update and deletion (``exclude`` left out).

    The update trigger has no condition: a condition names columns, and
    PostgreSQL refuses to change the type of a column a trigger's condition
    names (an ALTER run outside Django's migrations, which pgtrigger handles).
    An update that changed nothing shown adds a row that the history skips.
    """
    return pghistory.track(
        pghistory.InsertEvent(),
        pghistory.UpdateEvent(condition=None),
        pghistory.DeleteEvent(),
        exclude=list(exclude) or None,
    )
