"""docs/benchmarks.md and its charts from the numbers bench/run.py measured."""

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _ms(stat: dict) -> str:
    return f"{stat['median']:.0f} ms ({stat['min']:.0f}-{stat['max']:.0f})"


def _rate(stat: dict) -> str:
    return f"{stat['median']:.0f}/s ({stat['min']:.0f}-{stat['max']:.0f})"


def _ratio(stat: dict) -> str:
    return f"{stat['median']:.2f}x ({stat['min']:.2f}-{stat['max']:.2f})"


def _bar(ax, labels, stats, ylabel, title):
    medians = [s["median"] for s in stats]
    low = [s["median"] - s["min"] for s in stats]
    high = [s["max"] - s["median"] for s in stats]
    ax.bar(labels, medians, yerr=[low, high], capsize=6, color=["#888", "#2a7", "#27a", "#a72"])
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def charts(results: dict, out: Path) -> dict[str, str]:
    names = {}
    acc = results["accept"]
    fig, ax = plt.subplots(figsize=(6, 4))
    clk = results["clicks"]
    _bar(
        ax,
        ["no-op (1)", "postback accept", "no-op (5)", "click, stored"],
        [acc["noop"]["rps"], acc["postback"]["rps"], clk["noop"]["rps"], clk["click"]["rps"]],
        "requests/s",
        "Cases 1 and 5: requests/s at 64 connections",
    )
    names["accept"] = "bench-accept.png"
    fig.tight_layout()
    fig.savefig(out / names["accept"], dpi=100)
    plt.close(fig)

    e2e = results["e2e"]
    fig, ax = plt.subplots(figsize=(6, 4))
    _bar(
        ax,
        ["batch size 1", f"batch size {e2e['batched']['size']}", "accept (case 1)"],
        [e2e["single"]["rate"], e2e["batched"]["rate"], acc["postback"]["rps"]],
        "postbacks/s",
        "Case 2: accept to final state, postbacks/s",
    )
    names["e2e"] = "bench-e2e.png"
    fig.tight_layout()
    fig.savefig(out / names["e2e"], dpi=100)
    plt.close(fig)

    keep = results["keepup"]
    fig, ax = plt.subplots(figsize=(6, 4))
    samples = keep["samples"]
    ax.plot([t for t, _ in samples], [b for _, b in samples], "-", label="backlog")
    seconds = results["config"]["keepup_seconds"]
    ax.axvline(seconds, color="grey", linestyle=":", label="load stops")
    ax.set_xlabel("seconds")
    ax.set_ylabel("postbacks not yet final")
    ax.set_title(f"Case 2: backlog while accepting {keep['accept_rps']:.0f}/s at full speed")
    ax.legend()
    names["keepup"] = "bench-backlog.png"
    fig.tight_layout()
    fig.savefig(out / names["keepup"], dpi=100)
    plt.close(fig)

    burst = results["burst"]
    fig, ax = plt.subplots(figsize=(6, 4))
    shares = [[r["lost_share"] * 100 for r in burst[m]] for m in ("sync", "async")]
    ax.boxplot(shares, tick_labels=["sync (legacy)", "async (ours)"])
    for i, values in enumerate(shares, start=1):
        ax.scatter([i] * len(values), values, color="#a22", zorder=3)
    ax.set_ylabel("% of postbacks lost")
    ax.set_title("Case 3: the same burst, lost postbacks per run")
    names["burst"] = "bench-sync-vs-async.png"
    fig.tight_layout()
    fig.savefig(out / names["burst"], dpi=100)
    plt.close(fig)

    latencies = sorted(results["light"]["latencies_ms"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(latencies, [i / len(latencies) for i in range(len(latencies))])
    ax.set_xscale("log")
    ax.set_xlabel("accept to conversion, ms (log)")
    ax.set_ylabel("share of postbacks")
    ax.set_title("Case 4: latency at 20 postbacks/s (CDF)")
    names["light"] = "bench-latency.png"
    fig.tight_layout()
    fig.savefig(out / names["light"], dpi=100)
    plt.close(fig)
    return names


def _drain(keep: dict) -> str:
    drain = keep["drain_after_stream_s"]
    return f"drained {drain:.1f} s after" if drain is not None else "did not drain in 60 s"


def _keeps_up(keep: dict) -> bool:
    drain = keep["drain_after_stream_s"]
    return (
        keep["slope_second_half"] < 0.02 * keep["accept_rps"] and drain is not None and drain <= 10
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def markdown(results: dict, names: dict[str, str]) -> str:
    cfg = results["config"]
    acc, clk, e2e, keep, light, burst = (
        results[k] for k in ("accept", "clicks", "e2e", "keepup", "light", "burst")
    )
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench` "
        f"({cfg['seconds'] / 60:.1f} min) on this machine: {cfg['cpus']} CPUs shared by "
        "everything (load generator, gunicorn, Celery, PostgreSQL, Redis), loopback only, "
        f"1-minute load average {cfg['load_before'][0]:.1f} at the start, "
        f"{cfg['load_mid'][0]:.1f} midway and {cfg['load_after'][0]:.1f} at the end (other work "
        "on the machine shows up as spread and as lower absolute numbers). Private PostgreSQL 15 (port 5440) and Redis with "
        "docker-compose's persistence (port 6390), stopped at the end. gunicorn "
        f"`--workers {cfg['web_workers']}` (sync workers), one Celery worker "
        f"`--concurrency {cfg['worker_concurrency']}` plus beat; `DEBUG=0`, `CONN_MAX_AGE=60`, "
        f"result backend {cfg['result_backend']}, cache {cfg.get('cache', 'Redis')}. "
        f"Each figure is the median of "
        f"{cfg['runs']} runs ({cfg.get('accept_runs', cfg['runs'])} rounds for cases 1 and 5) "
        "with the spread (min-max) in brackets; each ratio is taken within one round, then "
        "the median of the rounds.",
        "",
        "Rerun: `make bench` (writes this file, `docs/benchmarks.json` and the charts). "
        "The fault test (`make faults`, short form `make faults-short` in CI) writes "
        "[faults.md](faults.md).",
        "",
        "## Summary",
        "",
        "| case | measured | target | |",
        "| --- | --- | --- | --- |",
        f"| 1. accept, 64 connections | {_rate(acc['postback']['rps'])}, "
        f"{_ratio(acc['postback_ratio'])} the no-op view | >= 0.45x no-op | "
        f"{_verdict(acc['postback_ratio']['median'] >= 0.45)} |",
        f"| 2. end to end, batched vs size 1 | {_rate(e2e['batched']['rate'])} vs "
        f"{_rate(e2e['single']['rate'])}: {_ratio(e2e['ratio'])} | >= 10x | "
        f"{_verdict(e2e['ratio']['median'] >= 10)} |",
        f"| 2b. batched with 2 rules and a currency, vs without | "
        f"{_rate(results['workflows']['workflows'])} vs {_rate(results['workflows']['plain'])}: "
        f"{_ratio(results['workflows']['ratio'])} | >= 0.8x | "
        f"{_verdict(results['workflows']['ratio']['median'] >= 0.8)} |",
        f"| 2. pipeline keeps up with accept | accept at full speed beside the pipeline: "
        f"{keep['accept_rps']:.0f}/s for {cfg['keepup_seconds']} s; backlog "
        f"{keep['slope_second_half']:+.1f}/s over the 2nd half (max {keep['backlog_max']}), "
        f"{_drain(keep)} | backlog does not grow | {_verdict(_keeps_up(keep))} |",
        f"| 3. burst, lost (async) | {sum(r['lost'] for r in burst['async'])} of "
        f"{sum(r['sent'] for r in burst['async'])} in {len(burst['async'])} runs | 0 every run | "
        f"{_verdict(all(r['lost'] == 0 for r in burst['async']))} |",
        f"| 3. burst, lost (sync) | {sum(r['lost'] for r in burst['sync'])} of "
        f"{sum(r['sent'] for r in burst['sync'])} "
        f"({sum(r['lost'] for r in burst['sync']) / max(1, sum(r['sent'] for r in burst['sync'])):.1%})"
        " | measured | |",
        f"| 4. accept to conversion at 20/s | p50 {_ms(light['p50_ms'])}, "
        f"p99 {_ms(light['p99_ms'])} | reported | |",
        f"| 5. clicks, 64 connections, stored | {_rate(clk['click']['rps'])}, "
        f"{_ratio(clk['click_ratio'])} the no-op view | >= 0.5x no-op | "
        f"{_verdict(clk['click_ratio']['median'] >= 0.5)} |",
        f"| 5. clicks answered and not stored | {clk['lost']} of {clk['answered']} | 0 | "
        f"{_verdict(clk['lost'] == 0)} |",
        "",
        "## 1 and 5. Accept and clicks next to a no-op view",
        "",
        f"wrk, 2 threads, 64 connections, {cfg['wrk_seconds']} s per run, on the same gunicorn; "
        "in each round the no-op view and the endpoint alternate which goes first. The no-op "
        'view is a bench-only URL (`bench/urls.py`) that answers `{"status": 1}` through the '
        "full middleware stack; `/postback` and `/click` skip the middleware made for people "
        "(`conversions/intake/middleware.py`). Where an accepted postback's CPU goes: "
        "[accept.md](accept.md).",
        "",
        "- Case 1 (`GET /postback`): each postback has a unique action_id and a real click's "
        "clickid. No Celery worker runs, so the accept path has the CPUs to itself (as the "
        "no-op has).",
        "- Case 5 (`GET /click`): the worker and beat run, as in production. Each click is "
        "answered from the Redis click buffer and moved into the table by the beat's flush "
        "while wrk runs (`conversions/intake/click_buffer.py`). What was still buffered when wrk "
        "stopped (median "
        f"{clk['backlog']['median']:.0f} clicks) is flushed at once, and that time (median "
        f"{clk['flush_s']['median']:.2f} s) is added to the run's: the rate is clicks stored per "
        f"second. Answered: {_rate(clk['answer_rps'])}. Stored: {clk['stored']} of "
        f"{clk['answered']} clicks answered 302 ({clk['lost']} missing; wrk does not see the "
        "answers it cuts off at its deadline, so a few more are stored than it counts; "
        "`make faults` checks every click by its clickid). All clicks are for one offer and "
        "one partner: each web process asks the database about an (offer, partner) pair "
        "once per `CLICK_TARGET_TTL` (1 s).",
        "",
        "| endpoint | requests/s | p50 | p99 | errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, s in (
        ("no-op view (case 1)", acc["noop"]),
        ("GET /postback", acc["postback"]),
        ("no-op view (case 5)", clk["noop"]),
        ("GET /click, stored", clk["click"]),
    ):
        lines.append(
            f"| {label} | {_rate(s['rps'])} | {_ms(s['p50_ms'])} | {_ms(s['p99_ms'])} | "
            f"{s['errors']} |"
        )
    lines += [
        "",
        f"![requests per second]({names['accept']})",
        "",
        "## 2. End to end: batched vs batch size 1",
        "",
        "N received postbacks are stored as the accept view stores them, then the accept "
        "path's nudge is called every 100 ms (as steady traffic does) and the clock runs until "
        "every postback is in a final state (its conversion written). Worker and beat run with "
        f"`POSTBACK_BATCH_SIZE` {e2e['batched']['size']} (the default) or 1; same machine, "
        "same run.",
        "",
        "| batch size | postbacks per run | postbacks/s |",
        "| --- | --- | --- |",
        f"| {e2e['batched']['size']} | {e2e['batched']['count']} | "
        f"{_rate(e2e['batched']['rate'])} |",
        f"| 1 | {e2e['single']['count']} | {_rate(e2e['single']['rate'])} |",
        f"| ratio | | {_ratio(e2e['ratio'])} |",
        "",
        f"![end to end]({names['e2e']})",
        "",
        "### Does the pipeline keep up?",
        "",
        f"wrk at 64 connections on `/postback` for {cfg['keepup_seconds']} s, as fast as the "
        "accept path answers, while the worker and beat run on the same two CPUs (so the "
        "accept rate here is lower than in case 1, where the accept path had the machine to "
        "itself). The backlog is the count of postbacks not yet final, sampled every 0.5 s. "
        "If the pipeline were slower than the accept path, the backlog would grow by the "
        "difference every second; the verdict asks that its least-squares growth over the "
        "second half be under 2% of the accept rate and that it drain within 10 s.",
        "",
        "| accepted/s | answered | errors | backlog max | backlog max, 2nd half "
        "| growth, 2nd half | backlog at end | drained after the load in |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {keep['accept_rps']:.0f} | {keep['answered']} | {keep['errors']} | "
        f"{keep['backlog_max']} | {keep['backlog_second_half_max']} | "
        f"{keep['slope_second_half']:+.1f}/s | {keep['backlog_end']} | {_drain(keep)} |",
        "",
        f"![backlog]({names['keepup']})",
        "",
        "## 3. Sync vs async: a burst above capacity",
        "",
        f"Open loop: {cfg['burst_rate']:.0f} postbacks/s (a quarter of the accept rate of case 1, which was measured with no worker running; here the worker shares the CPUs) for {cfg['burst_seconds']:.0f} s, "
        f"client timeout {cfg['client_timeout']:.0f} s, no retries (advertisers do not retry). "
        "Same gunicorn, same worker, same data; only `POSTBACK_PROCESSING` differs. *Lost* = "
        "the advertiser did not get status 1 in time (timeout, connection error, 5xx or "
        "status 2); *never recorded* = no Postback row; *no conversion* = no Conversion after "
        "the server and the pipeline drained.",
        "",
        "| mode | run | sent | answered 1 | timeouts | errors | status 2 | lost | lost % "
        "| of them recorded anyway | never recorded | no conversion | p50 | p99 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("sync", "async"):
        for i, r in enumerate(burst[mode], start=1):
            lines.append(
                f"| {mode} | {i} | {r['sent']} | {r['answered_1']} | {r['timeouts']} | "
                f"{r['errors']} | {r['status_2']} | {r['lost']} | {r['lost_share']:.1%} | "
                f"{r['failed_but_recorded']} | {r['never_recorded']} | {r['no_conversion']} | "
                f"{r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms |"
            )
    lines += [
        "",
        f"![lost per run]({names['burst']})",
        "",
        "Past the accept path's own capacity the async mode times out too: an earlier full "
        "run, with the burst at *half* the accept rate of that day (385/s, before the accept "
        "path became one prepared statement), lost 0 in two async runs and 66% (all recorded, "
        "answered after the client's 5 s) in the third, when other work loaded the machine: "
        "[benchmarks-burst-at-half-accept.md](benchmarks-burst-at-half-accept.md).",
        "",
        "## 4. Latency at light load",
        "",
        f"20 postbacks/s for {cfg['light_seconds']:.0f} s per run, default batch size. "
        "Accept to conversion is the Conversion's `created_at` minus the Postback's "
        "`received_at` (both stamped by the server).",
        "",
        f"p50 {_ms(light['p50_ms'])}, p99 {_ms(light['p99_ms'])}.",
        "",
        f"![latency]({names['light']})",
        "",
    ]
    if "scaling" in results:
        from bench.scaling import section

        lines += [
            "## 6. Worker scaling",
            "",
            f"{results['scaling']['count']} received postbacks (one click each), from the "
            "first dispatch until all are final, with 1, 2 and 4 worker processes on one "
            "host and two worker hosts of 2 processes; CPU read from /proc for each part "
            "(the sizing in [scaling.md](scaling.md) is built on these).",
            "",
            section(results["scaling"]),
            "",
            "![worker scaling](bench-scaling.png)",
            "",
        ]
    if "datasize" in results:
        from bench.datasize import section as datasize_section

        sizes = ", ".join(f"{p['rows']:,}" for p in results["datasize"]["points"])
        lines += [
            "## 8. Cost against data size",
            "",
            f"The click table grown by COPY to {sizes} "
            "clicks; at each size clicks (case 5's method), accept (case 1's, the postbacks "
            "naming clicks of the whole table), batched processing of postbacks naming old and "
            "new clicks (case 2's), and the processing's click lookup for a batch of "
            f"{results['datasize']['lookup_batch']} clickids. Method and the loads: "
            "[bench-datasize.md](bench-datasize.md).",
            "",
            datasize_section(results["datasize"], "###"),
            "",
            "![cost against data size](bench-datasize.png)",
            "",
        ]
    return "\n".join(lines)


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = charts(results, out)
    raw = {k: v for k, v in results.items()}
    raw["light"] = {k: v for k, v in results["light"].items() if k != "latencies_ms"}
    (out / "benchmarks.json").write_text(json.dumps(raw, indent=1, default=str))
    (out / "benchmarks.md").write_text(markdown(results, names))
