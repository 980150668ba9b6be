"""Retention and purge of clicks and postback rows; conversions are kept.

PostgreSQL (partitions.py): the beat keeps day partitions made ahead, drops
whole day partitions once their day is older than the retention (a row lives
its retention and at most a day more: no row-by-row deletes of the day
partitions), and deletes by date from the DEFAULT partition. SQLite (plain
tables): deletes by date.

A postback that is not final (received, processing) is never removed: its
partition is dropped, the row itself moved to the default partition first,
and removed by date once it is final and old.

Re-queue records (PostbackRequeue) go with their postbacks.
"""

import logging
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from conversions.models import Click, Postback, PostbackRequeue

from . import partitions
from .partitions import CLICKS, POSTBACKS, UNFINISHED

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of partition changes ("parts" in ASCII): one at a time.
LOCK_ID = 0x7061727473
# A partition change waits this long for its lock, then gives up until the next run:
# it must never hold up the inserts queued behind it for long.
LOCK_TIMEOUT = "5s"


def _partitioned() -> bool:
    return connection.vendor == "postgresql"


def _change(work, *args) -> object:
    """One partition change in its own transaction, or None if another is running or a lock
    was not had in time (the next run does it)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_ID])
            if not cursor.fetchone()[0]:
                return None
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            return work(cursor, *args)
    except DatabaseError as exc:
        log.warning("partition change %s%s not done: %s", work.__name__, args[1:], exc)
        return None


def make_ahead(days_ahead: int | None = None) -> list[str]:
    """Day partitions for today and the days ahead (PostgreSQL); the names made."""
    if not _partitioned():
        return []
    ahead = settings.PARTITION_DAYS_AHEAD if days_ahead is None else days_ahead
    first = partitions.today()
    made = []
    for table in partitions.TABLES:
        for day in range(first, first + ahead + 1):
            if _change(partitions.create, table, day):
                made.append(table.partition(day))
    return made


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def remove_before(clicks_before: datetime, postbacks_before: datetime, *, whole_days: bool):
    """Remove clicks made and postback rows received before these times; counts by kind.

    PostgreSQL: day partitions wholly before drop. ``whole_days`` (retention):
    only the default partition is also cleared by date; else (purge) every
    row before the time, in whatever partition.
    """
    removed = {"click_partitions": 0, "postback_partitions": 0, "clicks": 0, "postbacks": 0}
    removed["postbacks_kept"] = 0
    for table, before, kind in (
        (CLICKS, clicks_before, "click"),
        (POSTBACKS, postbacks_before, "postback"),
    ):
        if _partitioned():
            with connection.cursor() as cursor:
                days = partitions.day_partitions(cursor, table)
            for day in sorted(days):
                # A day partition holds rows up to the midnight that ends its day.
                if _midnight(partitions.EPOCH + timedelta(days=day + 1)) > before:
                    continue
                kept = _change(partitions.drop, table, day)
                if kept is not None:
                    removed[f"{kind}_partitions"] += 1
                    removed["postbacks_kept"] += kept if kind == "postback" else 0
        removed[f"{kind}s"] += _delete(table, before, only_default=whole_days and _partitioned())
    _forget_requeues()
    return removed


def _delete(table, before: datetime, *, only_default: bool) -> int:
    """Rows before ``before`` by date (not an unfinished postback)."""
    if not _partitioned():
        if table is CLICKS:
            return Click.objects.filter(created_at__lt=before)._raw_delete(Click.objects.db)
        old = Postback.objects.filter(received_at__lt=before).exclude(state__in=UNFINISHED)
        return old.delete()[1].get(Postback._meta.label, 0)
    name = table.default if only_default else table.name
    keep = f" AND NOT ({table.keep})" if table.keep else ""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {name} WHERE {table.time} < %s{keep}", [before])
        return cursor.rowcount


def _forget_requeues() -> None:
    """Re-queue records whose postback is gone (no foreign key keeps them in step)."""
    if not _partitioned():
        return
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {PostbackRequeue._meta.db_table} r WHERE NOT EXISTS"
            f" (SELECT 1 FROM {Postback._meta.db_table} p WHERE p.id = r.postback_id)"
        )


def apply_retention(now: datetime | None = None) -> dict:
    """CLICK_RETENTION_DAYS / POSTBACK_RETENTION_DAYS: what the beat removes."""
    now = now or timezone.now()
    return remove_before(
        now - timedelta(days=settings.CLICK_RETENTION_DAYS),
        now - timedelta(days=settings.POSTBACK_RETENTION_DAYS),
        whole_days=True,
    )


def maintain() -> dict:
    """The beat's run: partitions ahead, then retention."""
    made = make_ahead()
    removed = apply_retention()
    return {"partitions_made": len(made), **removed}


def purge(before: date) -> dict:
    """``manage.py purge --before``: every click and postback row before that UTC day, at once."""
    at = _midnight(before)
    return remove_before(at, at, whole_days=False)
