"""Day partitions on PostgreSQL: pruning by key, uniqueness, the default partition, drops."""

import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext

from conversions.lifecycle import partitions, retention
from conversions.lifecycle.partitions import CLICKS, POSTBACKS
from conversions.models import (
    Click,
    Conversion,
    OfferStat,
    Postback,
    PostbackRequeue,
    new_clickid,
)
from conversions.outcomes import Rejection
from conversions.processing.checks import _clicks, check_click

from ..conftest import another_session, run_concurrently

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="time partitions are PostgreSQL's"
)

PARTITION = re.compile(r"conversions_(?:click|postback)_(?:p\d{8}|default)")


def scanned(queryset) -> set[str]:
    """The partitions a query's plan reads."""
    return set(PARTITION.findall(queryset.explain()))


def where(table: str, key: str, value: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE {key} = %s", [value])
        row = cursor.fetchone()
    return row and row[0]


def immediate() -> None:
    """Check the test transaction's deferred foreign keys now: a partition with pending
    checks cannot be detached, and the beat's own transaction has none."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def postback_id(at: datetime) -> str:
    return f"{int(at.timestamp() * 1000):012x}{secrets.token_hex(8)}"


def today_partition(table) -> str:
    return table.partition(partitions.today())


@pytest.mark.django_db
def test_a_lookup_by_clickid_reads_one_partition(offer, partner):
    click = Click.objects.create(offer=offer, partner=partner)
    assert where("conversions_click", "clickid", click.clickid) == today_partition(CLICKS)
    # The checks' query (conversions/processing/checks.py _clicks), the admin's and the API's.
    assert scanned(Click.objects.filter(clickid__in=[click.clickid])) == {today_partition(CLICKS)}
    assert scanned(Click.objects.filter(pk=click.clickid)) == {today_partition(CLICKS)}
    assert _clicks([{"id": "1", "params": {"clickid": click.clickid}}]) == {click.clickid: click}
    row = Postback.objects.create(method="GET", params={})
    assert scanned(Postback.objects.filter(pk=row.pk)) == {today_partition(POSTBACKS)}
    # A batch of clickids of two days reads those two partitions.
    other = new_clickid(datetime.now(UTC) + timedelta(days=1))
    two = {today_partition(CLICKS), CLICKS.partition(partitions.today() + 1)}
    assert scanned(Click.objects.filter(clickid__in=[click.clickid, other])) == two


@pytest.mark.django_db
def test_clickids_of_the_old_format_live_in_the_default_partition_and_are_found(offer, partner):
    # 24 random hex digits whose "day" has no partition (made before clickids carried it).
    old = "0bad" + secrets.token_hex(10)
    Click.objects.create(clickid=old, offer=offer, partner=partner)
    assert where("conversions_click", "clickid", old) == CLICKS.default
    assert scanned(Click.objects.filter(clickid__in=[old])) == {CLICKS.default}
    verdicts = check_click([{"id": "1", "params": {"clickid": old}, "received_at": "x"}])
    assert verdicts["1"].data.id == old


@pytest.mark.django_db
def test_a_batch_of_clicks_of_many_days_reads_each_partition_for_its_own_clickids(offer, partner):
    retention.make_ahead(days_ahead=3)
    now = datetime.now(UTC)
    clicks = [
        Click.objects.create(
            clickid=new_clickid(now + timedelta(days=d)), offer=offer, partner=partner
        )
        for d in (0, 0, 1, 2, 2, 3)
    ]
    old = Click.objects.create(clickid="0bad" + secrets.token_hex(10), offer=offer, partner=partner)
    batch = [{"id": str(i), "params": {"clickid": c.clickid}} for i, c in enumerate([*clicks, old])]
    with CaptureQueriesContext(connection) as queries:
        found = _clicks(batch)
    assert found == {c.clickid: c for c in [*clicks, old]}
    # One query; in its plan, each partition's index is asked for its own
    # clickids only (one IN list over all would ask each of the 5 for all 7).
    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + query["sql"])
        plan = [r[0] for r in cursor.fetchall()]
    assert set(PARTITION.findall("\n".join(plan))) == {
        *(CLICKS.partition(partitions.today() + d) for d in range(4)),
        CLICKS.default,
    }
    conditions = [line for line in plan if line.strip().startswith(("Index Cond", "Filter"))]
    for click in [*clicks, old]:
        assert sum(click.clickid in line for line in conditions) == 1, plan


@pytest.mark.django_db(transaction=True)
def test_one_clickid_from_two_transactions_is_one_row(offer, partner):
    clickid = new_clickid()
    sql = (
        "INSERT INTO conversions_click (clickid, offer_id, partner_id, sub1, sub2, sub3, sub4,"
        " sub5, sub6, sub7, sub8, user_agent, referrer, country, created_at)"
        " VALUES (%s, %s, %s, '', '', '', '', '', '', '', '', '', '', '', now())"
    )

    def insert(i):
        with another_session() as session:
            # Half as the flush inserts (ON CONFLICT), half plainly: a duplicate is refused.
            try:
                session.execute(
                    sql + (" ON CONFLICT (clickid) DO NOTHING" if i % 2 else ""),
                    [clickid, offer.pk, partner.pk],
                )
                session.commit()
                return "stored"
            except psycopg.errors.UniqueViolation:
                return "refused"

    outcomes = run_concurrently(4, insert)
    assert Click.objects.filter(clickid=clickid).count() == 1
    assert outcomes.count("stored") >= 1
    assert outcomes[0::2].count("stored") <= 1  # at most one plain insert stored it


@pytest.mark.django_db
def test_a_row_of_a_day_without_partition_waits_in_the_default_and_moves_in(offer, partner):
    later = datetime.now(UTC) + timedelta(days=20)
    day = partitions.day_number(later.date())
    click = Click.objects.create(
        clickid=new_clickid(later), offer=offer, partner=partner, created_at=later
    )
    row = Postback.objects.create(id=postback_id(later), method="GET", params={})
    clicks_counted = OfferStat.objects.aggregate(n=Sum("clicks"))["n"]
    assert where("conversions_click", "clickid", click.clickid) == CLICKS.default
    assert where("conversions_postback", "id", row.pk) == POSTBACKS.default

    made = retention.make_ahead(days_ahead=20)
    assert CLICKS.partition(day) in made and POSTBACKS.partition(day) in made
    assert where("conversions_click", "clickid", click.clickid) == CLICKS.partition(day)
    assert where("conversions_postback", "id", row.pk) == POSTBACKS.partition(day)
    # Moved, not counted again; and still one row per key.
    assert OfferStat.objects.aggregate(n=Sum("clicks"))["n"] == clicks_counted
    assert Click.objects.filter(pk=click.pk).count() == 1
    assert retention.make_ahead(days_ahead=20) == []


@pytest.mark.django_db
def test_the_beat_drops_old_day_partitions_whole_and_keeps_unfinished_postbacks(
    offer, partner, settings
):
    settings.CLICK_RETENTION_DAYS = settings.POSTBACK_RETENTION_DAYS = 90
    now = datetime.now(UTC)
    click = Click.objects.create(offer=offer, partner=partner, sub2="kept", country="DE")
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="approved"
    )
    done = Postback.objects.create(method="GET", params={}, state="accepted")
    waiting = Postback.objects.create(method="GET", params={}, state="received")
    requeue = PostbackRequeue.objects.create(postback=done, state="rejected")
    # Old-format clicks in the default partition: one past retention then, one not.
    old = Click.objects.create(
        clickid="0bad" + secrets.token_hex(10), offer=offer, partner=partner, created_at=now
    )
    young = Click.objects.create(
        clickid="0bad" + secrets.token_hex(10),
        offer=offer,
        partner=partner,
        created_at=now + timedelta(days=95),
    )

    # The beat runs in a transaction of its own: the inserts above are checked now.
    immediate()
    removed = retention.apply_retention(now=now + timedelta(days=91))

    with connection.cursor() as cursor:
        assert partitions.today() not in partitions.day_partitions(cursor, CLICKS)
        assert partitions.today() not in partitions.day_partitions(cursor, POSTBACKS)
    assert removed["click_partitions"] >= 1 and removed["postback_partitions"] >= 1
    assert removed["postbacks_kept"] == 1
    assert set(Click.objects.values_list("pk", flat=True)) == {young.pk}
    assert not Click.objects.filter(pk=old.pk).exists()
    assert list(Postback.objects.values_list("pk", flat=True)) == [waiting.pk]
    assert where("conversions_postback", "id", waiting.pk) == POSTBACKS.default
    assert not PostbackRequeue.objects.filter(pk=requeue.pk).exists()
    # The conversion keeps what it had of its click; a postback naming it now finds no click.
    conversion.refresh_from_db()
    assert (conversion.click, conversion.sub2, conversion.country) == (click.pk, "kept", "DE")
    verdicts = check_click([{"id": "1", "params": {"clickid": click.pk}, "received_at": "x"}])
    assert verdicts["1"].reject == Rejection.CLICK_NOT_FOUND


@pytest.mark.django_db
def test_a_plain_table_with_rows_becomes_partitioned_by_day():
    """The migration's step (partitions.partition_existing) on a table of its own."""
    demo = partitions.Table("lifecycle_demo", "clickid", 24, "created_at", digits=4, per_day=1)
    today = partitions.today()
    rows = [new_clickid(), new_clickid(datetime.now(UTC) + timedelta(days=1)), "0bad" + "0" * 20]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE lifecycle_demo (id bigint PRIMARY KEY, clickid varchar(24)"
            " CONSTRAINT lifecycle_demo_clickid_unique UNIQUE, note text NOT NULL DEFAULT 'x',"
            " created_at timestamptz NOT NULL)"
        )
        cursor.execute("CREATE INDEX lifecycle_demo_created_idx ON lifecycle_demo (created_at)")
        for i, clickid in enumerate(rows):
            cursor.execute(
                "INSERT INTO lifecycle_demo (id, clickid, created_at) VALUES (%s, %s, now())",
                [i, clickid],
            )
        partitions.partition_existing(
            cursor,
            demo,
            range(today, today + 2),
            replaces_unique="lifecycle_demo_clickid_unique",
            drop_columns=("id",),
        )
        cursor.execute(
            "SELECT clickid, tableoid::regclass::text, note FROM lifecycle_demo ORDER BY clickid"
        )
        found = {clickid: (part, note) for clickid, part, note in cursor.fetchall()}
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'lifecycle_demo' ORDER BY 1"
        )
        indexes = [name for (name,) in cursor.fetchall()]
    assert found == {
        rows[0]: (demo.partition(today), "x"),
        rows[1]: (demo.partition(today + 1), "x"),
        rows[2]: (demo.default, "x"),
    }
    assert indexes == ["lifecycle_demo_created_idx", "lifecycle_demo_pkey"]


def test_days_take_no_longer_to_plan_than_weeks_would(db):
    """The reasoning of partitions.py: planning a lookup over 100 day partitions vs 14."""
    times = {}
    with connection.cursor() as cursor:
        for count in (14, 100):
            table = f"plan_demo_{count}"
            cursor.execute(
                f'CREATE TABLE {table} (k varchar(24) COLLATE "C" PRIMARY KEY)'
                " PARTITION BY RANGE (k)"
            )
            for day in range(count):
                cursor.execute(
                    f"CREATE TABLE {table}_{day} PARTITION OF {table}"
                    f" FOR VALUES FROM ('{5000 + day:04x}') TO ('{5001 + day:04x}')"
                )
            started = time.perf_counter()
            for _ in range(200):
                cursor.execute(
                    f"EXPLAIN SELECT * FROM {table} WHERE k = %s", [f"{5005:04x}" + "0" * 20]
                )
                plan = "\n".join(row[0] for row in cursor.fetchall())
            times[count] = (time.perf_counter() - started) / 200
            assert f"on {table}_5 " in plan and plan.count("Scan") == 1
    print(
        f"planning a lookup: 14 partitions {times[14] * 1e3:.3f} ms, 100: {times[100] * 1e3:.3f} ms"
    )
    assert times[100] < 3 * times[14]
