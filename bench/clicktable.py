"""Clicks loaded straight into their table with COPY: the bulk data of the data-size cases.

The columns are the Click model's concrete fields, so a schema change follows:
a column the caller does not fill takes the field's default (empty for a blank
text field, NULL for a nullable one), and a required column with neither makes
the loader fail before it writes anything. Clickids come from the product's
``new_clickid``, given the click's time when it takes ``at=`` (clickids that
carry their time). Rows are written in chunks, each chunk in time order over
the span (as a table filled day by day holds them), each chunk one transaction,
with the table's indexes, constraints and triggers in place, as in production.
The id sequence is moved past the loaded ids, so the product's own inserts go on.
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


class ClickRows:
    """COPY lines for conversions_click, in the model's column order."""

    # Filled by the loader itself for every row.
    OWN = ("id", "clickid", "created_at")

    def __init__(self) -> None:
        from conversions.models import Click

        fields = Click._meta.concrete_fields
        self.table = Click._meta.db_table
        self.columns = [f.column for f in fields]
        self.index = {f.attname: i for i, f in enumerate(fields)}
        self.defaults: list[str | None] = []
        for f in fields:
            if f.attname in self.OWN:
                self.defaults.append(None)
            elif f.null:
                self.defaults.append("\\N")
            elif f.has_default() and not callable(f.default):
                self.defaults.append(_copy_text(f.get_default()))
            elif f.blank and f.get_internal_type() in ("CharField", "TextField"):
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

    def line(self, click_id: int, clickid: str, at: datetime, values: dict) -> str:
        row = self.defaults.copy()
        index = self.index
        row[index["id"]] = str(click_id)
        row[index["clickid"]] = clickid
        row[index["created_at"]] = at.isoformat()
        for name, value in values.items():
            row[index[name]] = value if type(value) is str else _copy_text(value)
        return "\t".join(row) + "\n"


def copy_clicks(
    count: int,
    values: Callable[[int, datetime], dict],
    *,
    now: datetime,
    span_s: float,
    rng,
    chunk: int = CHUNK,
    after_chunk: Callable | None = None,
    keep_every: int = 0,
) -> dict:
    """COPY ``count`` clicks into the table after its highest id.

    ``values(click_id, at)`` gives a click's other columns by attribute name
    (``offer_id``, ``partner_id``, ``sub1``...; strings are written as given,
    so bench-made text only). ``created_at`` is spread over the ``span_s``
    seconds before ``now``. ``after_chunk(cursor)`` runs in each chunk's
    transaction after its COPY (to load rows that refer to the clicks).
    ``keep_every``: every n-th clickid is returned in ``kept`` (a sample spread
    evenly over the loaded rows). Returns ids, seconds and the kept clickids.
    """
    from django.db import connection, transaction

    rows = ClickRows()
    required = rows.required()
    make_clickid = clickid_maker()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {rows.table}")
        first_id = cursor.fetchone()[0]
    kept: list[str] = []
    started = time.monotonic()
    done = 0
    end = now.timestamp()
    while done < count:
        n = min(chunk, count - done)
        buffer = io.StringIO()
        stamps = sorted(end - rng.random() * span_s for _ in range(n))
        for i, stamp in enumerate(stamps):
            click_id = first_id + done + i
            at = datetime.fromtimestamp(stamp, UTC)
            clickid = make_clickid(at)
            if keep_every and click_id % keep_every == 0:
                kept.append(clickid)
            given = values(click_id, at)
            if required and not done and not i and (missing := required - given.keys()):
                raise RuntimeError(f"clicks need {sorted(missing)}: give them in values()")
            buffer.write(rows.line(click_id, clickid, at, given))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
            with cursor.copy(rows.sql) as copy:
                copy.write(buffer.getvalue())
            if after_chunk:
                after_chunk(cursor)
        done += n
    if count:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
                [rows.table, first_id + count - 1],
            )
    return {
        "first_id": first_id,
        "count": count,
        "seconds": time.monotonic() - started,
        "kept": kept,
    }
