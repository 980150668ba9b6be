"""Clicks and postback rows in day partitions on PostgreSQL (conversions/lifecycle/partitions.py).

The click's primary key becomes its clickid (the numeric id goes: nothing
points at a click any more, migration 0013), and on PostgreSQL both tables
are made again partitioned by range of their key, the rows copied in: today
and the days ahead get a partition, every other row goes to the DEFAULT
partition (clickids made before they carried their day, rows of past days).
Re-queue records no longer hold a foreign key into the postback table: a
day's postback rows are dropped as a whole, their re-queues with them.

SQLite keeps plain tables: there Django's own operations change the click
table, and retention deletes by date.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.migrations.operations.base import Operation

import conversions.models
from conversions.lifecycle import partitions


class ExceptOnPostgreSQL(Operation):
    """Django's operations, applied to the state everywhere and to the schema except on PostgreSQL.

    On PostgreSQL the same change is made by SQL of its own (the next step).
    """

    reduces_to_sql = False
    reversible = False

    def __init__(self, *operations):
        self.operations = operations

    def deconstruct(self):
        return self.__class__.__name__, self.operations, {}

    def state_forwards(self, app_label, state):
        for operation in self.operations:
            operation.state_forwards(app_label, state)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        for operation in self.operations:
            to = from_state.clone()
            operation.state_forwards(app_label, to)
            if schema_editor.connection.vendor != "postgresql":
                operation.database_forwards(app_label, schema_editor, from_state, to)
            from_state = to

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        raise NotImplementedError("time partitions are not undone")

    def describe(self):
        return "; ".join(operation.describe() for operation in self.operations) + " (not on PG)"


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    first = partitions.today()
    days = range(first, first + 1 + settings.PARTITION_DAYS_AHEAD)
    with schema_editor.connection.cursor() as cursor:
        partitions.partition_existing(
            cursor,
            partitions.CLICKS,
            days,
            replaces_unique="click_clickid_unique",
            drop_columns=("id",),
        )
        partitions.partition_existing(cursor, partitions.POSTBACKS, days)


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0013_conversion_keeps_its_click"),
    ]

    operations = [
        migrations.AlterField(
            model_name="postbackrequeue",
            name="postback",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=models.deletion.CASCADE,
                related_name="requeues",
                to="conversions.postback",
            ),
        ),
        ExceptOnPostgreSQL(
            migrations.RemoveConstraint(
                model_name="click",
                name="click_clickid_unique",
            ),
            migrations.RemoveField(
                model_name="click",
                name="id",
            ),
            migrations.AlterField(
                model_name="click",
                name="clickid",
                field=models.CharField(
                    default=conversions.models.new_clickid,
                    editable=False,
                    max_length=24,
                    primary_key=True,
                    serialize=False,
                ),
            ),
        ),
        migrations.RunPython(partition),
    ]
