"""The statistics counters (conversions.models.OfferStat, TrafficStat, SubStat).

The triggers of migration 0008 append a row per key and statement; ``merge``
folds each key's rows into one, so a table grows with its keys (hours x
offers x ...), not with the statements that wrote them. Reports sum a key's
rows whether they are merged or not: merging changes no figure.

PostgreSQL only (SQLite has no statement triggers; reports read raw rows).
"""

from django.db import connection, transaction

from conversions.models import OfferStat, SubStat, TrafficStat

ROLLUPS = (OfferStat, TrafficStat, SubStat)
METRICS = ("clicks", "conversions", "revenue", "payout")
# pg_advisory_xact_lock key of the merge ("stats" in ASCII): one at a time.
LOCK_ID = 0x7374617473


def enabled() -> bool:
    return connection.vendor == "postgresql"


def _merge_sql(model) -> str:
    table = model._meta.db_table
    key = ", ".join(model.KEY)
    sums = ", ".join(f"sum({m})" for m in METRICS)
    nonzero = " OR ".join(f"sum({m}) <> 0" for m in METRICS)
    # One statement: its snapshot sees the unmerged rows and every row of their
    # keys; a row appended meanwhile by another transaction is left for the next
    # merge. Keys whose rows cancel out (a status moved away) disappear.
    return (
        f"WITH gone AS (DELETE FROM {table} WHERE ({key}) IN"
        f" (SELECT {key} FROM {table} WHERE NOT merged)"
        f" RETURNING {key}, {', '.join(METRICS)})"
        f" INSERT INTO {table} ({key}, {', '.join(METRICS)}, merged)"
        f" SELECT {key}, {sums}, true FROM gone GROUP BY {key} HAVING {nonzero}"
    )


def merge() -> dict[str, int]:
    """Fold the rows appended since the last merge into one row per key; returns rows written."""
    if not enabled():
        return {}
    written = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_ID])
        if not cursor.fetchone()[0]:
            return {}
        for model in ROLLUPS:
            cursor.execute(_merge_sql(model))
            written[model.__name__] = cursor.rowcount
    return written
