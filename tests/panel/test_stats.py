"""Statistics (DESIGN.md "Statistics") checked against figures computed here from the rows.

On PostgreSQL the report reads the trigger-kept counters; on SQLite the raw
rows. Either way every figure must equal what the definitions give when
applied to the clicks and conversions the test made.
"""

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conversions.intake import click_buffer
from conversions.models import Click, Conversion, OfferStat, SubStat, TrafficStat
from conversions.panel import rollups
from conversions.processing import statuses
from offers.models import Advertiser, Offer
from partners.models import Partner

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-29 is the day Berlin moves to summer time: 23 hours long.
DST_DAY = date(2026, 3, 29)
STATUSES = ("approved", "pending", "hold", "declined")
postgresql_only = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="the counters are kept by PostgreSQL triggers"
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def stats(api, **params) -> dict:
    response = api.get("/api/v1/stats/", params)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def world(db):
    """Two advertisers, three offers, three partners."""
    advertisers = [Advertiser.objects.create(name=f"Adv {i}") for i in range(2)]
    offers = [
        Offer.objects.create(
            title=f"Offer {i}", advertiser=advertisers[i % 2], url="https://x.test"
        )
        for i in range(3)
    ]
    partners = [Partner.objects.create(name=f"P{i}") for i in range(3)]
    return advertisers, offers, partners


def add_clicks(offer, partner, times, **fields) -> list[Click]:
    return Click.objects.bulk_create(
        Click(offer=offer, partner=partner, created_at=t, **fields) for t in times
    )


def convert(click, status="approved", revenue="10", payout="6", goal="1", created_at=None):
    return Conversion.objects.create(
        offer=click.offer,
        partner=click.partner,
        click=click,
        goal=goal,
        status=status,
        revenue=Decimal(revenue),
        payout=Decimal(payout),
        hold_until=created_at or click.created_at if status == "hold" else None,
        created_at=created_at or click.created_at + timedelta(minutes=5),
    )


def random_traffic(world, seed=5):
    """Clicks over five days around the DST day, a third of them converted in every status."""
    _, offers, partners = world
    rng = random.Random(seed)
    start = at("2026-03-27T00:00:00+00:00")
    clicks = Click.objects.bulk_create(
        Click(
            offer=offer,
            partner=partner,
            created_at=start + timedelta(minutes=rng.randrange(5 * 24 * 60)),
            country=rng.choice(["DE", "FR", ""]),
            sub1=rng.choice(["a", "b", "c", ""]),
            sub2=rng.choice(["x", "y"]),
        )
        for offer in offers
        for partner in partners
        for _ in range(40)
    )
    conversions = []
    for click in rng.sample(clicks, len(clicks) // 3):
        status = rng.choice(STATUSES)
        created_at = click.created_at + timedelta(minutes=rng.randrange(60 * 30))
        conversions.append(
            Conversion(
                offer=click.offer,
                partner=click.partner,
                click=click,
                goal=rng.choice(["1", "reg"]),
                status=status,
                revenue=Decimal(rng.randrange(100, 2000)) / 100,
                payout=Decimal(rng.randrange(50, 900)) / 100,
                hold_until=created_at if status == "hold" else None,
                created_at=created_at,
            )
        )
    Conversion.objects.bulk_create(conversions)
    # One without a click: empty country and subs.
    convert(clicks[0], created_at=at("2026-03-29T12:00:00+00:00"))
    Conversion.objects.filter(pk=Conversion.objects.latest("pk").pk).update(click=None)
    return clicks


def expected(group_by, tz, date_from, date_to, **filters) -> dict:
    """The report computed directly from the rows and DESIGN's definitions."""

    def utc_hour(t):
        return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def local(t):
        return utc_hour(t).astimezone(tz)

    def inside(t):
        return date_from <= local(t).date() <= date_to

    advertiser_of = dict(Offer.objects.values_list("pk", "advertiser_id"))

    def key(row, click, goal):
        values = {
            "hour": lambda: local(row.created_at).isoformat(),
            "day": lambda: local(row.created_at).date().isoformat(),
            "month": lambda: local(row.created_at).strftime("%Y-%m"),
            "offer": lambda: row.offer_id,
            "advertiser": lambda: advertiser_of[row.offer_id],
            "partner": lambda: row.partner_id,
            "goal": lambda: goal,
            "country": lambda: click.country if click else "",
            **{
                f"sub{i}": (lambda i=i: getattr(click, f"sub{i}") if click else "")
                for i in range(1, 9)
            },
        }
        return tuple(values[g]() for g in group_by)

    def wanted(row, click):
        return (
            ("offer" not in filters or row.offer_id == filters["offer"])
            and (
                "advertiser" not in filters or advertiser_of[row.offer_id] == filters["advertiser"]
            )
            and ("partner" not in filters or row.partner_id == filters["partner"])
            and ("country" not in filters or (click.country if click else "") == filters["country"])
        )

    clicks = defaultdict(int)
    for click in Click.objects.all():
        if inside(click.created_at) and wanted(click, click):
            clicks[key(click, click, None)] += 1
    counts = defaultdict(lambda: defaultdict(int))
    money = defaultdict(lambda: [Decimal(0), Decimal(0)])
    # A conversion keeps its click's country and subs.
    for c in Conversion.objects.all():
        if not (inside(c.created_at) and wanted(c, c)):
            continue
        if "goal" in filters and c.goal.lower() != filters["goal"].lower():
            continue
        k = key(c, c, c.goal)
        counts[k][c.status] += 1
        if c.status == "approved":
            money[k][0] += c.revenue
            money[k][1] += c.payout

    goal_at = group_by.index("goal") if "goal" in group_by else None

    def no_goal(k):
        return k if goal_at is None else (*k[:goal_at], None, *k[goal_at + 1 :])

    def figures(n_clicks, by_status, revenue, payout):
        conversions = by_status["approved"] + by_status["pending"] + by_status["hold"]
        return {
            "clicks": n_clicks,
            "conversions": conversions,
            **{s: by_status[s] for s in STATUSES},
            "revenue": f"{revenue:.4f}",
            "payout": f"{payout:.4f}",
            "profit": f"{revenue - payout:.4f}",
            "cr": round(conversions / n_clicks * 100, 2) if n_clicks else 0,
            # 4 decimals, halves rounded up.
            "epc": str(
                (payout / n_clicks if n_clicks else Decimal(0)).quantize(
                    Decimal("0.0001"), ROUND_HALF_UP
                )
            ),
        }

    rows = {k: figures(clicks[no_goal(k)], counts[k], *money[k]) for k in counts}
    for k, n in clicks.items():
        if not any(no_goal(c) == k for c in counts):
            if goal_at is not None and "goal" in filters:
                k = (*k[:goal_at], filters["goal"], *k[goal_at + 1 :])
            rows[k] = figures(n, defaultdict(int), Decimal(0), Decimal(0))
    order = sorted(rows, key=lambda k: tuple((v is None, v if v is not None else "") for v in k))
    all_counts = defaultdict(int)
    for by_status in counts.values():
        for s, n in by_status.items():
            all_counts[s] += n
    totals = figures(
        sum(clicks.values()),
        all_counts,
        sum((m[0] for m in money.values()), Decimal(0)),
        sum((m[1] for m in money.values()), Decimal(0)),
    )
    return {
        "results": [{"key": dict(zip(group_by, k, strict=True)), **rows[k]} for k in order],
        "totals": totals,
    }


GROUPINGS = [
    "day",
    "hour",
    "month",
    "offer",
    "advertiser",
    "partner",
    "goal",
    "country",
    "sub1",
    "day,offer",
    "partner,country,goal",
    "offer,sub1",
    "sub1,sub2",
    "country,sub2",
    "goal,day",
]


def test_every_grouping_equals_the_rows(admin_api, world):
    random_traffic(world)
    for group_by in GROUPINGS:
        params = {"group_by": group_by, "date_from": "2026-03-28", "date_to": "2026-03-30"}
        answer = stats(admin_api, tz="Europe/Berlin", **params)
        want = expected(tuple(group_by.split(",")), BERLIN, date(2026, 3, 28), date(2026, 3, 30))
        assert answer == want, group_by
        assert answer["totals"]["clicks"] > 0 and answer["totals"]["approved"] > 0


FILTERS = [
    {"offer": 0},
    {"advertiser": 1},
    {"partner": 2},
    {"country": "DE"},
    {"goal": "REG"},
    {"offer": 1, "partner": 0, "goal": "reg"},
]


def test_filters_equal_the_rows(admin_api, world):
    advertisers, offers, partners = world
    random_traffic(world, seed=9)
    ids = {
        "offer": lambda i: offers[i].pk,
        "advertiser": lambda i: advertisers[i].pk,
        "partner": lambda i: partners[i].pk,
    }
    for filters in FILTERS:
        filters = {k: ids[k](v) if k in ids else v for k, v in filters.items()}
        for group_by in ("day,offer", "sub1", "partner,goal", "country"):
            answer = stats(
                admin_api,
                group_by=group_by,
                date_from="2026-03-27",
                date_to="2026-03-31",
                **filters,
            )
            want = expected(
                tuple(group_by.split(",")),
                ZoneInfo("UTC"),
                date(2026, 3, 27),
                date(2026, 3, 31),
                **filters,
            )
            if "goal" in filters and "goal" in group_by:
                # The answer keys a goal's rows by the goal as stored.
                for row in want["results"]:
                    row["key"]["goal"] = row["key"]["goal"].lower()
            assert answer == want, (group_by, filters)


def test_definitions_on_a_small_day(admin_api, world):
    _, offers, partners = world
    clicks = add_clicks(offers[0], partners[0], [at("2026-05-04T10:00:00+00:00")] * 7)
    convert(clicks[0], "approved", revenue="10.00", payout="4.00")
    convert(clicks[1], "approved", revenue="5.50", payout="2.25")
    convert(clicks[2], "pending", revenue="100", payout="100")
    convert(clicks[3], "hold", revenue="100", payout="100")
    convert(clicks[4], "declined", revenue="100", payout="100")
    answer = stats(admin_api, group_by="day", date_from="2026-05-04", date_to="2026-05-04")
    row = answer["results"][0]
    assert row == {
        "key": {"day": "2026-05-04"},
        "clicks": 7,
        # approved + pending + hold; declined apart.
        "conversions": 4,
        "approved": 2,
        "pending": 1,
        "hold": 1,
        "declined": 1,
        # Money of approved conversions only.
        "revenue": "15.5000",
        "payout": "6.2500",
        "profit": "9.2500",
        # 4 / 7 x 100 = 57.142… ; 6.25 / 7 = 0.89285…
        "cr": 57.14,
        "epc": "0.8929",
    }
    assert answer["totals"] == {k: v for k, v in row.items() if k != "key"}


def test_conversions_without_clicks_have_no_rate(admin_api, world):
    _, offers, partners = world
    (click,) = add_clicks(offers[0], partners[0], [at("2026-05-01T10:00:00+00:00")])
    convert(click, created_at=at("2026-05-04T10:00:00+00:00"))
    row = stats(admin_api, date_from="2026-05-04", date_to="2026-05-04")["results"][0]
    assert (row["clicks"], row["conversions"], row["cr"], row["epc"]) == (0, 1, 0, "0.0000")


def test_days_follow_the_timezone_on_a_dst_day(admin_api, world):
    _, offers, partners = world
    times = [
        "2026-03-28T22:59:00+00:00",  # 23:59 CET, the 28th
        "2026-03-28T23:00:00+00:00",  # 00:00 CET, the 29th
        "2026-03-29T00:59:00+00:00",  # 01:59 CET
        "2026-03-29T01:00:00+00:00",  # 03:00 CEST: 02:00 never happens
        "2026-03-29T21:59:00+00:00",  # 23:59 CEST, the 29th
        "2026-03-29T22:00:00+00:00",  # 00:00 CEST, the 30th
    ]
    add_clicks(offers[0], partners[0], [at(t) for t in times])
    params = {"date_from": "2026-03-28", "date_to": "2026-03-30", "group_by": "day"}
    berlin = stats(admin_api, tz="Europe/Berlin", **params)
    assert [(r["key"]["day"], r["clicks"]) for r in berlin["results"]] == [
        ("2026-03-28", 1),
        ("2026-03-29", 4),
        ("2026-03-30", 1),
    ]
    utc = stats(admin_api, tz="UTC", **params)
    assert [(r["key"]["day"], r["clicks"]) for r in utc["results"]] == [
        ("2026-03-28", 2),
        ("2026-03-29", 4),
    ]
    hours = stats(
        admin_api, tz="Europe/Berlin", group_by="hour", date_from="2026-03-29", date_to="2026-03-29"
    )
    assert [(r["key"]["hour"], r["clicks"]) for r in hours["results"]] == [
        ("2026-03-29T00:00:00+01:00", 1),
        ("2026-03-29T01:00:00+01:00", 1),
        ("2026-03-29T03:00:00+02:00", 1),
        ("2026-03-29T23:00:00+02:00", 1),
    ]
    assert hours["totals"]["clicks"] == 4


def test_the_default_timezone_is_stats_timezone(admin_api, world, settings):
    _, offers, partners = world
    add_clicks(offers[0], partners[0], [at("2026-05-04T23:30:00+00:00")])
    settings.STATS_TIMEZONE = "Asia/Tokyo"
    answer = stats(admin_api, date_from="2026-05-05", date_to="2026-05-05")
    assert answer["results"][0]["key"] == {"day": "2026-05-05"}


def test_a_half_hour_zone_counts_each_utc_hour_where_it_starts(admin_api, world):
    _, offers, partners = world
    # 18:10 UTC is 23:40 in Kolkata; its hour starts at 23:30 on the 4th.
    # 18:40 UTC is 00:10 on the 5th, but its UTC hour starts on the 4th too.
    # 19:00 UTC starts at 00:30 on the 5th.
    add_clicks(
        offers[0],
        partners[0],
        [
            at("2026-05-04T18:10:00+00:00"),
            at("2026-05-04T18:40:00+00:00"),
            at("2026-05-04T19:00:00+00:00"),
        ],
    )
    params = {"tz": "Asia/Kolkata", "date_from": "2026-05-04", "date_to": "2026-05-05"}
    answer = stats(admin_api, **params)
    assert [(r["key"]["day"], r["clicks"]) for r in answer["results"]] == [
        ("2026-05-04", 2),
        ("2026-05-05", 1),
    ]


def test_sub_and_country_are_the_clicks(admin_api, world):
    _, offers, partners = world
    (de,) = add_clicks(
        offers[0], partners[0], [at("2026-05-04T10:00:00+00:00")], country="DE", sub3="s"
    )
    (fr,) = add_clicks(offers[0], partners[0], [at("2026-05-04T10:00:00+00:00")], country="FR")
    convert(de)
    convert(fr, status="declined")
    params = {"date_from": "2026-05-04", "date_to": "2026-05-04"}
    by_country = stats(admin_api, group_by="country", **params)["results"]
    assert [(r["key"], r["clicks"], r["approved"], r["declined"]) for r in by_country] == [
        ({"country": "DE"}, 1, 1, 0),
        ({"country": "FR"}, 1, 0, 1),
    ]
    by_sub = stats(admin_api, group_by="sub3", **params)["results"]
    assert [(r["key"], r["clicks"], r["approved"]) for r in by_sub] == [
        ({"sub3": ""}, 1, 0),
        ({"sub3": "s"}, 1, 1),
    ]


def test_a_status_change_and_a_repricing_move_the_numbers(admin_api, world):
    _, offers, partners = world
    clicks = add_clicks(offers[0], partners[0], [at("2026-05-04T10:00:00+00:00")] * 2)
    pending = convert(clicks[0], "pending", revenue="8", payout="3")
    approved = convert(clicks[1], "approved", revenue="10", payout="6")
    params = {"date_from": "2026-05-04", "date_to": "2026-05-04", "group_by": "offer"}

    def figures():
        t = stats(admin_api, **params)["totals"]
        return t["approved"], t["pending"], t["declined"], t["revenue"], t["payout"]

    assert figures() == (1, 1, 0, "10.0000", "6.0000")
    statuses.change_status_by_manager(pending.pk, "approved")
    assert figures() == (2, 0, 0, "18.0000", "9.0000")
    Conversion.objects.filter(pk=approved.pk).update(revenue=Decimal("12.5"), payout=Decimal(7))
    assert figures() == (2, 0, 0, "20.5000", "10.0000")
    statuses.change_status_by_manager(approved.pk, "declined")
    assert figures() == (1, 0, 1, "8.0000", "3.0000")
    Conversion.objects.filter(pk=pending.pk).delete()
    assert figures() == (0, 0, 1, "0.0000", "0.0000")


def test_a_conversion_counts_by_its_own_time(admin_api, world):
    _, offers, partners = world
    (click,) = add_clicks(offers[0], partners[0], [at("2026-05-03T23:50:00+00:00")])
    convert(click, created_at=at("2026-05-04T00:10:00+00:00"))
    answer = stats(admin_api, group_by="day", date_from="2026-05-03", date_to="2026-05-04")
    assert [(r["key"]["day"], r["clicks"], r["approved"]) for r in answer["results"]] == [
        ("2026-05-03", 1, 0),
        ("2026-05-04", 0, 1),
    ]


def test_rows_are_ordered_by_key(admin_api, world):
    _, offers, partners = world
    for offer in reversed(offers):
        for day in ("2026-05-05", "2026-05-04"):
            add_clicks(offer, partners[0], [at(f"{day}T10:00:00+00:00")])
    answer = stats(admin_api, group_by="day,offer", date_from="2026-05-04", date_to="2026-05-05")
    keys = [(r["key"]["day"], r["key"]["offer"]) for r in answer["results"]]
    assert keys == sorted(keys) and len(keys) == 6


def test_csv_export(admin_api, world):
    _, offers, partners = world
    clicks = add_clicks(offers[0], partners[1], [at("2026-05-04T10:00:00+00:00")] * 2)
    convert(clicks[0])
    response = admin_api.get(
        "/api/v1/stats/",
        {
            "group_by": "day,partner",
            "date_from": "2026-05-04",
            "date_to": "2026-05-04",
            "format": "csv",
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    lines = response.content.decode().splitlines()
    header = (
        "day,partner,clicks,conversions,approved,pending,hold,declined,revenue,payout,profit,cr,epc"
    )
    assert lines == [
        header,
        f"2026-05-04,{partners[1].pk},2,1,1,0,0,0,10.0000,6.0000,4.0000,50.0,3.0000",
        "total,,2,1,1,0,0,0,10.0000,6.0000,4.0000,50.0,3.0000",
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "day,offer,partner,goal"}, "group_by"),
        ({"group_by": "day,month"}, "group_by"),
        ({"group_by": "offer,offer"}, "group_by"),
        ({"group_by": ","}, "group_by"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "2026-5-4"}, "date_to"),
        ({"date_from": "2026-05-05", "date_to": "2026-05-04"}, "date_from"),
        ({"date_from": "2020-01-01", "date_to": "2026-01-01"}, "date_to"),
        ({"group_by": "hour", "date_from": "2026-01-01", "date_to": "2026-12-31"}, "group_by"),
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"offer": "abc"}, "offer"),
        ({"partner": "-1"}, "partner"),
        ({"advertiser": "99999999999999999999999"}, "advertiser"),
        ({"country": "DEU"}, "country"),
        ({"goal": "a\x00b"}, "goal"),
    ],
)
def test_bad_parameters_are_a_clear_400(admin_api, db, params, field):
    response = admin_api.get("/api/v1/stats/", params)
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert response.json()[field][0]


def test_stats_need_the_permission_to_view_conversions(bare_staff_api, manager_api, support_api):
    assert bare_staff_api.get("/api/v1/stats/").status_code == 403
    assert manager_api.get("/api/v1/stats/").status_code == 200
    assert support_api.get("/api/v1/stats/").status_code == 200


def test_the_default_range_is_the_last_seven_days(admin_api, world, time_machine):
    _, offers, partners = world
    time_machine.move_to(at("2026-05-10T12:00:00+00:00"))
    add_clicks(
        offers[0], partners[0], [at("2026-05-03T23:00:00+00:00"), at("2026-05-04T00:00:00+00:00")]
    )
    assert stats(admin_api)["totals"]["clicks"] == 1


@postgresql_only
def test_merging_the_counters_changes_no_figure(admin_api, world):
    random_traffic(world, seed=11)
    clicks = Click.objects.order_by("?")[:20]
    for click in clicks:
        for conversion in Conversion.objects.filter(click=click.clickid):
            Conversion.objects.filter(pk=conversion.pk).update(status="approved")
    params = {"date_from": "2026-03-27", "date_to": "2026-03-31"}
    before = {g: stats(admin_api, group_by=g, **params) for g in ("day,offer", "country", "sub1")}
    counts = [m.objects.count() for m in (OfferStat, TrafficStat, SubStat)]
    rollups.merge()
    assert [m.objects.count() for m in (OfferStat, TrafficStat, SubStat)] < counts
    assert not OfferStat.objects.filter(merged=False).exists()
    assert {g: stats(admin_api, group_by=g, **params) for g in before} == before
    rollups.merge()
    assert {g: stats(admin_api, group_by=g, **params) for g in before} == before


@postgresql_only
def test_reports_read_the_counters_not_the_rows(admin_api, world):
    random_traffic(world, seed=3)
    params = {"date_from": "2026-03-27", "date_to": "2026-03-31"}
    for group_by in ("day,offer", "partner,country", "sub1", "advertiser,goal"):
        with connection.execute_wrapper(_refuse_raw_tables):
            stats(admin_api, group_by=group_by, **params)
    # Two subs at once have no counters: those read the rows (and the check sees it).
    with connection.execute_wrapper(_refuse_raw_tables), pytest.raises(AssertionError):
        stats(admin_api, group_by="sub1,sub2", **params)


def _refuse_raw_tables(execute, sql, params, many, context):
    if 'FROM "conversions_click"' in sql or 'FROM "conversions_conversion"' in sql:
        raise AssertionError(f"a report read raw rows: {sql[:200]}")
    return execute(sql, params, many, context)


@pytest.mark.skipif(not settings.CLICK_BUFFER, reason="the click buffer needs PostgreSQL and Redis")
def test_a_flushed_click_and_a_settled_conversion_count_at_once(
    admin_api, client, process, offer, partner
):
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk, "sub1": "s"})
    clickid = parse_qs(urlsplit(response["Location"]).query)["c"][0]
    today = {"group_by": "sub1", "date_from": str(timezone.now().date())}
    assert stats(admin_api, **today)["totals"]["clicks"] == 0
    # The beat's next tick; no merge of the counters in between.
    click_buffer.flush(wait=False)
    answer = stats(admin_api, **today)
    assert (answer["results"][0]["key"], answer["totals"]["clicks"]) == ({"sub1": "s"}, 1)
    assert process(clickid=clickid, sum="5").state == "accepted"
    totals = stats(admin_api, **today)["totals"]
    assert (totals["clicks"], totals["approved"]) == (1, 1)


def test_a_hold_approved_by_the_beat_moves_the_numbers(admin_api, world):
    _, offers, partners = world
    clicks = add_clicks(offers[0], partners[0], [at("2026-05-04T10:00:00+00:00")] * 2)
    held = convert(clicks[0], "hold", revenue="9", payout="5")
    Conversion.objects.filter(pk=held.pk).update(hold_until=at("2026-05-05T00:00:00+00:00"))
    params = {"date_from": "2026-05-04", "date_to": "2026-05-04"}
    totals = stats(admin_api, **params)["totals"]
    assert (totals["hold"], totals["approved"], totals["revenue"]) == (1, 0, "0.0000")
    assert statuses.approve_holds() == 1
    totals = stats(admin_api, **params)["totals"]
    assert (totals["hold"], totals["approved"], totals["revenue"]) == (0, 1, "9.0000")
    assert totals["conversions"] == 1
