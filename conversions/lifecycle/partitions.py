"""Day partitions of the click and postback tables on PostgreSQL.

Both tables are partitioned by RANGE of their primary key, and both keys
start with the row's time:

- ``conversions_click`` by ``clickid``: 4 hex digits of the UTC day number,
  then 80 random bits (``new_clickid``);
- ``conversions_postback`` by ``id``: 12 hex digits of the UTC millisecond,
  then 64 random bits (``new_postback_id``).

So a UTC day is one range of keys, and:

- a lookup by key (the checks' ``clickid IN (...)``, the click buffer flush's
  ``ON CONFLICT (clickid)``, the admin's and the API's pages, the test
  postback) names the partition by itself: PostgreSQL prunes to one
  partition with no second condition to keep in step;
- the primary key is unique across partitions (PostgreSQL enforces a unique
  constraint of a partitioned table only when it contains the partition key;
  here it is the key), so two flushes or requests inserting the same clickid
  store one row (tests/lifecycle/test_partitions.py);
- the key columns are ``COLLATE "C"``: ranges of hex text must compare byte by
  byte whatever the database's collation, and pruning needs the query's
  collation to be the partition key's.

**Day, not week.** At the sizes of docs/scaling.md (860 M clicks a day at
10,000 clicks/s) a week would be a 6 G row partition whose indexes are
rebuilt, vacuumed and cached as one; a day keeps each partition's indexes a
seventh of that, retention as fine as a day (it drops at most a day more
than it must keep), and 90 days of retention is 90-odd partitions a table.
Pruning by a constant key is done at plan time by a binary search of the
bounds: measured on this machine's PostgreSQL 15 (tests/lifecycle/
test_partitions.py prints it with ``-s``), planning a lookup by clickid over
100 day partitions takes about as long as over 14.

**The DEFAULT partition** takes every row whose day has no partition: rows
that arrive while the beat was down for days (no row is lost; when the beat
makes the day's partition it moves them into it), postback ids not made by
``new_postback_id``, and clickids made before clickids carried their day (24
random hex digits: their "day" falls anywhere from 1970 to 2149, mostly on
days that never get a partition). Partitions are made for today and ahead
only, never for past days, so a click of the old format sits in a partition
no earlier than its own day and is never dropped before its retention. Rows
of the default partition are removed by date (``DELETE``), as on SQLite.

Nothing here imports the models: the migrations use it too.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DAY_MS = 86_400_000
EPOCH = date(1970, 1, 1)
# A postback that is not final is never removed: processing still owes it an outcome.
UNFINISHED = ("received", "processing")


@dataclass(frozen=True)
class Table:
    name: str
    key: str  # the partition key: the primary key
    key_length: int  # its varchar length
    time: str  # the time column by which rows of the default partition are removed
    digits: int  # the key starts with this many hex digits of its time
    per_day: int  # time units a day: 1 (a day number) or DAY_MS (milliseconds)
    keep: str = ""  # rows never removed (SQL condition)

    def bound(self, day: int) -> str:
        """The smallest key of UTC day number ``day``."""
        return f"{day * self.per_day:0{self.digits}x}"

    def partition(self, day: int) -> str:
        return f"{self.name}_p{EPOCH + timedelta(days=day):%Y%m%d}"

    @property
    def default(self) -> str:
        return f"{self.name}_default"

    def day_of(self, partition: str) -> int | None:
        """The day number a partition of this table is for (None: not a day partition)."""
        prefix = f"{self.name}_p"
        if not partition.startswith(prefix):
            return None
        try:
            return (datetime.strptime(partition[len(prefix) :], "%Y%m%d").date() - EPOCH).days
        except ValueError:
            return None


CLICKS = Table("conversions_click", "clickid", 24, "created_at", digits=4, per_day=1)
POSTBACKS = Table(
    "conversions_postback",
    "id",
    32,
    "received_at",
    digits=12,
    per_day=DAY_MS,
    keep="state IN ({})".format(", ".join(f"'{s}'" for s in UNFINISHED)),
)
TABLES = (CLICKS, POSTBACKS)


def day_number(day: date) -> int:
    return (day - EPOCH).days


def today() -> int:
    return day_number(datetime.now(UTC).date())


def is_partitioned(cursor, table: Table) -> bool:
    cursor.execute(
        "SELECT c.relkind = 'p' FROM pg_class c WHERE c.oid = to_regclass(%s)",
        [table.name],
    )
    row = cursor.fetchone()
    return bool(row and row[0])


def day_partitions(cursor, table: Table) -> dict[int, str]:
    """The table's day partitions by day number."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(%s)",
        [table.name],
    )
    found = {}
    for (name,) in cursor.fetchall():
        day = table.day_of(name)
        if day is not None:
            found[day] = name
    return found


def _columns(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [table],
    )
    return [f'"{name}"' for (name,) in cursor.fetchall()]


def _range(table: Table, day: int) -> str:
    return f"{table.key} >= '{table.bound(day)}' AND {table.key} < '{table.bound(day + 1)}'"


def create(cursor, table: Table, day: int) -> bool:
    """Make the day's partition (False: it is there); rows of its day in the default move in.

    The partition is made apart and attached: ATTACH takes a lighter lock on
    the table than CREATE ... PARTITION OF, so clicks and postbacks keep being
    inserted meanwhile (rows for the default partition wait for the move).
    The rows moved are counted already: the statistics triggers are the
    table's, and rows written into a partition directly do not fire them.
    """
    name = table.partition(day)
    if day in day_partitions(cursor, table):
        return False
    columns = ", ".join(_columns(cursor, table.name))
    cursor.execute(
        f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        " INCLUDING STORAGE)"
    )
    # The partition's bounds as a constraint: ATTACH then need not scan it.
    cursor.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK ({_range(table, day)})")
    cursor.execute(f"LOCK TABLE {table.default} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(
        f"INSERT INTO {name} ({columns}) SELECT {columns} FROM {table.default}"
        f" WHERE {_range(table, day)}"
    )
    cursor.execute(f"DELETE FROM {table.default} WHERE {_range(table, day)}")
    cursor.execute(
        f"ALTER TABLE {table.name} ATTACH PARTITION {name}"
        f" FOR VALUES FROM ('{table.bound(day)}') TO ('{table.bound(day + 1)}')"
    )
    cursor.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range")
    return True


def drop(cursor, table: Table, day: int) -> int:
    """Drop a day partition whole; rows it must keep (``table.keep``) go to the default first.

    Returns how many rows were kept.
    """
    name = table.partition(day)
    cursor.execute(f"ALTER TABLE {table.name} DETACH PARTITION {name}")
    kept = 0
    if table.keep:
        columns = ", ".join(_columns(cursor, table.name))
        # Its range is no partition's now: the rows go to the default partition.
        cursor.execute(
            f"INSERT INTO {table.name} ({columns}) SELECT {columns} FROM {name} WHERE {table.keep}"
        )
        kept = cursor.rowcount
    cursor.execute(f"DROP TABLE {name}")
    return kept


def partition_existing(
    cursor, table: Table, days: range, *, replaces_unique: str = "", drop_columns: tuple = ()
) -> None:
    """Turn the plain table into one partitioned by day, its rows copied in (a migration's step).

    Indexes, foreign keys and triggers are made again on the new table under
    their names. ``replaces_unique``: a unique constraint the new primary key
    (the partition key) takes the place of; ``drop_columns``: columns the
    model no longer has (the old primary key). Days of ``days`` get a
    partition; every other row goes to the default partition.
    """
    t = table.name
    old = f"{t}_unpartitioned"
    for column in drop_columns:
        cursor.execute(f"ALTER TABLE {t} DROP COLUMN {column}")
    if replaces_unique:
        cursor.execute(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {replaces_unique}")
    cursor.execute(
        f'ALTER TABLE {t} ALTER COLUMN {table.key} TYPE varchar({table.key_length}) COLLATE "C"'
    )
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND tablename = %s AND indexname <> %s",
        [t, f"{t}_pkey"],
    )
    indexes = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = to_regclass(%s) AND contype = 'f'",
        [t],
    )
    foreign_keys = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
        " WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal",
        [t],
    )
    triggers = [row[0] for row in cursor.fetchall()]
    columns = ", ".join(_columns(cursor, t))

    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    cursor.execute(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_pkey")
    cursor.execute(f"ALTER TABLE {t} RENAME TO {old}")
    cursor.execute(
        f"CREATE TABLE {t} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        f" INCLUDING STORAGE) PARTITION BY RANGE ({table.key})"
    )
    cursor.execute(f"CREATE TABLE {table.default} PARTITION OF {t} DEFAULT")
    for day in days:
        cursor.execute(
            f"CREATE TABLE {table.partition(day)} PARTITION OF {t}"
            f" FOR VALUES FROM ('{table.bound(day)}') TO ('{table.bound(day + 1)}')"
        )
    # Before the triggers: the rows copied are counted already.
    cursor.execute(f"INSERT INTO {t} ({columns}) SELECT {columns} FROM {old}")
    cursor.execute(f"DROP TABLE {old}")
    cursor.execute(f"ALTER TABLE {t} ADD CONSTRAINT {t}_pkey PRIMARY KEY ({table.key})")
    for _, definition in indexes:
        cursor.execute(definition)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {t} ADD CONSTRAINT {name} {definition}")
    for definition in triggers:
        cursor.execute(definition)
