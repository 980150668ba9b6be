"""Clicks loaded straight into their table with COPY: the bulk data of the data-size cases.

The columns are the Click model's concrete fields, so a schema change follows:
a column the caller does not fill takes the field's default (empty for a blank
text field, NULL for a nullable one; an auto-increment key its sequence), and
a required column with neither makes the loader fail before it writes
anything. Clickids come from the product's ``new_clickid``, given the click's
time when it takes ``at=`` (clickids that name their day). Where the table is
partitioned by day (conversions/lifecycle/partitions.py), the day partitions
of the span are made first, as the beat made each of them ahead of its day:
the loaded table is laid out as one filled day by day. Rows are written in
chunks, each chunk in time order over the span, each chunk one transaction,
with the table's indexes, constraints and triggers in place, as in production.
"""

import inspect
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

CHUNK = 500_000
# A bulk load's triggers group whole chunks: room to do it in memory.
WORK_MEM = "256MB"


def _copy_text(value) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict | list):
        value = json.dumps(value)
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def clickid_maker() -> Callable[[datetime], str]:
    """``new_clickid`` as a function of the click's time (ignored when it takes none)."""
    from conversions.models import new_clickid

    if "at" in inspect.signature(new_clickid).parameters:
        return lambda at: new_clickid(at=at)
    return lambda at: new_clickid()


class ModelRows:
    """COPY lines for a model's table, in the order of its concrete fields.

    A field not given takes its default: NULL when nullable, the field's
    default (a callable one called once: ``dict`` gives ``{}``), empty for a
    blank text field; an auto-increment key is left to its sequence. A field
    with none of these (and every time field without a constant default) must
    be given in each row's values, by attribute name.
    """

    OWN: tuple[str, ...] = ()

    def __init__(self, model) -> None:
        fields = [
            f
            for f in model._meta.concrete_fields
            if f.get_internal_type() not in ("AutoField", "BigAutoField", "SmallAutoField")
        ]
        self.table = model._meta.db_table
        self.columns = [f.column for f in fields]
        self.index = {f.attname: i for i, f in enumerate(fields)}
        self.defaults: list[str | None] = []
        for f in fields:
            kind = f.get_internal_type()
            if f.attname in self.OWN:
                self.defaults.append(None)
            elif f.null:
                self.defaults.append("\\N")
            elif f.has_default() and not (
                callable(f.default) and kind in ("DateTimeField", "DateField", "CharField")
            ):
                self.defaults.append(_copy_text(f.get_default()))
            elif f.blank and kind in ("CharField", "TextField"):
                self.defaults.append("")
            else:
                self.defaults.append(None)  # the caller's ``values`` must give it
        self.sql = f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN"

    def required(self) -> set[str]:
        return {
            attname
            for attname, i in self.index.items()
            if self.defaults[i] is None and attname not in self.OWN
        }

    def row(self, values: dict) -> str:
        row = self.defaults.copy()
        index = self.index
        for name, value in values.items():
            row[index[name]] = value if type(value) is str else _copy_text(value)
        if None in row:
            missing = sorted(n for n, i in index.items() if row[i] is None)
            raise RuntimeError(f"{self.table} needs {missing}")
        return "\t".join(row) + "\n"


class ClickRows(ModelRows):
    """COPY lines for conversions_click: clickid and created_at made by the loader."""

    OWN = ("clickid", "created_at")

    def __init__(self) -> None:
        from conversions.models import Click

        super().__init__(Click)

    def line(self, clickid: str, at: datetime, values: dict) -> str:
        row = self.defaults.copy()
        index = self.index
        row[index["clickid"]] = clickid
        row[index["created_at"]] = at.isoformat()
        for name, value in values.items():
            row[index[name]] = value if type(value) is str else _copy_text(value)
        return "\t".join(row) + "\n"


def make_day_partitions(start: datetime, end: datetime) -> int:
    """The click table's day partitions from ``start``'s day to ``end``'s (PostgreSQL,
    partitioned table only); how many were made."""
    from django.db import connection, transaction

    from conversions.lifecycle import partitions

    if connection.vendor != "postgresql":
        return 0
    made = 0
    with connection.cursor() as cursor:
        if not partitions.is_partitioned(cursor, partitions.CLICKS):
            return 0
    for day in range(partitions.day_number(start.date()), partitions.day_number(end.date()) + 1):
        # One transaction a day, as the beat makes them (retention.make_ahead).
        with transaction.atomic(), connection.cursor() as cursor:
            made += partitions.create(cursor, partitions.CLICKS, day)
    return made


def copy_clicks(
    count: int,
    values: Callable[[str, datetime], dict],
    *,
    now: datetime,
    span_s: float,
    rng,
    chunk: int = CHUNK,
    after_chunk: Callable | None = None,
    keep_every: int = 0,
) -> dict:
    """COPY ``count`` clicks into the table.

    ``values(clickid, at)`` gives a click's other columns by attribute name
    (``offer_id``, ``partner_id``, ``sub1``...; strings are written as given,
    so bench-made text only). ``created_at`` is spread over the ``span_s``
    seconds before ``now``. ``after_chunk(cursor)`` runs in each chunk's
    transaction after its COPY (to load rows that refer to the clicks).
    ``keep_every``: every n-th clickid is returned in ``kept`` (a sample spread
    evenly over the loaded rows). Returns the count, seconds (partitions made
    included) and the kept clickids.
    """
    from django.db import connection, transaction

    rows = ClickRows()
    required = rows.required()
    make_clickid = clickid_maker()
    started = time.monotonic()
    end = now.timestamp()
    partitions = make_day_partitions(datetime.fromtimestamp(end - span_s, UTC), now)
    kept: list[str] = []
    done = 0
    while done < count:
        n = min(chunk, count - done)
        buffer = io.StringIO()
        stamps = sorted(end - rng.random() * span_s for _ in range(n))
        for i, stamp in enumerate(stamps):
            at = datetime.fromtimestamp(stamp, UTC)
            clickid = make_clickid(at)
            if keep_every and (done + i) % keep_every == 0:
                kept.append(clickid)
            given = values(clickid, at)
            if required and not done and not i and (missing := required - given.keys()):
                raise RuntimeError(f"clicks need {sorted(missing)}: give them in values()")
            buffer.write(rows.line(clickid, at, given))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            with cursor.copy(rows.sql) as copy:
                copy.write(buffer.getvalue())
            if after_chunk:
                after_chunk(cursor)
        done += n
    return {
        "count": count,
        "seconds": time.monotonic() - started,
        "partitions_made": partitions,
        "kept": kept,
    }
