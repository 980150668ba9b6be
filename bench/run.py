"""``make bench``: the product's promise in numbers, written to docs/benchmarks.md.

Starts a private PostgreSQL and Redis, gunicorn, a Celery worker and beat on
loopback, runs the cases of the benchmark (the worker-scaling case in
bench/scaling.py), and writes a Markdown report
with PNG charts. Every figure is the median of BENCH_RUNS runs with the
spread (min-max); ratios are taken within the same round.
"""

import os
import sys
import threading
import time
from pathlib import Path

from bench import data, load
from bench import stats as bench_stats
from bench.feed import Nudger, insert_received
from bench.measure import (
    FINAL,
    median_spread,
    new_tag,
    percentile,
    postback_urls,
    unfinished,
    wait_drained,
)
from bench.stack import REDIS_CACHE, Stack

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
# The ratios of cases 1 and 5 are the figures the noise of a shared machine moves
# most, and a round costs only 30 s: more rounds for them.
ACCEPT_RUNS = int(os.environ.get("BENCH_ACCEPT_RUNS", "5"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "10"))
CONNECTIONS = 64
WEB_WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "4"))
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "4"))
E2E_BATCHED_COUNT = int(os.environ.get("BENCH_E2E_BATCHED", "3000"))
E2E_SINGLE_COUNT = int(os.environ.get("BENCH_E2E_SINGLE", "100"))
KEEPUP_SECONDS = int(os.environ.get("BENCH_KEEPUP_SECONDS", "60"))
LIGHT_RATE = 20.0
LIGHT_SECONDS = float(os.environ.get("BENCH_LIGHT_SECONDS", "15"))
# The burst: a quarter of the accept rate measured in case 1 with no worker running
# (unless set): far above what the synchronous mode answers, within what the accept
# path answers while the worker shares the two CPUs. At half that rate a loaded
# machine pushed the accept path past its own capacity too (see docs).
BURST_RATE = float(os.environ.get("BENCH_BURST_RATE", "0"))
BURST_SECONDS = float(os.environ.get("BENCH_BURST_SECONDS", "6"))
CLIENT_TIMEOUT = float(os.environ.get("BENCH_CLIENT_TIMEOUT", "5"))
# A comma-separated subset of the cases (e.g. BENCH_CASES=accept) measures only
# those and prints their numbers instead of writing the report, which needs all.
CASES = (
    "accept",
    "clicks",
    "e2e",
    "workflows",
    "keepup",
    "light",
    "burst",
    "scaling",
    # Before stats: its sizes are the clicks in the table; stats counts the ones it loads.
    "datasize",
    "stats",
)
SELECTED = [c for c in os.environ.get("BENCH_CASES", ",".join(CASES)).split(",") if c]
# A click converts once per goal (a repeat is "Conversion exists"): enough clicks that
# each case's postbacks have one each (the keep-up case cycles through them).
CLICKS = int(os.environ.get("BENCH_CLICKS", "100000"))
# BENCH_WORKFLOWS=1: the offer has two rules and its postbacks come in another
# currency (data.add_workflows), as issue 15's bench asks: batched throughput
# with them active, against the figure without.
WORKFLOWS = os.environ.get("BENCH_WORKFLOWS", "") not in ("", "0")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def case_accept(
    stack: Stack, clickid: str, runs: int = ACCEPT_RUNS, clickids_file: Path | None = None
) -> dict:
    """Case 1: wrk at 64 connections on /noop and /postback, interleaved (web only).

    The postbacks name ``clickid``, or the clickids of ``clickids_file`` in turn.
    """
    naming = (
        {"WRK_POSTBACK_CLICKIDS": str(clickids_file)}
        if clickids_file
        else {"WRK_POSTBACK_CLICKID": clickid}
    )
    rounds = []
    for run in range(runs):
        # Alternated each round, so the database's background work after one case
        # (autovacuum and checkpoints after tens of thousands of inserts) does
        # not always fall on the same next case.
        measured = {}
        for name in ("noop", "postback") if run % 2 == 0 else ("postback", "noop"):
            if name == "noop":
                measured[name] = load.wrk(f"{stack.base_url}/noop", seconds=WRK_SECONDS)
            else:
                measured[name] = load.wrk(
                    f"{stack.base_url}/postback",
                    seconds=WRK_SECONDS,
                    WRK_RUN=new_tag(f"acc{run}"),
                    **naming,
                )
        rounds.append(measured)
        log(
            f"round {run + 1}: noop {measured['noop']['rps']:.0f}/s, "
            f"postback {measured['postback']['rps']:.0f}/s"
        )
    summary = _summary(rounds, ("noop", "postback"))
    summary["postback_ratio"] = median_spread(
        [r["postback"]["rps"] / r["noop"]["rps"] for r in rounds]
    )
    return summary


def _summary(rounds: list[dict], names: tuple[str, ...]) -> dict:
    summary = {}
    for name in names:
        summary[name] = {
            key: median_spread([r[name][key] for r in rounds])
            for key in ("rps", "p50_ms", "p99_ms")
        }
        summary[name]["errors"] = sum(
            r[name]["socket_errors"] + r[name]["bad_status"] for r in rounds
        )
    return summary


def case_clicks(stack: Stack, offer_id: int, pid: int, runs: int = ACCEPT_RUNS) -> dict:
    """Case 5: wrk at 64 connections on /noop and /click, with the click buffer's flusher.

    The worker and beat run, as in production: clicks go to the Redis buffer
    and the beat's flush moves them into the table while wrk runs. What is
    still buffered when wrk stops is flushed at once, and that time is added
    to the run's: clicks/s counts storing the clicks, not only answering them.
    Every answered click must be in the table.
    """
    from conversions.intake import click_buffer
    from conversions.models import Click

    data.reset_postbacks()
    stack.flush_redis()
    stack.start_pipeline(concurrency=WORKER_CONCURRENCY)
    rounds = []
    for run in range(runs):
        measured = {}
        for name in ("noop", "click") if run % 2 == 0 else ("click", "noop"):
            if name == "noop":
                measured[name] = load.wrk(f"{stack.base_url}/noop", seconds=WRK_SECONDS)
                continue
            before = Click.objects.count()
            result = load.wrk(
                f"{stack.base_url}/click?offer_id={offer_id}&pid={pid}", seconds=WRK_SECONDS
            )
            backlog = click_buffer.pending()
            started = time.monotonic()
            # Everything appended so far, however much; again for the requests
            # gunicorn was still answering when wrk stopped.
            for _ in range(100):
                click_buffer.flush()
                if not click_buffer.pending():
                    break
            else:
                raise RuntimeError(f"click buffer not empty: {click_buffer.pending()}")
            result["flush_s"] = time.monotonic() - started
            result["backlog"] = backlog
            result["answered"] = result["requests"] - result["socket_errors"] - result["bad_status"]
            result["stored"] = Click.objects.count() - before
            result["answer_rps"] = result["rps"]
            # Clicks answered 302 (errors excluded) over the run plus the final flush.
            result["rps"] = result["answered"] / (result["duration_us"] / 1e6 + result["flush_s"])
            measured[name] = result
        rounds.append(measured)
        click = measured["click"]
        log(
            f"round {run + 1}: noop {measured['noop']['rps']:.0f}/s, click {click['rps']:.0f}/s"
            f" (answered {click['answer_rps']:.0f}/s; {click['backlog']} left buffered,"
            f" flushed in {click['flush_s']:.2f} s; stored {click['stored']} of"
            f" {click['answered']} answered)"
        )
    summary = _summary(rounds, ("noop", "click"))
    summary["click_ratio"] = median_spread([r["click"]["rps"] / r["noop"]["rps"] for r in rounds])
    summary["answer_rps"] = median_spread([r["click"]["answer_rps"] for r in rounds])
    summary["backlog"] = median_spread([r["click"]["backlog"] for r in rounds])
    summary["flush_s"] = median_spread([r["click"]["flush_s"] for r in rounds])
    summary["answered"] = sum(r["click"]["answered"] for r in rounds)
    summary["stored"] = sum(r["click"]["stored"] for r in rounds)
    # wrk counts the answers it read before its deadline; the server may have
    # stored a few more whose answers it cut off. Lost: answered, not stored.
    summary["lost"] = sum(max(0, r["click"]["answered"] - r["click"]["stored"]) for r in rounds)
    stack.stop("worker")
    stack.stop("beat")
    return summary


def case_end_to_end(stack: Stack, clickids: list[str]) -> dict:
    """Case 2: preload N received postbacks, then time until all are final, per batch size.

    Batched is the product's default POSTBACK_BATCH_SIZE, against batch size 1.
    """
    from django.conf import settings

    result = {}
    cases = (
        ("batched", settings.POSTBACK_BATCH_SIZE, E2E_BATCHED_COUNT),
        ("single", 1, E2E_SINGLE_COUNT),
    )
    for key, size, count in cases:
        stack.start_pipeline(concurrency=WORKER_CONCURRENCY, POSTBACK_BATCH_SIZE=str(size))
        rates = []
        for run in range(RUNS):
            data.reset_postbacks()
            stack.flush_redis()
            insert_received(
                clickids, count, new_tag(f"e2e{size}-{run}-"), currency="EUR" if WORKFLOWS else ""
            )
            with Nudger():
                took = wait_drained(count, timeout=180)
            if took is None:
                raise RuntimeError(
                    f"batch size {size}: {unfinished()} postbacks not final in 180 s"
                )
            rates.append(count / took)
            log(f"batch {size}: {count} postbacks final in {took:.1f}s = {count / took:.0f}/s")
        result[key] = {"size": size, "count": count, "rate": median_spread(rates)}
    result["ratio"] = median_spread(
        [
            b / s
            for b, s in zip(
                result["batched"]["rate"]["runs"], result["single"]["rate"]["runs"], strict=True
            )
        ]
    )
    return result


def case_workflows(stack: Stack, plain: list[str], ruled: list[str]) -> dict:
    """Case 2b: batched throughput with two rules and a currency conversion, side by side.

    Rounds alternate between the plain offer's postbacks and the ruled offer's
    (two PostbackRules evaluated, every sum converted from EUR), same batch
    size, same worker; the ratio is ruled / plain per pair of rounds.
    """
    from conversions.models import Conversion

    stack.start_pipeline(concurrency=WORKER_CONCURRENCY)
    rates: dict[str, list[float]] = {"plain": [], "workflows": []}
    for run in range(RUNS * 2):
        order = ("plain", "workflows") if run % 2 == 0 else ("workflows", "plain")
        for name in order:
            data.reset_postbacks()
            stack.flush_redis()
            clickids, currency = (plain, "") if name == "plain" else (ruled, "EUR")
            insert_received(
                clickids, E2E_BATCHED_COUNT, new_tag(f"wf{name}-{run}-"), currency=currency
            )
            with Nudger():
                took = wait_drained(E2E_BATCHED_COUNT, timeout=180)
            if took is None:
                raise RuntimeError(f"{name}: {unfinished()} postbacks not final in 180 s")
            rates[name].append(E2E_BATCHED_COUNT / took)
            # Each round must have done the work it stands for: a conversion per
            # postback, and in the ruled rounds every sum converted from EUR.
            made = Conversion.objects.filter(original_currency=currency).count()
            if made != E2E_BATCHED_COUNT:
                raise RuntimeError(f"{name}: {made} conversions in {currency or 'USD'}")
            log(f"{name}: {E2E_BATCHED_COUNT} postbacks final in {took:.1f}s, {made} conversions")
    return {
        "count": E2E_BATCHED_COUNT,
        "plain": median_spread(rates["plain"]),
        "workflows": median_spread(rates["workflows"]),
        "ratio": median_spread(
            [w / p for w, p in zip(rates["workflows"], rates["plain"], strict=True)]
        ),
    }


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares growth of the backlog, postbacks per second."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_b = sum(b for _, b in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (b - mean_b) for t, b in points) / var if var else 0.0


def case_keep_up(stack: Stack, clickids: list[str]) -> dict:
    """Case 2, second half: accept at full speed while the pipeline runs beside it.

    wrk at 64 connections on /postback for KEEPUP_SECONDS with web, worker and
    beat sharing the machine; the backlog (postbacks not yet final) is sampled
    every 0.5 s. If the pipeline were slower than the accept path, the backlog
    would grow by the difference every second.
    """
    stack.start_pipeline(concurrency=WORKER_CONCURRENCY)
    data.reset_postbacks()
    stack.flush_redis()
    samples = []
    done = threading.Event()

    def sample():
        started = time.monotonic()
        while not done.is_set():
            samples.append((time.monotonic() - started, unfinished()))
            done.wait(0.5)

    clickids_file = stack.dir / "clickids.txt"
    clickids_file.write_text("\n".join(clickids) + "\n")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flood = load.wrk(
        f"{stack.base_url}/postback",
        seconds=KEEPUP_SECONDS,
        WRK_POSTBACK_CLICKIDS=str(clickids_file),
        WRK_RUN=new_tag("flood"),
    )
    done.set()
    sampler.join()
    drain = wait_drained(flood["requests"], timeout=60)
    during = [(t, b) for t, b in samples if t <= KEEPUP_SECONDS]
    second_half = [(t, b) for t, b in during if t >= KEEPUP_SECONDS / 2]
    result = {
        "samples": samples,
        "accept_rps": flood["rps"],
        "answered": flood["requests"],
        "errors": flood["socket_errors"] + flood["bad_status"],
        "backlog_max": max((b for _, b in during), default=0),
        "backlog_second_half_max": max((b for _, b in second_half), default=0),
        "backlog_end": during[-1][1] if during else None,
        "slope_second_half": _slope(second_half),
        "drain_after_stream_s": drain,
    }
    log(
        f"keep-up: accept {flood['rps']:.0f}/s with the pipeline running; backlog max "
        f"{result['backlog_max']}, 2nd half slope {result['slope_second_half']:+.1f}/s, "
        f"drained in {drain}"
    )
    return result


def case_light_latency(stack: Stack, clickids: list[str], runs: int = RUNS) -> dict:
    """Case 4: 20 postbacks/s; accept-to-conversion from the rows' own timestamps."""
    from conversions.models import Postback

    stack.start_pipeline(concurrency=WORKER_CONCURRENCY)
    p50s, p99s, all_latencies = [], [], []
    for run in range(runs):
        data.reset_postbacks()
        stack.flush_redis()
        tag = new_tag(f"light{run}-")
        urls = postback_urls(stack.base_url, clickids, int(LIGHT_RATE * LIGHT_SECONDS), tag)
        answers = load.fire(
            urls, rate=LIGHT_RATE, concurrency=64, timeout=10, max_seconds=LIGHT_SECONDS + 5
        )
        if wait_drained(len(answers), timeout=60) is None:
            raise RuntimeError("light load did not drain in 60 s")
        rows = Postback.objects.filter(action_id__startswith=tag, conversion__isnull=False)
        latencies = [
            (conv_at - received).total_seconds() * 1000
            for received, conv_at in rows.values_list("received_at", "conversion__created_at")
        ]
        if len(latencies) != len(answers):
            raise RuntimeError(f"light load: {len(answers)} sent, {len(latencies)} converted")
        all_latencies += latencies
        p50s.append(percentile(latencies, 50))
        p99s.append(percentile(latencies, 99))
        log(
            f"20/s run {run + 1}: accept-to-conversion p50 {p50s[-1]:.0f} ms, p99 {p99s[-1]:.0f} ms"
        )
    return {
        "p50_ms": median_spread(p50s),
        "p99_ms": median_spread(p99s),
        "latencies_ms": all_latencies,
    }


def case_sync_vs_async(stack: Stack, clickids: list[str], rate: float) -> dict:
    """Case 3: the same burst above capacity against each mode; advertisers do not retry."""
    from conversions.models import Conversion, Postback

    stack.start_pipeline(concurrency=WORKER_CONCURRENCY)
    result = {"sync": [], "async": []}
    for run in range(RUNS):
        for mode in ("sync", "async"):
            stack.stop("web")
            data.reset_postbacks()
            stack.flush_redis()
            stack.start_web(WEB_WORKERS, POSTBACK_PROCESSING=mode)
            tag = new_tag(f"{mode}{run}-")
            urls = postback_urls(stack.base_url, clickids, int(rate * BURST_SECONDS), tag)
            answers = load.fire(
                urls,
                rate=rate,
                concurrency=2048,
                timeout=CLIENT_TIMEOUT,
                max_seconds=BURST_SECONDS + 5,
            )
            # Requests given up by the client may still be in gunicorn's backlog: let the
            # server finish them, then let the pipeline drain, before counting.
            stable, last = 0, -1
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and stable < 5:
                now = Postback.objects.count()
                stable = stable + 1 if now == last and unfinished() == 0 else 0
                last = now
                time.sleep(0.5)
            sent = [f"{tag}-{a.index}" for a in answers]
            failed = [f"{tag}-{a.index}" for a in answers if not a.accepted]
            recorded = set(
                Postback.objects.filter(action_id__startswith=tag).values_list(
                    "action_id", flat=True
                )
            )
            converted = set(
                Conversion.objects.filter(action_id__startswith=tag).values_list(
                    "action_id", flat=True
                )
            )
            latencies = [a.latency * 1000 for a in answers if a.accepted]
            row = {
                "sent": len(sent),
                "answered_1": len(sent) - len(failed),
                "timeouts": sum(a.error == "timeout" for a in answers),
                "errors": sum(bool(a.error) and a.error != "timeout" for a in answers),
                "status_2": sum(a.http_status == 200 and not a.accepted for a in answers),
                "lost": len(failed),
                "lost_share": len(failed) / len(sent),
                "failed_but_recorded": sum(1 for f in failed if f in recorded),
                "never_recorded": sum(1 for s in sent if s not in recorded),
                "no_conversion": sum(1 for s in sent if s not in converted),
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "final": Postback.objects.filter(
                    action_id__startswith=tag, state__in=FINAL
                ).count(),
            }
            result[mode].append(row)
            log(
                f"burst {mode} run {run + 1}: {row['lost']} of {row['sent']} lost "
                f"({row['lost_share']:.1%}), never recorded {row['never_recorded']}, "
                f"no conversion {row['no_conversion']}"
            )
    stack.stop("web")
    stack.start_web(WEB_WORKERS)
    return result


def main() -> int:
    started = time.monotonic()
    out_dir = Path(os.environ.get("BENCH_OUT", Path(__file__).resolve().parent.parent / "docs"))
    load.wrk_path()
    stack = Stack("bench")
    log(f"private servers in {stack.dir}")
    stack.up()
    data.setup_django(stack.env())
    import affise_proj.celery  # noqa: F401  (the app the nudger publishes with)

    offer = data.make_offer("Bench offer")
    if WORKFLOWS:
        data.add_workflows(offer)
    partner = data.make_partner()
    clickids = data.make_clicks(offer, partner, CLICKS)
    results = {
        "config": {
            "runs": RUNS,
            "accept_runs": ACCEPT_RUNS,
            "wrk_seconds": WRK_SECONDS,
            "connections": CONNECTIONS,
            "web_workers": WEB_WORKERS,
            "worker_concurrency": WORKER_CONCURRENCY,
            "e2e_count": {"batched": E2E_BATCHED_COUNT, "single": E2E_SINGLE_COUNT},
            "keepup_seconds": KEEPUP_SECONDS,
            "light_rate": LIGHT_RATE,
            "light_seconds": LIGHT_SECONDS,
            "burst_rate": BURST_RATE,
            "burst_seconds": BURST_SECONDS,
            "client_timeout": CLIENT_TIMEOUT,
            "cpus": os.cpu_count(),
            "workflows": WORKFLOWS,
            "result_backend": "Redis, with callbacks and failures recorded in the database (the default with a Redis broker)",
            "cache": "Redis (`CACHE_URL`, database 1)"
            if REDIS_CACHE
            else "none (no `CACHE_URL`: each process's memory)",
            "load_before": os.getloadavg(),
        }
    }
    unknown = set(SELECTED) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown BENCH_CASES {sorted(unknown)}; known: {', '.join(CASES)}")
    try:
        stack.start_web(WEB_WORKERS)
        if "accept" in SELECTED:
            log("case 1: accept next to the no-op view (web only)")
            results["accept"] = case_accept(stack, clickids[0])
        if "clicks" in SELECTED:
            log("case 5: clicks next to the no-op view (web, and the worker flushing clicks)")
            results["clicks"] = case_clicks(stack, offer.pk, partner.pk)
        if "e2e" in SELECTED:
            log("case 2: end to end, batched vs batch size 1")
            results["e2e"] = case_end_to_end(stack, clickids)
        if "workflows" in SELECTED:
            log("case 2b: batched with two rules and a currency, next to without")
            ruled_offer = data.make_offer("Bench offer with rules")
            data.add_workflows(ruled_offer)
            ruled = data.make_clicks(ruled_offer, partner, min(CLICKS, E2E_BATCHED_COUNT))
            results["workflows"] = case_workflows(stack, clickids, ruled)
        if "keepup" in SELECTED:
            results["keepup"] = case_keep_up(stack, clickids)
        results["config"]["load_mid"] = os.getloadavg()
        if "light" in SELECTED:
            log("case 4: latency at 20/s")
            results["light"] = case_light_latency(stack, clickids)
        if "burst" in SELECTED:
            log("case 3: sync vs async, a burst above capacity")
            burst_rate = BURST_RATE
            if not burst_rate and "accept" in results:
                burst_rate = round(results["accept"]["postback"]["rps"]["median"] / 4)
            if not burst_rate:
                raise SystemExit("BENCH_CASES=burst without accept needs BENCH_BURST_RATE")
            results["config"]["burst_rate"] = burst_rate
            results["burst"] = case_sync_vs_async(stack, clickids, burst_rate)
        if "scaling" in SELECTED:
            from bench.scaling import case_scaling

            log("case 6: processing rate with 1, 2, 4 worker processes and 2 worker hosts")
            results["scaling"] = case_scaling(
                stack, clickids, RUNS, out_dir, log, offer.pk, partner.pk
            )
        if "datasize" in SELECTED:
            from bench import datasize

            log(
                "case 8: clicks, accept, processing and the click lookup against the clicks"
                f" stored ({', '.join(f'{s:,}' for s in datasize.SIZES)})"
            )
            results["datasize"] = datasize.case_datasize(
                stack,
                offer,
                partner,
                log,
                accept=case_accept,
                clicks=case_clicks,
                light=case_light_latency,
                out_dir=out_dir,
            )
            datasize.write(results["datasize"], out_dir)
            log(f"wrote {out_dir / 'bench-datasize.md'}")
        if "stats" in SELECTED:
            log("case 7: statistics answer time against data size (bench/stats.py)")
            results["stats"] = bench_stats.case_stats(stack)
            bench_stats.write(results["stats"], out_dir)
            log(f"wrote {out_dir / 'bench-stats.md'}")
    finally:
        stack.close()
    results["config"]["seconds"] = time.monotonic() - started
    results["config"]["load_after"] = os.getloadavg()
    if set(SELECTED) != set(CASES):
        import json

        print(json.dumps(_brief(results), indent=1, default=str))
        log(f"done in {results['config']['seconds']:.0f} s (cases {', '.join(SELECTED)})")
        return 0
    from bench.report import write

    write(results, out_dir)
    log(f"done in {results['config']['seconds']:.0f} s; wrote {out_dir / 'benchmarks.md'}")
    return 0


def _brief(results: dict) -> dict:
    """The measured numbers without the raw samples (backlog, latencies)."""
    drop = ("samples", "latencies_ms")
    return {
        case: {k: v for k, v in values.items() if k not in drop}
        if isinstance(values, dict)
        else values
        for case, values in results.items()
    }


if __name__ == "__main__":
    sys.exit(main())
