"""The statistics case of ``make bench``: report answer time against data size.

Loads clicks (and conversions, 2 % of them) with COPY straight into the tables,
in steps up to each size of BENCH_STATS_SIZES (default 1M, 3M, 10M clicks; at
10M, 200,000 conversions), spread over the last 30 days across 50 offers, 200
partners, 20 countries and a few sub1 values per partner. The triggers keep
the counters as for any insert; the beat's merge then runs as it would. At
each size it times, over HTTP with a token as an API client, a 30-day report
grouped by day and offer and one grouped by sub1 (BENCH_STATS_REPEAT answers
each, median and max), and writes docs/bench-stats.md and docs/bench-stats.png.
"""

import io
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.clicktable import ModelRows, copy_clicks

SIZES = [int(s) for s in os.environ.get("BENCH_STATS_SIZES", "1000000,3000000,10000000").split(",")]
CONVERSION_RATE = float(os.environ.get("BENCH_STATS_CONVERSION_RATE", "0.02"))
REPEAT = int(os.environ.get("BENCH_STATS_REPEAT", "7"))
SPAN_S = 30 * 24 * 3600
OFFERS, PARTNERS, OFFERS_PER_PARTNER, SUBS_PER_PARTNER = 50, 200, 5, 20
COUNTRIES = ["US", "DE", "GB", "FR", "BR", "IN", "ES", "IT", "CA", "MX"]
COUNTRIES += ["PL", "NL", "TR", "JP", "AU", "SE", "PT", "AR", "ID", "KR"]
REPORTS = {
    "day,offer": {"group_by": "day,offer"},
    "sub1": {"group_by": "sub1"},
    "partner,country": {"group_by": "partner,country"},
}
TARGETS_MS = {"day,offer": 300, "sub1": 1000}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _world():
    from offers.models import Advertiser, Offer
    from partners.models import Partner

    advertisers = Advertiser.objects.bulk_create(
        Advertiser(name=f"Stats advertiser {i}") for i in range(10)
    )
    offers = Offer.objects.bulk_create(
        Offer(title=f"Stats offer {i}", advertiser=advertisers[i % 10], url="https://x.test/")
        for i in range(OFFERS)
    )
    partners = Partner.objects.bulk_create(
        Partner(name=f"Stats partner {i}") for i in range(PARTNERS)
    )
    rng = random.Random(1)
    # Each partner runs a few offers and labels its traffic with a few sub1 values.
    runs = {
        p.pk: (
            rng.sample([o.pk for o in offers], OFFERS_PER_PARTNER),
            [f"p{p.pk}s{j}" for j in range(SUBS_PER_PARTNER)],
        )
        for p in partners
    }
    return runs


def _load(runs: dict, count: int, now: datetime, rng: random.Random) -> None:
    """COPY ``count`` clicks (bench/clicktable.py) and their conversions, in chunks."""
    from conversions.models import Conversion

    partners = list(runs)
    weights = [1 / (i + 1) for i in range(len(partners))]  # a few partners send most traffic
    country_weights = [1 / (i + 1) for i in range(len(COUNTRIES))]
    conversions = io.StringIO()
    conversion_rows = ModelRows(Conversion)

    def values(clickid: str, at: datetime) -> dict:
        pid = rng.choices(partners, weights)[0]
        offer_ids, subs = runs[pid]
        offer_id = offer_ids[rng.randrange(OFFERS_PER_PARTNER)]
        sub1 = subs[rng.randrange(SUBS_PER_PARTNER)]
        country = rng.choices(COUNTRIES, country_weights)[0]
        if rng.random() < CONVERSION_RATE:
            status = rng.choice(("approved", "approved", "approved", "pending", "hold", "declined"))
            converted = at + timedelta(seconds=rng.randrange(3600))
            conversions.write(
                conversion_rows.row(
                    {
                        "offer_id": offer_id,
                        "partner_id": pid,
                        "click": clickid,
                        "status": status,
                        "revenue": "3.0000",
                        "payout": "2.0000",
                        "sum": "0",
                        "currency": "USD",
                        "hold_until": converted + timedelta(days=3) if status == "hold" else None,
                        "created_at": converted.isoformat(),
                        "updated_at": converted.isoformat(),
                        "sub1": sub1,
                        "country": country,
                        "click_at": at.isoformat(),
                    }
                )
            )
        return {"offer_id": offer_id, "partner_id": pid, "sub1": sub1, "country": country}

    def after_chunk(cursor) -> None:
        nonlocal conversions
        with cursor.copy(conversion_rows.sql) as copy:
            copy.write(conversions.getvalue())
        conversions = io.StringIO()

    copy_clicks(count, values, now=now, span_s=SPAN_S, rng=rng, after_chunk=after_chunk)


def _time(base_url: str, token: str, params: dict) -> dict:
    headers = {"Authorization": f"Token {token}"}
    times = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        client.get("/api/v1/stats/", params=params).raise_for_status()  # warm
        for _ in range(REPEAT):
            started = time.perf_counter()
            response = client.get("/api/v1/stats/", params=params)
            times.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
        rows = len(response.json()["results"])
    return {"median_ms": statistics.median(times), "max_ms": max(times), "rows": rows}


def case_stats(stack) -> dict:
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from rest_framework.authtoken.models import Token

    from conversions.models import OfferStat, SubStat, TrafficStat
    from conversions.panel import rollups

    user = User.objects.create_superuser("stats-bench", email=None, password=None)
    token = Token.objects.create(user=user).key
    runs = _world()
    now = datetime.now(UTC)
    today = now.date()
    window = {"date_from": str(today - timedelta(days=29)), "date_to": str(today)}
    rng = random.Random(2)
    loaded, points = 0, []
    for size in SIZES:
        started = time.monotonic()
        with transaction.atomic():
            _load(runs, size - loaded, now, rng)
        load_s = time.monotonic() - started
        next_loaded = size
        log(f"loaded {size - loaded:,} clicks in {load_s:.0f} s")
        started = time.monotonic()
        with connection.cursor() as cursor:
            # Fresh statistics for the merge's plan (autovacuum would, later).
            cursor.execute("SET work_mem = '256MB'")
            cursor.execute(
                "ANALYZE conversions_offerstat, conversions_trafficstat, conversions_substat"
            )
        rollups.merge()
        merge_s = time.monotonic() - started
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
            cursor.execute("SELECT count(*) FROM conversions_conversion")
            conversions = cursor.fetchone()[0]
        loaded = next_loaded
        counters = {m.__name__: m.objects.count() for m in (OfferStat, TrafficStat, SubStat)}
        point = {
            "clicks": size,
            "conversions": conversions,
            "load_s": round(load_s, 1),
            "merge_s": round(merge_s, 1),
            "counter_rows": counters,
            "reports": {
                name: _time(stack.base_url, token, {**params, **window})
                for name, params in REPORTS.items()
            },
        }
        points.append(point)
        log(
            f"stats at {size:,} clicks ({conversions:,} conversions; loaded in {load_s:.0f} s,"
            f" merged in {merge_s:.0f} s; counters {counters}): "
            + ", ".join(f"{n} {r['median_ms']:.0f} ms" for n, r in point["reports"].items())
        )
    return {"points": points, "targets_ms": TARGETS_MS, "window": window, "repeat": REPEAT}


def write(result: dict, out_dir: Path) -> None:
    """docs/bench-stats.md (the table) and docs/bench-stats.png (answer time vs clicks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    xs = [p["clicks"] / 1e6 for p in points]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in REPORTS:
        ax.plot(xs, [p["reports"][name]["median_ms"] for p in points], marker="o", label=name)
    for name, target in result["targets_ms"].items():
        ax.axhline(target, linestyle="--", linewidth=1, color="grey")
        ax.text(xs[0], target, f" target {name}: {target} ms", va="bottom", fontsize=8)
    ax.set_xlabel("clicks in the table (millions)")
    ax.set_ylabel("answer time, median (ms)")
    ax.set_title("30-day report over HTTP vs data size")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "bench-stats.png", dpi=100)
    plt.close(fig)
    note = result.get("note")
    lines = [
        "# Statistics: report answer time against data size",
        "",
        "Written by `make bench` (case `stats`; `BENCH_CASES=stats` runs it alone,",
        "`BENCH_STATS_SIZES` sets the sizes). Clicks and conversions are loaded with",
        "COPY over the last 30 days; the triggers keep the hourly counters as for any",
        "insert, and the beat's merge runs before the reports are timed. Each figure is",
        f"the median (and max) of {result['repeat']} answers of `GET /api/v1/stats/` over",
        f"HTTP for {result['window']['date_from']} to {result['window']['date_to']}.",
        "",
        "| clicks | conversions | load (s) | counter rows (offer / traffic / sub) | "
        + " | ".join(f"{n} (ms)" for n in REPORTS)
        + " |",
        "|---:|---:|---:|---|" + "---:|" * len(REPORTS),
    ]
    for p in points:
        c = p["counter_rows"]
        lines.append(
            f"| {p['clicks']:,} | {p['conversions']:,} | {p['load_s']} |"
            f" {c['OfferStat']:,} / {c['TrafficStat']:,} / {c['SubStat']:,} | "
            + " | ".join(
                f"{p['reports'][n]['median_ms']:.0f} (max {p['reports'][n]['max_ms']:.0f})"
                for n in REPORTS
            )
            + " |"
        )
    lines += [
        "",
        "Targets: "
        + ", ".join(f"`{n}` under {t} ms" for n, t in result["targets_ms"].items())
        + ".",
        "",
        "![answer time vs data size](bench-stats.png)",
        "",
        *([note, ""] if note else []),
        "Why the line is flat: a report reads counters, and a counter table grows with",
        "its keys, not with the clicks. `day,offer` reads the per-hour-and-offer table",
        f"(at most 720 hours x {OFFERS} offers x goal and status rows for 30 days);",
        "`sub1` the per-day-partner-and-sub table (30 days x 200 partners x their",
        f"{SUBS_PER_PARTNER} sub1 values, and the empty value of the other subs). Once the",
        "traffic has touched every key, more clicks add nothing to read. The",
        "per-hour-offer-partner-country table (`partner,country`) has far more keys",
        f"({OFFERS_PER_PARTNER * PARTNERS:,} offer-partner pairs x {len(COUNTRIES)} countries x 720",
        "hours), so it is still filling at these sizes: its answer time grows until",
        "its keys are used up, and it reads more rows than the other two.",
        "",
    ]
    (out_dir / "bench-stats.md").write_text("\n".join(lines))
