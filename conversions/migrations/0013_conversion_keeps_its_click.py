"""A conversion keeps what it needs of its click: clickid, subs, ip, country and click time.

Clicks are removed at retention (CLICK_RETENTION_DAYS, README "Data
lifecycle"); conversions are kept, so they no longer point at the click row:
``click`` becomes the clickid itself (the column ``clickid``, the API's
``click``), copied with the rest from the click here for the conversions
already made, and by the settle callback for new ones.

On PostgreSQL the statistics triggers of conversions (migration 0008) joined
the click for its country and subs: they now read the conversion's own.
"""

import django.db.models.functions.text
from django.db import migrations, models

SUBS = [f"sub{i}" for i in range(1, 9)]
KEPT = {**{s: s for s in SUBS}, "click_ip": "ip", "country": "country", "click_at": "created_at"}
KEPT["clickid"] = "clickid"

HOUR = "date_trunc('hour', {0} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
DAY = "date_trunc('day', {0} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
METRICS = "clicks, conversions, revenue, payout"
TABLES = {
    "conversions_offerstat": ("offer_id",),
    "conversions_trafficstat": ("offer_id", "partner_id", "country"),
    "conversions_substat": ("partner_id", "sub_no", "sub"),
}


def copy_from_clicks(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        sets = ", ".join(f"{mine} = c.{theirs}" for mine, theirs in KEPT.items())
        schema_editor.execute(
            f"UPDATE conversions_conversion AS v SET {sets}"
            " FROM conversions_click AS c WHERE c.id = v.click_id"
        )
        return
    sets = ", ".join(
        f"{mine} = (SELECT c.{theirs} FROM conversions_click AS c"
        " WHERE c.id = conversions_conversion.click_id)"
        for mine, theirs in KEPT.items()
    )
    schema_editor.execute(f"UPDATE conversions_conversion SET {sets} WHERE click_id IS NOT NULL")


def _conversion_rows(table: str, source: str) -> str:
    """0008's conversion counters, keyed by the conversion's own country and subs."""
    dims = TABLES[table]
    lateral = ""
    bucket = DAY if "sub_no" in dims else HOUR
    if "sub_no" in dims:
        subs = ", ".join(f"({i}, d.sub{i})" for i in range(1, 9))
        lateral = f" CROSS JOIN LATERAL (VALUES {subs}) AS s(sub_no, sub)"
    names = ", ".join(dims)
    keys = ", ".join("s." + d if d in ("sub_no", "sub") else f"d.{d}" for d in dims)
    keep = f"d.hour, {keys}, d.goal, d.status"
    return (
        f"WITH d AS ("
        f"SELECT {bucket.format('x.created_at')} AS hour, x.offer_id, x.partner_id,"
        " x.country, x.goal, x.status, x.sign,"
        " x.sign * x.revenue AS revenue, x.sign * x.payout AS payout, "
        + ", ".join(f"x.sub{i}" for i in range(1, 9))
        + f" FROM ({source}) AS x)"
        f" INSERT INTO {table} (hour, {names}, goal, status, {METRICS}, merged)"
        f" SELECT {keep}, 0, sum(d.sign), sum(d.revenue), sum(d.payout), false"
        f" FROM d{lateral} GROUP BY {keep}"
        " HAVING sum(d.sign) <> 0 OR sum(d.revenue) <> 0 OR sum(d.payout) <> 0;"
    )


def _conversions(name: str, sign: int) -> str:
    return (
        "SELECT created_at, offer_id, partner_id, goal, status, country, "
        + ", ".join(SUBS)
        + f", {sign} AS sign, revenue, payout FROM {name}"
    )


def _function(name: str, statements: list[str]) -> str:
    body = "\n    ".join(statements)
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        f"BEGIN\n    {body}\n    RETURN NULL;\nEND $$;"
    )


def conversion_trigger_functions() -> list[str]:
    new, old = _conversions("new_rows", 1), _conversions("old_rows", -1)
    sources = {"inserted": new, "updated": f"{new} UNION ALL {old}", "deleted": old}
    return [
        _function(f"stats_conversions_{op}", [_conversion_rows(t, source) for t in TABLES])
        for op, source in sources.items()
    ]


def replace_trigger_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in conversion_trigger_functions():
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0012_roles_for_rules_rates_history"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="conversion",
            name="conversion_one_per_click_and_goal",
        ),
        migrations.AddField(
            model_name="conversion",
            name="kept_clickid",
            field=models.CharField(blank=True, db_column="clickid", max_length=24, null=True),
        ),
        migrations.AddField(
            model_name="conversion",
            name="click_at",
            field=models.DateTimeField(blank=True, help_text="When the click was made.", null=True),
        ),
        migrations.AddField(
            model_name="conversion",
            name="click_ip",
            field=models.GenericIPAddressField(blank=True, help_text="The click's ip.", null=True),
        ),
        migrations.AddField(
            model_name="conversion",
            name="country",
            field=models.CharField(blank=True, help_text="The click's country.", max_length=2),
        ),
        *(
            migrations.AddField(
                model_name="conversion",
                name=name,
                field=models.CharField(blank=True, max_length=255),
            )
            for name in SUBS
        ),
        migrations.RunPython(copy_from_clicks, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="conversion",
            name="click",
        ),
        migrations.RunPython(replace_trigger_functions, migrations.RunPython.noop),
        migrations.RenameField(
            model_name="conversion",
            old_name="kept_clickid",
            new_name="click",
        ),
        migrations.AlterField(
            model_name="conversion",
            name="click",
            field=models.CharField(
                blank=True,
                db_column="clickid",
                help_text="The click's clickid.",
                max_length=24,
                null=True,
            ),
        ),
        migrations.AddConstraint(
            model_name="conversion",
            constraint=models.UniqueConstraint(
                models.F("click"),
                django.db.models.functions.text.Lower("goal"),
                condition=models.Q(("multiple", False)),
                name="conversion_one_per_click_and_goal",
            ),
        ),
        migrations.AddIndex(
            model_name="conversion",
            index=models.Index(fields=["click"], name="conversion_click_idx"),
        ),
    ]
