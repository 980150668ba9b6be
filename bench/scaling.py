"""Bench case "scaling": processing rate with 1, 2 and 4 worker processes, and 2 worker hosts.

Each configuration processes the same preloaded backlog of received
postbacks (one click each) from the first dispatch until every one is final;
the rate is postbacks over that time, the median of BENCH_RUNS runs. Beside
it, the CPU time each part spent meanwhile, read from /proc: PostgreSQL (the
postmaster and every backend), the Celery workers (masters and pool
processes), Redis, and the whole machine (shared with other work: context
only). The database's share is its CPU over the pipeline's (database, workers
and Redis). "2 hosts" is two worker instances of 2 processes, each with a
``var/`` of its own, as two machines run them.
"""

import json
import os
from pathlib import Path

from bench import data, load
from bench.feed import Nudger, insert_received
from bench.measure import median_spread, new_tag, unfinished, wait_drained
from bench.stack import Stack, wait_until

COUNT = int(os.environ.get("BENCH_SCALING_COUNT", "5000"))
CONFIGS = [
    ("1 process", [1]),
    ("2 processes", [2]),
    ("4 processes", [4]),
    ("2 hosts x 2", [2, 2]),
]
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of ``roots`` and every descendant, living and reaped."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo, seen = 0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen or not (fields := _stat(pid)):
            continue
        seen.add(pid)
        # utime, stime, and cutime, cstime: children that ended and were waited for.
        total += sum(int(x) for x in fields[11:15])
        todo.extend(children.get(pid, []))
    return total / _TICK


def machine_busy() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / _TICK


def _postmaster(stack: Stack) -> int:
    return int((stack.pgdata / "postmaster.pid").read_text().split()[0])


def _redis(stack: Stack) -> int:
    return int((stack.dir / "redis" / "redis.pid").read_text().strip())


def _wal(stack: Stack) -> int:
    return int(float(stack.psql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")))


# What the application asks of the database, read from pg_stat_statements
# (track = all: statements run by triggers count too). Transaction control and
# settings are not work; the meter's own reads are left out.
_STATEMENTS = (
    "SELECT coalesce(sum(calls), 0), coalesce(sum(rows), 0) FROM pg_stat_statements"
    " WHERE query !~* '^\\s*(begin|commit|rollback|savepoint|release|set|show)\\M'"
    " AND query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE '%pg_current_wal_lsn%'"
)


def _track_statements(stack: Stack, track: str) -> bool:
    """Turn statement counting on ('all') or off ('none'); False where it is not loaded."""
    from bench.stack import STATEMENTS_OPTIONS

    if not STATEMENTS_OPTIONS:
        return False
    stack.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    stack.psql(f"ALTER SYSTEM SET pg_stat_statements.track = '{track}'")
    stack.psql("SELECT pg_reload_conf()")
    stack.psql("SELECT pg_stat_statements_reset()")
    return True


class Meter:
    """CPU seconds of the database, the given app processes and Redis, WAL bytes, and the
    statements and rows the database ran, over a span."""

    def __init__(self, stack: Stack, roots: list[int]) -> None:
        self.stack, self.roots = stack, roots
        self.statements = self.rows = float("nan")

    def read(self) -> tuple[float, ...]:
        return (
            tree_cpu([_postmaster(self.stack)]),
            tree_cpu(self.roots),
            tree_cpu([_redis(self.stack)]),
            machine_busy(),
            float(_wal(self.stack)),
        )

    def __enter__(self):
        self.counting = _track_statements(self.stack, "all")
        self.before = self.read()
        return self

    def __exit__(self, *exc):
        after = self.read()
        self.db, self.app, self.redis, self.machine, self.wal = (
            b - a for a, b in zip(self.before, after, strict=True)
        )
        if self.counting:
            calls, rows = self.stack.psql(_STATEMENTS).split("|")
            self.statements, self.rows = float(calls), float(rows)
            _track_statements(self.stack, "none")


def intake_costs(stack: Stack, clickid: str, offer_id: int, pid: int, runs: int, log) -> dict:
    """What one accepted postback and one stored click cost the web and the database.

    wrk at 64 connections for 10 s on /postback (no worker runs: the postbacks
    stay received) and on /click (the buffer flushed into the table by this
    process at the end, so the database's cost of storing the clicks counts).
    """
    from conversions.intake import click_buffer

    web = stack.procs["web"].pid
    results: dict[str, list[dict]] = {"postback": [], "click": []}
    for run in range(runs):
        for name in ("postback", "click"):
            with Meter(stack, [web]) as meter:
                if name == "postback":
                    answer = load.wrk(
                        f"{stack.base_url}/postback",
                        seconds=10,
                        WRK_POSTBACK_CLICKID=clickid,
                        WRK_RUN=new_tag(f"cost{run}"),
                    )
                else:
                    answer = load.wrk(
                        f"{stack.base_url}/click?offer_id={offer_id}&pid={pid}", seconds=10
                    )
                    while click_buffer.pending():
                        click_buffer.flush()
            n = answer["requests"]
            results[name].append(
                {
                    "rps": answer["rps"],
                    "web_cpu_ms": 1000 * meter.app / n,
                    "db_cpu_ms": 1000 * meter.db / n,
                    "redis_cpu_ms": 1000 * meter.redis / n,
                    "wal_bytes": meter.wal / n,
                    "statements": meter.statements / n,
                    "rows": meter.rows / n,
                    "machine_busy_s": meter.machine,
                }
            )
            log(
                f"{name}: {answer['rps']:.0f}/s; per request: web {1000 * meter.app / n:.2f} ms"
                f", db {1000 * meter.db / n:.2f} ms CPU, WAL {meter.wal / n:.0f} bytes"
            )
        data.reset_postbacks()
    return {
        name: {key: median_spread([m[key] for m in rows]) for key in rows[0]}
        for name, rows in results.items()
    }


def _process_once(stack: Stack, clickids: list[str], label: str, hosts, run: int, log) -> dict:
    """One configuration's workers started, the backlog processed once, the workers stopped."""

    names = [f"scale{i}" for i in range(len(hosts))]
    for name, concurrency in zip(names, hosts, strict=True):
        var = stack.dir / f"{name}-var"
        var.mkdir(exist_ok=True)
        stack.start_worker(name, concurrency=concurrency, VAR_DIR=str(var))
    for name in names:
        wait_until(lambda name=name: stack.worker_ready(name), 60, f"worker {name}")
    data.reset_postbacks()
    stack.flush_redis()
    insert_received(clickids, COUNT, new_tag(f"scale{run}-"))
    roots = [stack.procs[name].pid for name in names]
    with Meter(stack, roots) as meter, Nudger():
        took = wait_drained(COUNT, timeout=300)
    if took is None:
        raise RuntimeError(f"{label}: {unfinished()} postbacks not final in 300 s")
    for name in names:
        stack.stop(name)
    log(
        f"{label}: {COUNT} final in {took:.1f}s = {COUNT / took:.0f}/s; CPU s: db "
        f"{meter.db:.1f}, workers {meter.app:.1f}, redis {meter.redis:.1f}, "
        f"machine {meter.machine:.1f} of {os.cpu_count() * took:.1f}"
    )
    return {
        "rate": COUNT / took,
        "db_cpu_s": meter.db,
        "worker_cpu_s": meter.app,
        "redis_cpu_s": meter.redis,
        "machine_busy_s": meter.machine,
        "seconds": took,
        "db_share": meter.db / (meter.db + meter.app + meter.redis),
        "wal_bytes_per_postback": meter.wal / COUNT,
        "statements_per_postback": meter.statements / COUNT,
        "rows_per_postback": meter.rows / COUNT,
    }


def case_scaling(
    stack: Stack, clickids: list[str], runs: int, out_dir: Path, log, offer_id: int, pid: int
) -> dict:
    log("intake: CPU and WAL per accepted postback and per stored click (web only)")
    intake = intake_costs(stack, clickids[-1], offer_id, pid, runs, log)
    measured: dict[str, list[dict]] = {label: [] for label, _ in CONFIGS}
    # Rounds interleave the configurations, so a spell of other work on the
    # shared machine falls on each of them, not on one.
    for run in range(runs):
        for label, hosts in CONFIGS:
            measured[label].append(_process_once(stack, clickids, label, hosts, run, log))
    results = {}
    for label, hosts in CONFIGS:
        rows = measured[label]
        results[label] = {
            "processes": sum(hosts),
            "hosts": len(hosts),
            **{key: median_spread([m[key] for m in rows]) for key in rows[0] if key != "seconds"},
            # Per postback: what a sizing takes from these runs.
            "db_cpu_ms_per_postback": median_spread([1000 * m["db_cpu_s"] / COUNT for m in rows]),
            "worker_cpu_ms_per_postback": median_spread(
                [1000 * m["worker_cpu_s"] / COUNT for m in rows]
            ),
        }
    summary = {
        "count": COUNT,
        "runs": runs,
        "cpus": os.cpu_count(),
        "configs": results,
        "intake": intake,
        "load": os.getloadavg(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench-scaling.json").write_text(json.dumps(summary, indent=1))
    chart(summary, out_dir / "bench-scaling.png")
    return summary


def chart(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = summary["configs"]
    labels = list(configs)
    rates = [configs[c]["rate"] for c in labels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    medians = [r["median"] for r in rates]
    errors = [
        [m - r["min"] for m, r in zip(medians, rates, strict=True)],
        [r["max"] - m for m, r in zip(medians, rates, strict=True)],
    ]
    left.bar(labels, medians, yerr=errors, capsize=4, color="#4477aa")
    left.set_ylabel("postbacks processed per second")
    left.set_title(f"Processing rate, {summary['count']} postbacks (median, min-max)")
    for i, m in enumerate(medians):
        left.annotate(f"{m:.0f}/s", (i, m / 2), ha="center", color="white", fontsize=9)
    parts = ("db_cpu_s", "worker_cpu_s", "redis_cpu_s")
    names = ("PostgreSQL", "Celery workers", "Redis")
    colours = ("#cc6677", "#4477aa", "#999933")
    bottom = [0.0] * len(labels)
    for part, name, colour in zip(parts, names, colours, strict=True):
        per = [1000 * configs[c][part]["median"] / summary["count"] for c in labels]
        right.bar(labels, per, bottom=bottom, label=name, color=colour)
        bottom = [b + p for b, p in zip(bottom, per, strict=True)]
    for i, c in enumerate(labels):
        share = configs[c]["db_share"]["median"]
        right.annotate(f"db {share:.0%}", (i, bottom[i]), ha="center", va="bottom", fontsize=9)
    right.set_ylabel("CPU ms per postback")
    right.set_title("CPU per postback, and the database's share")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.tick_params(axis="x", labelsize=8)
    load = summary.get("load")
    fig.suptitle(
        f"Worker scaling on {summary['cpus']} shared cores (Redis broker, batches of up to 500)"
        + (f"; load average {load[0]:.0f} from other work at the end" if load else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _n(value: dict | None) -> str:
    """A per-item count to two places; a dash where it was not counted."""
    if not value or value["median"] != value["median"]:
        return "-"
    return f"{value['median']:.2f}"


def section(summary: dict) -> str:
    """The report's section: one row per configuration."""
    rows = [
        "| workers | postbacks/s (median, min-max) | PostgreSQL CPU ms / postback | "
        "workers CPU ms / postback | database share of the pipeline's CPU | WAL bytes / "
        "postback | statements / postback | rows / postback |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, c in summary["configs"].items():
        rate = c["rate"]
        rows.append(
            f"| {label} | {rate['median']:.0f} ({rate['min']:.0f}-{rate['max']:.0f}) | "
            f"{c['db_cpu_ms_per_postback']['median']:.2f} | "
            f"{c['worker_cpu_ms_per_postback']['median']:.2f} | "
            f"{c['db_share']['median']:.0%} | {c['wal_bytes_per_postback']['median']:.0f} | "
            f"{_n(c.get('statements_per_postback'))} | {_n(c.get('rows_per_postback'))} |"
        )
    rows += [
        "",
        "| intake (wrk, 64 connections, 10 s) | requests/s | web CPU ms / request | "
        "PostgreSQL CPU ms / request | Redis CPU ms / request | WAL bytes / request | "
        "statements / request | rows / request |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in summary["intake"].items():
        rows.append(
            f"| {'GET /postback, accepted' if name == 'postback' else 'GET /click, stored'} | "
            f"{c['rps']['median']:.0f} | {c['web_cpu_ms']['median']:.2f} | "
            f"{c['db_cpu_ms']['median']:.3f} | {c['redis_cpu_ms']['median']:.3f} | "
            f"{c['wal_bytes']['median']:.0f} | {_n(c.get('statements'))} | {_n(c.get('rows'))} |"
        )
    return "\n".join(rows)
