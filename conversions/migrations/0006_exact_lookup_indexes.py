"""Exact-match indexes on the two hottest tables, without Django's LIKE indexes.

Django adds a ``varchar_pattern_ops`` index next to every unique or db_index
CharField (and a CharField primary key) on PostgreSQL. Clickids, action ids
and postback ids are only ever matched exactly, and every click and postback
insert paid for those indexes.

On PostgreSQL nothing is rebuilt: the existing unique constraint and indexes
are renamed to the names the models now give them, and the LIKE indexes are
dropped CONCURRENTLY (so the migration is not atomic), so clicks and
postbacks keep flowing while it runs. Other databases have no LIKE indexes;
there the old indexes are replaced by the new names.
"""

import conversions.models
from django.db import migrations, models

CLICK = "conversions_click"
POSTBACK = "conversions_postback"
# (table, column, the models' new name) for the plain exact-match indexes.
RENAMED = [
    (POSTBACK, "clickid", "postback_clickid_idx"),
    (POSTBACK, "action_id", "postback_action_id_idx"),
]
LIKE_COLUMNS = [(CLICK, "clickid"), (POSTBACK, "clickid"), (POSTBACK, "action_id"), (POSTBACK, "id")]


def _pg_index(cursor, table: str, column: str, *, like: bool, unique: bool = False) -> str | None:
    """Name of the single-column btree index on ``table.column`` (LIKE opclass or not)."""
    cursor.execute(
        "SELECT i.relname FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_class t ON t.oid = x.indrelid"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]"
        " WHERE t.relname = %s AND a.attname = %s AND x.indnatts = 1 AND x.indisunique = %s"
        " AND x.indpred IS NULL"
        " AND (pg_get_indexdef(x.indexrelid) LIKE '%%pattern_ops%%') = %s",
        [table, column, unique, like],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def _pg_unique_constraint(cursor, table: str, column: str) -> str | None:
    cursor.execute(
        "SELECT c.conname FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ALL (c.conkey)"
        " WHERE t.relname = %s AND a.attname = %s AND c.contype = 'u'"
        " AND array_length(c.conkey, 1) = 1",
        [table, column],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            old = _pg_unique_constraint(cursor, CLICK, "clickid")
            if old and old != "click_clickid_unique":
                cursor.execute(
                    f"ALTER TABLE {CLICK} RENAME CONSTRAINT {quote(old)} TO click_clickid_unique"
                )
            for table, column, name in RENAMED:
                old = _pg_index(cursor, table, column, like=False)
                if old and old != name:
                    cursor.execute(f"ALTER INDEX {quote(old)} RENAME TO {name}")
            for table, column in LIKE_COLUMNS:
                if like := _pg_index(cursor, table, column, like=True):
                    cursor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {quote(like)}")
            return
        # Elsewhere (the embedded SQLite): replace the plain indexes by name.
        for table, column, name in RENAMED:
            for index in connection.introspection.get_constraints(cursor, table).items():
                old, info = index
                if info["index"] and info["columns"] == [column] and not info["unique"]:
                    cursor.execute(f"DROP INDEX {quote(old)}")
            cursor.execute(f"CREATE INDEX {name} ON {table} ({quote(column)})")


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    quote = schema_editor.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"ALTER TABLE {CLICK} RENAME CONSTRAINT click_clickid_unique"
                f" TO {CLICK}_clickid_key"
            )
            for table, column, name in RENAMED:
                cursor.execute(f"ALTER INDEX {name} RENAME TO {table}_{column}_plain")
            for table, column in LIKE_COLUMNS:
                cursor.execute(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {table}_{column}_like"
                    f" ON {table} ({quote(column)} varchar_pattern_ops)"
                )
            return
        for table, column, name in RENAMED:
            cursor.execute(f"DROP INDEX {name}")
            cursor.execute(f"CREATE INDEX {table}_{column}_plain ON {table} ({quote(column)})")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY

    dependencies = [
        ("conversions", "0005_conversion_action_id_idx"),
        ("offers", "0002_initial"),
        ("partners", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="click",
                    name="clickid",
                    field=models.CharField(
                        default=conversions.models.new_clickid, editable=False, max_length=24
                    ),
                ),
                migrations.AlterField(
                    model_name="postback",
                    name="action_id",
                    field=models.CharField(blank=True, max_length=255),
                ),
                migrations.AlterField(
                    model_name="postback",
                    name="clickid",
                    field=models.CharField(blank=True, max_length=64),
                ),
                migrations.AddIndex(
                    model_name="postback",
                    index=models.Index(fields=["clickid"], name="postback_clickid_idx"),
                ),
                migrations.AddIndex(
                    model_name="postback",
                    index=models.Index(fields=["action_id"], name="postback_action_id_idx"),
                ),
                migrations.AddConstraint(
                    model_name="click",
                    constraint=models.UniqueConstraint(
                        fields=("clickid",), name="click_clickid_unique"
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
