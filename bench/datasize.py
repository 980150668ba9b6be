"""Bench case "datasize": the cost of clicks, accepts and processing against the clicks stored.

The click table grows in steps (BENCH_DATASIZE_SIZES, default 1M, 10M, 30M
clicks), loaded with COPY (bench/clicktable.py) for the bench's offer and
partner, created_at spread over the last 60 days, then VACUUM ANALYZE (as
autovacuum leaves a table; timed apart). At each size, side by side:

- clicks: wrk on /click next to the no-op view, stored clicks/s (case 5's method);
- accept: wrk on /postback next to the no-op view, the postbacks naming clicks
  spread over the whole table (case 1's method);
- settle: a backlog of received postbacks naming distinct random clicks of the
  whole table, old and new, processed batched to final (case 2's method),
  postbacks/s and the database's and the worker's CPU per postback; and the
  accept-to-conversion p50 at 20 postbacks/s (case 4's method) naming such clicks;
- the click lookup of processing: ``checks.check_click`` on a batch of
  BENCH_DATASIZE_LOOKUP clickids never asked before, spread over the table,
  timed in this process (BENCH_DATASIZE_LOOKUP_RUNS batches, median), and the
  plan of its query (EXPLAIN ANALYZE, BUFFERS) for one more such batch.

Each figure is also given as a ratio against the smallest size: flat is a
ratio of 1 within the spread of the rounds. Writes docs/bench-datasize.md and
docs/bench-datasize.png.
"""

import json
import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import data
from bench.clicktable import copy_clicks
from bench.feed import Nudger, insert_received
from bench.measure import median_spread, new_tag, unfinished, wait_drained
from bench.scaling import Meter

SIZES = [
    int(s)
    for s in os.environ.get("BENCH_DATASIZE_SIZES", "1000000,10000000,30000000").split(",")
    if s
]
ROUNDS = int(os.environ.get("BENCH_DATASIZE_ROUNDS", os.environ.get("BENCH_RUNS", "3")))
SETTLE_COUNT = int(os.environ.get("BENCH_DATASIZE_SETTLE", "3000"))
LOOKUP_BATCH = int(os.environ.get("BENCH_DATASIZE_LOOKUP", "500"))
LOOKUP_RUNS = int(os.environ.get("BENCH_DATASIZE_LOOKUP_RUNS", "7"))
SPAN_DAYS = 60
# Clickids kept while loading, spread evenly over the table: the postbacks'
# and lookups' clickids (about 20,000 at the smallest size).
POOL_AT_SMALLEST = 20_000
METRICS = {
    # key: (label, higher is better)
    "click_rps": ("clicks stored/s", True),
    "click_ratio": ("clicks / no-op", True),
    "click_p50_ms": ("click p50 ms", False),
    "accept_rps": ("postbacks accepted/s", True),
    "accept_ratio": ("accept / no-op", True),
    "accept_p50_ms": ("accept p50 ms", False),
    "settle_rate": ("postbacks settled/s", True),
    "settle_db_cpu_ms": ("settle, database CPU ms / postback", False),
    "settle_worker_cpu_ms": ("settle, worker CPU ms / postback", False),
    "settle_p50_ms": ("accept to conversion p50 ms at 20/s", False),
    "lookup_ms": ("click lookup of a batch, ms", False),
}


def _table_sizes() -> dict:
    """Rows, and the size of the table and its indexes (all partitions), and of the
    clickid's own index (the primary key, or the unique index before it was)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "WITH parts AS (SELECT relid FROM pg_partition_tree('conversions_click') WHERE isleaf)"
            " SELECT (SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM parts),"
            " (SELECT coalesce(sum(pg_indexes_size(relid)), 0) FROM parts),"
            " (SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i"
            "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            "  WHERE i.indrelid IN (SELECT relid FROM parts) AND i.indisunique"
            "  AND i.indnatts = 1 AND a.attname = 'clickid'),"
            " (SELECT count(*) FROM parts)"
        )
        heap, indexes, clickid_index, parts = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM conversions_click")
        rows = cursor.fetchone()[0]
    return {
        "rows": rows,
        "heap_mb": float(heap) / 2**20,
        "indexes_mb": float(indexes) / 2**20,
        "clickid_index_mb": float(clickid_index) / 2**20,
        "partitions": parts,
    }


def _vacuum_analyze() -> float:
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) conversions_click")
    return time.monotonic() - started


def _settle(pool: list[str], asked: set[str], stack, rng: random.Random, log) -> dict:
    """Batched processing of SETTLE_COUNT postbacks naming distinct random clicks.

    Beside the rate, the CPU the database and the worker spent per postback
    (/proc, bench/scaling.py's meter): the cost, less moved by other work on
    the machine than the rate.
    """
    from django.db.models import Count

    from conversions.models import Conversion, Postback

    rates, db_ms, worker_ms = [], [], []
    stack.start_pipeline()
    for run in range(ROUNDS):
        data.reset_postbacks()
        stack.flush_redis()
        named = rng.sample(pool, min(SETTLE_COUNT, len(pool)))
        asked.update(named)
        insert_received(named, SETTLE_COUNT, new_tag(f"ds{run}-"))
        with Meter(stack, [stack.procs["worker"].pid]) as meter, Nudger():
            took = wait_drained(SETTLE_COUNT, timeout=300)
        if took is None:
            raise RuntimeError(f"settle: {unfinished()} postbacks not final in 300 s")
        made = Conversion.objects.count()
        if made != SETTLE_COUNT:
            rejected = dict(
                Postback.objects.exclude(state="accepted")
                .values_list("error")
                .annotate(Count("id"))
            )
            raise RuntimeError(f"settle: {made} conversions of {SETTLE_COUNT}: {rejected}")
        rates.append(SETTLE_COUNT / took)
        db_ms.append(1000 * meter.db / SETTLE_COUNT)
        worker_ms.append(1000 * meter.app / SETTLE_COUNT)
        log(
            f"settle: {SETTLE_COUNT} postbacks final in {took:.1f}s = {rates[-1]:.0f}/s;"
            f" CPU per postback: database {db_ms[-1]:.2f} ms, worker {worker_ms[-1]:.2f} ms"
        )
    stack.stop("worker")
    stack.stop("beat")
    data.reset_postbacks()
    return {
        "rate": median_spread(rates),
        "db_cpu_ms": median_spread(db_ms),
        "worker_cpu_ms": median_spread(worker_ms),
    }


def _lookup(fresh: list[str], log) -> dict:
    """checks.check_click on batches of clickids not asked before; one more EXPLAINed."""
    from django.db import connection

    from conversions.models import Click
    from conversions.processing import checks

    now = datetime.now(UTC).isoformat()

    def batch() -> list[dict]:
        ids = [fresh.pop() for _ in range(LOOKUP_BATCH)]
        return [
            {"id": str(i), "params": {"clickid": cid}, "received_at": now}
            for i, cid in enumerate(ids)
        ]

    times = []
    token = checks.TABLE_ONLY.set(True)
    try:
        checks.check_click(batch()[:1])  # this process's connection opened, not timed
        for _ in range(LOOKUP_RUNS):
            pbs = batch()
            started = time.perf_counter()
            verdicts = checks.check_click(pbs)
            times.append((time.perf_counter() - started) * 1000)
            missed = sum(1 for v in verdicts.values() if v.reject)
            if missed:
                raise RuntimeError(f"lookup: {missed} of {len(pbs)} clicks not found")
    finally:
        checks.TABLE_ONLY.reset(token)
    wanted = [checks.clickid_of(pb) for pb in batch()]
    sql, params = Click.objects.filter(clickid__in=wanted).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    top = plan[0]
    node = top["Plan"]
    shown = node["Node Type"] + (f" on {node['Index Name']}" if "Index Name" in node else "")
    if node["Node Type"] == "Append":
        shown += f" of {len(node.get('Plans', []))} partitions"
    result = {
        "ms": median_spread(times),
        "explain_ms": top["Execution Time"],
        "planning_ms": top.get("Planning Time", 0.0),
        "plan_node": shown,
        "buffers_hit": node.get("Shared Hit Blocks", 0),
        "buffers_read": node.get("Shared Read Blocks", 0),
    }
    log(
        f"lookup of {LOOKUP_BATCH} clicks: median {result['ms']['median']:.1f} ms"
        f" (runs {', '.join(f'{t:.1f}' for t in times)}); EXPLAIN: {result['plan_node']},"
        f" {result['explain_ms']:.1f} ms, buffers hit {result['buffers_hit']},"
        f" read {result['buffers_read']}"
    )
    return result


def _result(points: list[dict]) -> dict:
    result = {
        "points": points,
        "rounds": ROUNDS,
        "settle_count": SETTLE_COUNT,
        "lookup_batch": LOOKUP_BATCH,
        "lookup_runs": LOOKUP_RUNS,
        "span_days": SPAN_DAYS,
        "cpus": os.cpu_count(),
    }
    _ratios(result)
    return result


def case_datasize(stack, offer, partner, log, *, accept, clicks, light, out_dir: Path) -> dict:
    """Grow the table through SIZES, measuring at each size (see the module's docstring).

    ``accept``, ``clicks`` and ``light``: run.py's cases 1, 5 and 4, called with
    ROUNDS rounds.
    """
    from django.db import connection

    from offers.models import Offer

    # The loaded clicks are up to 60 days old; the offer accepts postbacks for
    # them all (its default click lifespan is 30 days), so every postback converts.
    lifespan = offer.click_lifespan
    Offer.objects.filter(pk=offer.pk).update(click_lifespan=24 * (SPAN_DAYS + 1))
    rng = random.Random(3)
    keep_every = max(1, min(SIZES) // POOL_AT_SMALLEST)
    # The clicks already in the table (the bench's own, the newest), sampled at
    # the rate the loader keeps its own.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM conversions_click")
        existing = cursor.fetchone()[0]
        cursor.execute(
            "SELECT clickid FROM conversions_click TABLESAMPLE BERNOULLI (%s)",
            [100 / keep_every],
        )
        pool = [row[0] for row in cursor.fetchall()]
    asked: set[str] = set()
    points = []
    try:
        for size in SIZES:
            now = datetime.now(UTC)
            need = size - existing
            load = {"count": 0, "seconds": 0.0, "kept": [], "partitions_made": 0}
            if need > 0:
                log(f"datasize: loading {need:,} clicks (to {size:,})")
                load = copy_clicks(
                    need,
                    lambda clickid, at: {"offer_id": offer.pk, "partner_id": partner.pk},
                    now=now,
                    span_s=SPAN_DAYS * 86400,
                    rng=rng,
                    keep_every=keep_every,
                )
            pool += load["kept"]
            vacuum_s = _vacuum_analyze()
            table = _table_sizes()
            existing = table["rows"]
            log(
                f"datasize: {table['rows']:,} clicks; loaded {load['count']:,} in"
                f" {load['seconds']:.0f} s, VACUUM ANALYZE {vacuum_s:.0f} s; table"
                f" {table['heap_mb']:.0f} MB, indexes {table['indexes_mb']:.0f} MB"
            )
            load_before = os.getloadavg()
            # Clickids for the lookup: never named by a postback or an earlier lookup.
            unasked = [c for c in pool if c not in asked]
            fresh = rng.sample(unasked, min(len(unasked), LOOKUP_BATCH * (LOOKUP_RUNS + 2)))
            if len(fresh) < LOOKUP_BATCH * (LOOKUP_RUNS + 2):
                raise RuntimeError(f"lookup: {len(fresh)} clickids left in the pool")
            asked.update(fresh)
            lookup = _lookup(list(fresh), log)
            named = stack.dir / "datasize-clickids.txt"
            named.write_text("\n".join(rng.sample(pool, min(len(pool), 20_000))) + "\n")
            data.reset_postbacks()
            acc = accept(stack, "", runs=ROUNDS, clickids_file=named)
            data.reset_postbacks()
            clk = clicks(stack, offer.pk, partner.pk, runs=ROUNDS)
            settle = _settle(pool, asked, stack, rng, log)
            named = rng.sample(pool, min(len(pool), 2000))
            asked.update(named)
            latency = light(stack, named, runs=ROUNDS)
            stack.stop("worker")
            stack.stop("beat")
            data.reset_postbacks()
            point = {
                "size": size,
                **table,
                "load_rows": load["count"],
                "load_s": round(load["seconds"], 1),
                "partitions_made": load["partitions_made"],
                "vacuum_s": round(vacuum_s, 1),
                "load_avg": [load_before, os.getloadavg()],
                "click_rps": clk["click"]["rps"],
                "click_ratio": clk["click_ratio"],
                "click_p50_ms": clk["click"]["p50_ms"],
                "click_lost": clk["lost"],
                "accept_rps": acc["postback"]["rps"],
                "accept_ratio": acc["postback_ratio"],
                "accept_p50_ms": acc["postback"]["p50_ms"],
                "noop_rps": acc["noop"]["rps"],
                "settle_rate": settle["rate"],
                "settle_db_cpu_ms": settle["db_cpu_ms"],
                "settle_worker_cpu_ms": settle["worker_cpu_ms"],
                "settle_p50_ms": latency["p50_ms"],
                "settle_p99_ms": latency["p99_ms"],
                "lookup_ms": lookup["ms"],
                "lookup": {k: v for k, v in lookup.items() if k != "ms"},
            }
            points.append(point)
            log(
                f"datasize at {table['rows']:,}: "
                + ", ".join(f"{METRICS[k][0]} {point[k]['median']:.2f}" for k in METRICS)
            )
            # The numbers so far: a long run that breaks later keeps them
            # (``python -m bench.datasize`` writes the report from this file).
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "bench-datasize.json").write_text(
                json.dumps(_result(points), indent=1, default=str)
            )
    finally:
        Offer.objects.filter(pk=offer.pk).update(click_lifespan=lifespan)
    return _result(points)


def _ratios(result: dict) -> None:
    """Each metric against the smallest size, per round where rounds pair up."""
    points = result["points"]
    if not points:
        return
    base = points[0]
    for p in points:
        p["vs_smallest"] = {}
        for key in METRICS:
            runs, first = p[key]["runs"], base[key]["runs"]
            b = statistics.median(first)
            p["vs_smallest"][key] = {
                "median": p[key]["median"] / b if b else float("nan"),
                "min": min(runs) / b if b else float("nan"),
                "max": max(runs) / b if b else float("nan"),
                # The smallest size's own spread, as a ratio: what noise alone gives.
                "noise": (min(first) / b, max(first) / b) if b else (float("nan"),) * 2,
            }


def _fmt(stat: dict, key: str) -> str:
    digits = 2 if "ratio" in key or "cpu" in key else (1 if key.endswith("_ms") else 0)
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    xs = [p["rows"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    # The wrk p50s are 64 connections over the rate: the ratios say the same.
    shown = (
        "click_ratio",
        "accept_ratio",
        "settle_rate",
        "settle_db_cpu_ms",
        "settle_worker_cpu_ms",
        "settle_p50_ms",
        "lookup_ms",
    )
    for key in shown:
        ratios = [p["vs_smallest"][key] for p in points]
        medians = [r["median"] for r in ratios]
        errors = [
            [m - r["min"] for m, r in zip(medians, ratios, strict=True)],
            [r["max"] - m for m, r in zip(medians, ratios, strict=True)],
        ]
        left.errorbar(xs, medians, yerr=errors, marker="o", capsize=3, label=METRICS[key][0])
    left.axhline(1, color="grey", linewidth=1, linestyle="--")
    left.set_xscale("log")
    left.set_xlabel("clicks in the table (log)")
    left.set_ylabel("against the smallest size (1 = flat)")
    left.set_title("Each figure over its value at the smallest size (median, min-max)")
    top = max(2.0, *(p["vs_smallest"][k]["max"] for p in points for k in shown))
    left.set_ylim(0, min(top * 1.05, 4))
    left.legend(fontsize=7, loc="upper left")
    lookup = [p["lookup_ms"] for p in points]
    right.errorbar(
        xs,
        [s["median"] for s in lookup],
        yerr=[
            [s["median"] - s["min"] for s in lookup],
            [s["max"] - s["median"] for s in lookup],
        ],
        marker="o",
        capsize=3,
        label=f"check_click, {result['lookup_batch']} clickids (median, min-max)",
    )
    right.plot(
        xs,
        [p["lookup"]["explain_ms"] for p in points],
        marker="s",
        linestyle=":",
        label="one IN list (old shape), EXPLAIN ANALYZE execution",
    )
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("clicks in the table (log)")
    right.set_ylabel("ms per batch")
    right.set_title("The click lookup inside processing")
    right.legend(fontsize=8)
    loads = [p["load_avg"][0][0] for p in points]
    fig.suptitle(
        f"Cost against data size on {result['cpus']} shared cores; 1-minute load average "
        f"{min(loads):.1f}-{max(loads):.1f} at the sizes' starts",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def section(result: dict, heading: str = "###") -> str:
    """The tables: the sizes and their loads, then each figure and its ratio."""
    points = result["points"]
    lines = [
        "| clicks in the table | loaded | load | rows/s | VACUUM ANALYZE | table / indexes "
        "(clickid index) | partitions | load average (1 min) at start, end |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for p in points:
        rate = f"{p['load_rows'] / p['load_s']:,.0f}" if p["load_s"] else "-"
        lines.append(
            f"| {p['rows']:,} | {p['load_rows']:,} | {p['load_s']:.0f} s | {rate} | "
            f"{p['vacuum_s']:.0f} s | {p['heap_mb']:,.0f} MB / {p['indexes_mb']:,.0f} MB "
            f"({p['clickid_index_mb']:,.0f} MB) | {p.get('partitions', 1)} | "
            f"{p['load_avg'][0][0]:.1f}, "
            f"{p['load_avg'][1][0]:.1f} |"
        )
    lines += [
        "",
        f"{heading} Each figure (median, min-max of the rounds), and against the smallest size",
        "",
        "| figure | " + " | ".join(f"{p['rows']:,} clicks" for p in points) + " |",
        "| --- |" + " --- |" * len(points),
    ]
    for key, (label, _) in METRICS.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(p[key], key) for p in points) + " |")
    for key, (label, _) in METRICS.items():
        cells = []
        for p in points:
            r = p["vs_smallest"][key]
            cells.append(f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})")
        lines.append(f"| {label}, against the smallest | " + " | ".join(cells) + " |")
    noise = [
        f"{METRICS[k][0]} {points[0]['vs_smallest'][k]['noise'][0]:.2f}-"
        f"{points[0]['vs_smallest'][k]['noise'][1]:.2f}"
        for k in METRICS
    ]
    lines += [
        "",
        "The noise, for scale: the smallest size's own rounds span, against their median, "
        + "; ".join(noise)
        + ".",
        "",
        f"{heading} One IN list over the whole table, for comparison",
        "",
        "The plan of `clickid IN (the batch)` as one list: the shape the checks used",
        "before they asked per day (`checks._by_partition`); the lookup times above are",
        "the checks' own per-day query.",
        "",
        "| clicks | plan | planning | execution | shared buffers hit / read |",
        "| ---: | --- | ---: | ---: | --- |",
    ]
    for p in points:
        q = p["lookup"]
        lines.append(
            f"| {p['rows']:,} | {q['plan_node']} | {q.get('planning_ms', 0):.1f} ms | "
            f"{q['explain_ms']:.1f} ms | "
            f"{q['buffers_hit']:,} / {q['buffers_read']:,} |"
        )
    return "\n".join(lines)


def write(result: dict, out_dir: Path) -> None:
    """docs/bench-datasize.md and docs/bench-datasize.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chart(result, out_dir / "bench-datasize.png")
    note = result.get("note")
    sizes = ", ".join(f"{p['size']:,}" for p in result["points"])
    lines = [
        "# Data size: cost against the clicks stored",
        "",
        "Written by `make bench` (case `datasize`; `BENCH_CASES=datasize` runs it alone,",
        "`BENCH_DATASIZE_SIZES` sets the sizes, e.g. `100000,300000` for a quick run).",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at {sizes} clicks.",
        "",
        "The click table grows in steps. Each step is loaded with COPY in chunks of",
        "500,000 rows, one transaction each, into the columns of the Click model, with",
        "its indexes, constraints and triggers in place (as the product's table holds",
        "them: nothing is dropped), clickids made by `new_clickid` (given the click's",
        f"time: they name their day), `created_at` spread over the last {result['span_days']} days",
        "(in time order within a chunk). The table is partitioned by day",
        "(`conversions/lifecycle/partitions.py`): the day partitions of those days are",
        "made first, as the beat made each ahead of its day, so every click is in its",
        "day's partition. Then `VACUUM (ANALYZE)`, as autovacuum would leave the table",
        "(timed apart). At each size, with the same gunicorn, worker and database:",
        "",
        f"- **clicks**: wrk, 64 connections, on `/click` next to the no-op view, {result['rounds']}",
        "  rounds (case 5's method: worker and beat flush the click buffer; the rate counts",
        "  clicks stored);",
        "- **accept**: wrk on `/postback` next to the no-op view (case 1's method), the",
        "  postbacks naming 20,000 clicks drawn from the whole table in turn;",
        f"- **settle**: {result['settle_count']:,} received postbacks naming distinct clicks",
        "  drawn from the whole table (old and new), processed in batches to final (case 2's",
        "  method; each must make its conversion): postbacks/s, and the CPU the database (the",
        "  postmaster and its backends) and the worker (master and pool) spent per postback,",
        "  read from /proc (the cost: less moved by other work on the machine than a rate);",
        "  then 20 postbacks/s over HTTP naming such clicks (case 4's method): accept to",
        "  conversion p50;",
        f"- **click lookup**: `conversions.processing.checks.check_click` on a batch of "
        f"{result['lookup_batch']}",
        f"  clickids drawn from the whole table and never asked before, {result['lookup_runs']} "
        "batches",
        "  (median, min-max), timed in the bench's process; one more batch's query under",
        "  `EXPLAIN (ANALYZE, BUFFERS)`.",
        "",
        "The clickids named are a sample kept while loading, evenly spread over the table",
        "(the bench's own 100,000 newest clicks included at the same rate). The offer's click",
        f"lifespan is raised to {result['span_days'] + 1} days for the case, so every",
        "postback converts. Ratios against the smallest size: flat is 1 within the spread.",
        "",
        "## Sizes and loads",
        "",
        section(result, "##"),
        "",
        "![cost against data size](bench-datasize.png)",
        "",
        *([note, ""] if note else []),
    ]
    (out_dir / "bench-datasize.md").write_text("\n".join(lines))


if __name__ == "__main__":
    # The report again from docs/bench-datasize.json (e.g. after a note is added).
    docs = Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parent.parent / "docs"))
    write(json.loads((docs / "bench-datasize.json").read_text()), docs)
