"""CPU per request: what each answer costs the machine, process by process.

On a shared machine requests/s move with whatever else runs; the CPU time a
request costs the web workers, PostgreSQL and Redis does not (much). Starts
the private stack (web only, as bench case 1), then in interleaved rounds
runs wrk on each endpoint and reads the CPU time of every process of the
stack from /proc before and after. Prints, per endpoint, the median of the
rounds: requests/s and microseconds of CPU per request in gunicorn, in
PostgreSQL (all its processes: backends, WAL writer, checkpointer), in Redis,
and in wrk itself; and WAL flushes (fsyncs) per request.

    BENCH_PG_PORT=.. BENCH_REDIS_PORT=.. BENCH_WEB_PORT=.. \
        .venv/bin/python -m bench.cpu [--rounds 3] [--seconds 5] [--connections 64]

The web server's settings come from the environment as for ``make bench``
(WEB_CONCURRENCY is BENCH_WEB_WORKERS, default 4; any WEB_* variable is passed on).
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench import data, load
from bench.measure import new_tag
from bench.stack import REDIS_PORT, Stack

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def _cpu(pids: list[int]) -> float:
    """Seconds of user + system CPU of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def _postgres_pids(stack: Stack) -> list[int]:
    master = int((stack.pgdata / "postmaster.pid").read_text().split()[0])
    return _tree(master)


def _redis_pid() -> list[int]:
    out = subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "info", "server"], capture_output=True, text=True
    ).stdout
    return [int(line.split(":")[1]) for line in out.splitlines() if line.startswith("process_id:")]


def _wal_syncs(stack: Stack) -> int:
    return int(stack.psql("SELECT wal_sync FROM pg_stat_wal"))


def measure(stack: Stack, url: str, seconds: int, connections: int, **env: str) -> dict:
    web = _tree(stack.procs["web"].pid)
    groups = {"web": web, "postgres": _postgres_pids(stack), "redis": _redis_pid()}
    syncs_before = _wal_syncs(stack)
    before = {name: _cpu(pids) for name, pids in groups.items()}
    # Postgres backends are made per connection: count the ones born during the run too.
    wrk_before = os.times()
    result = load.wrk(url, seconds=seconds, connections=connections, **env)
    wrk_after = os.times()
    groups["postgres"] = sorted(set(groups["postgres"]) | set(_postgres_pids(stack)))
    after = {name: _cpu(pids) for name, pids in groups.items()}
    answered = result["requests"]
    row = {"rps": result["rps"], "errors": result["socket_errors"] + result["bad_status"]}
    # WAL flushes per request: below 1 when one flush commits several requests.
    row["wal_syncs"] = (_wal_syncs(stack) - syncs_before) / answered
    for name in groups:
        row[f"{name}_us"] = (after[name] - before[name]) / answered * 1e6
    wrk_cpu = (wrk_after.children_user + wrk_after.children_system) - (
        wrk_before.children_user + wrk_before.children_system
    )
    row["wrk_us"] = wrk_cpu / answered * 1e6
    row["total_us"] = sum(row[f"{name}_us"] for name in (*groups, "wrk"))
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--endpoints", default="noop,postback")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:VAR=VALUE,...",
        help="compare web servers started with these variables, in the same rounds",
    )
    args = parser.parse_args()
    workers = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
    web_env = {k: v for k, v in os.environ.items() if k.startswith("WEB_")}
    stack = Stack("cpu")
    try:
        stack.up()
        data.setup_django(stack.env())
        offer = data.make_offer("CPU offer")
        partner = data.make_partner()
        clickid = data.make_clicks(offer, partner, 1)[0]
        variants = {"": {}}
        if args.variant:
            variants = {}
            for spec in args.variant:
                name, _, assignments = spec.partition(":")
                variants[name] = dict(a.split("=", 1) for a in assignments.split(",") if a)
        urls = {
            "noop": (f"{stack.base_url}/noop", {}),
            "postback": (f"{stack.base_url}/postback", {"WRK_POSTBACK_CLICKID": clickid}),
            "click": (f"{stack.base_url}/click?offer_id={offer.pk}&pid={partner.pk}", {}),
        }
        endpoints = args.endpoints.split(",")
        names = [f"{v}/{e}" if v else e for v in variants for e in endpoints]
        rows: dict[str, list[dict]] = {name: [] for name in names}
        for run in range(args.rounds):
            for variant in variants if run % 2 == 0 else list(variants)[::-1]:
                if len(variants) > 1 or run == 0:
                    stack.stop("web")
                    stack.start_web(workers, **{**web_env, **variants[variant]})
                for endpoint in endpoints if run % 2 == 0 else endpoints[::-1]:
                    url, env = urls[endpoint]
                    if endpoint == "postback":
                        env = {**env, "WRK_RUN": new_tag(f"cpu{run}")}
                    name = f"{variant}/{endpoint}" if variant else endpoint
                    rows[name].append(measure(stack, url, args.seconds, args.connections, **env))
            line = ", ".join(
                f"{n} {rows[n][-1]['rps']:.0f}/s {rows[n][-1]['total_us']:.0f}us" for n in names
            )
            print(f"[cpu {time.strftime('%H:%M:%S')}] round {run + 1}: {line}", flush=True)
        summary = {}
        for name in names:
            summary[name] = {
                key: round(statistics.median(r[key] for r in rows[name]), 1)
                for key in rows[name][0]
            }
            noop = name.rsplit("/", 1)[0] + "/noop" if "/" in name else "noop"
            if not name.endswith("noop") and noop in rows:
                ratios = [r["rps"] / n["rps"] for r, n in zip(rows[name], rows[noop], strict=True)]
                summary[name]["ratio_to_noop"] = round(statistics.median(ratios), 3)
        print(json.dumps(summary, indent=1))
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
