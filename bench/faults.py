"""``make faults`` / ``make faults-short``: lose nothing while parts of the system fail.

While a steady stream of postbacks and one of clicks run: SIGKILL a worker
and start it again, restart Redis (append-only, as docker-compose runs it),
stop PostgreSQL for a few seconds and start it again (the web spools
postbacks and buffers clicks meanwhile). After the streams and a drain, every
postback answered status 1 must be in the database in a final state,
conversions must equal valid postbacks, none doubled, the cap not overspent,
and every click answered with a clickid must be in the click table, and no
worker or beat may have exited by itself (a Redis restart must not end them).
Exits non-zero on any of these.
"""

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bench import data, load
from bench.measure import FINAL, new_tag
from bench.stack import Stack


@dataclass
class Plan:
    rate: float
    seconds: float
    kill_worker_at: float
    worker_down: float
    redis_at: float
    redis_down: float
    postgres_at: float
    postgres_down: float
    drain_timeout: float
    click_rate: float


FULL = Plan(
    rate=30,
    seconds=75,
    kill_worker_at=10,
    worker_down=4,
    redis_at=28,
    redis_down=3,
    postgres_at=45,
    postgres_down=6,
    drain_timeout=300,
    click_rate=30,
)
SHORT = Plan(
    rate=20,
    seconds=40,
    kill_worker_at=6,
    worker_down=3,
    redis_at=15,
    redis_down=2,
    postgres_at=25,
    postgres_down=5,
    drain_timeout=150,
    click_rate=20,
)
CAP_LIMIT = 15
# The fault run's own timings: sweep often, take a killed worker's batch as
# abandoned after 20 s (not the default 120 s), so the drain fits in minutes.
APP_ENV = {
    "POSTBACK_SWEEP_INTERVAL": "2",
    "POSTBACK_SWEEP_AFTER": "3",
    "POSTBACK_STALE_AFTER": "20",
}


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _faults(stack: Stack, plan: Plan, started: float, events: list) -> None:
    def at(offset: float) -> None:
        time.sleep(max(0.0, started + offset - time.monotonic()))

    def note(what: str) -> None:
        events.append((round(time.monotonic() - started, 1), what))
        log(what)

    at(plan.kill_worker_at)
    stack.stop("worker", sig=9)
    note("SIGKILL worker (master and pool)")
    at(plan.kill_worker_at + plan.worker_down)
    stack.start_worker("worker", concurrency=2, **APP_ENV)
    note("worker started again")
    at(plan.redis_at)
    stack.stop_redis()
    note("Redis stopped (SHUTDOWN, append-only file kept)")
    at(plan.redis_at + plan.redis_down)
    stack.start_redis()
    note("Redis started again")
    at(plan.postgres_at)
    stack.stop_postgres("fast")
    note("PostgreSQL stopped")
    at(plan.postgres_at + plan.postgres_down)
    stack.start_postgres()
    note("PostgreSQL started again")


def _spooled(stack: Stack) -> int:
    return sum(1 for _ in (stack.var / "spool").glob("postbacks*.jsonl"))


def _drain(stack: Stack, tag: str, timeout: float) -> bool:
    from django.db import DatabaseError, connection

    from conversions.models import Postback

    connection.close()
    deadline = time.monotonic() + timeout
    stable, last = 0, None
    while time.monotonic() < deadline:
        try:
            rows = Postback.objects.filter(action_id__startswith=tag)
            now = (rows.count(), rows.exclude(state__in=FINAL).count(), _spooled(stack))
        except DatabaseError:
            # The connection did not survive the PostgreSQL restart: open a new one.
            connection.close()
            now = None
        stable = stable + 1 if now is not None and now == last and now[1:] == (0, 0) else 0
        if stable >= 6:
            return True
        last = now
        time.sleep(0.5)
    return False


def _drain_clicks(timeout: float) -> bool:
    """Wait until the beat has flushed the click buffer into the table."""
    from redis.exceptions import RedisError

    from conversions import clickbuffer

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if clickbuffer.pending() == 0:
                return True
        except RedisError:
            pass
        time.sleep(0.5)
    return False


def run(plan: Plan, write_doc: Path | None) -> int:
    stack = Stack("faults")
    log(f"private servers in {stack.dir}")
    stack.up()
    data.setup_django(stack.env())
    from django.db.models import Count

    from conversions.models import Click, Conversion, Postback
    from offers.models import CapCounter

    offer = data.make_offer("Fault offer")
    capped = data.make_offer("Capped offer", cap=CAP_LIMIT)
    partner = data.make_partner()
    clicks = data.make_clicks(offer, partner, 200)
    capped_clicks = data.make_clicks(capped, partner, 20)

    count = int(plan.rate * plan.seconds)
    tag = new_tag("f")
    urls, valid = [], set()
    for i in range(count):
        action = f"{tag}-{i}"
        if i % 10 == 9:
            # Well formed, but no such click: must end rejected, never converted.
            clickid = f"{i:024x}"
        else:
            pool = capped_clicks if i % 10 == 8 else clicks
            clickid = pool[i % len(pool)]
            valid.add(action)
        urls.append(f"{stack.base_url}/postback?clickid={clickid}&action_id={action}&sum=2")

    stack.start_web(2, **APP_ENV)
    stack.start_worker("worker", concurrency=2, **APP_ENV)
    stack.start_worker("worker2", concurrency=2, **APP_ENV)
    stack.start_beat(**APP_ENV)
    from bench.stack import wait_until

    wait_until(lambda: stack.worker_ready("worker2"), 60, "the workers")
    stack.supervise()

    click_count = int(plan.click_rate * plan.seconds)
    click_url = f"{stack.base_url}/click?offer_id={offer.pk}&pid={partner.pk}"
    clicks_before = Click.objects.count()
    log(
        f"streaming {count} postbacks at {plan.rate:.0f}/s and {click_count} clicks at "
        f"{plan.click_rate:.0f}/s for {plan.seconds:.0f} s"
    )
    started = time.monotonic()
    events: list = []
    chaos = threading.Thread(target=_faults, args=(stack, plan, started, events), daemon=True)
    chaos.start()
    click_answers: list = []
    click_stream = threading.Thread(
        target=lambda: click_answers.extend(
            load.fire(
                [click_url] * click_count,
                rate=plan.click_rate,
                concurrency=256,
                timeout=10,
                max_seconds=plan.seconds + 5,
            )
        ),
        daemon=True,
    )
    click_stream.start()
    answers = load.fire(
        urls, rate=plan.rate, concurrency=512, timeout=10, max_seconds=plan.seconds + 5
    )
    click_stream.join()
    chaos.join()
    log(f"streams done in {time.monotonic() - started:.0f} s; draining")
    drained = _drain(stack, tag, plan.drain_timeout)
    clicks_drained = _drain_clicks(plan.drain_timeout)
    drain_seconds = time.monotonic() - started - plan.seconds
    clickids = {
        parse_qs(urlsplit(a.location).query).get("c", [""])[0]
        for a in click_answers
        if a.http_status == 302
    }
    clickids.discard("")
    stored_clickids = set(
        Click.objects.filter(clickid__in=clickids).values_list("clickid", flat=True)
    )

    answered = {f"{tag}-{a.index}" for a in answers if a.accepted}
    rows = Postback.objects.filter(action_id__startswith=tag)
    states = dict(rows.values_list("action_id", "state"))
    row_count = rows.count()
    conversions = Conversion.objects.filter(action_id__startswith=tag)
    per_action = dict(
        conversions.values("action_id").annotate(n=Count("id")).values_list("action_id", "n")
    )
    recorded_valid = {a for a in states if a in valid}
    capped_live = conversions.filter(offer=capped).exclude(status="declined").count()
    cap_used = max(
        CapCounter.objects.filter(cap__offer=capped).values_list("used", flat=True), default=0
    )
    counts = {
        "sent": len(answers),
        "answered": len(answered),
        "unanswered": len(answers) - len(answered),
        "recorded": len(states),
        "accepted": sum(s == "accepted" for s in states.values()),
        "rejected": sum(s == "rejected" for s in states.values()),
        "failed": sum(s == "failed" for s in states.values()),
        "not_final": sum(s not in FINAL for s in states.values()),
        "valid_recorded": len(recorded_valid),
        "conversions": sum(per_action.values()),
        "lost": sum(1 for a in answered if states.get(a) not in FINAL),
        "doubled": sum(n - 1 for n in per_action.values() if n > 1) + (row_count - len(states)),
        "missing_conversions": sum(1 for a in recorded_valid if a not in per_action),
        "invalid_converted": sum(1 for a in per_action if a not in valid),
        # Evidence that the faults hit: answers given from the spool while PostgreSQL
        # was down, and postbacks dispatched more than once (killed worker, lost chord).
        "spooled": (stack.dir / "web.log").read_text(errors="replace").count("spooling postback"),
        "dispatched_again": rows.filter(attempts__gt=1).count(),
        # Processes that exited by themselves and were started again (compose's restart
        # policy). None may: under `make run` one process exiting stops them all.
        "restarted_by_supervisor": sum(stack.restarts.values()),
        "clicks_sent": len(click_answers),
        "clicks_answered": len(clickids),
        "clicks_refused": len(click_answers) - len(clickids),
        "clicks_stored": len(stored_clickids),
        "clicks_lost": len(clickids - stored_clickids),
        "clicks_in_table": Click.objects.count() - clicks_before,
        "capped_counted": capped_live,
        "cap_limit": CAP_LIMIT,
        "cap_used": float(cap_used),
    }
    problems = []
    if not drained:
        problems.append(f"not drained within {plan.drain_timeout:.0f} s")
    if not clicks_drained:
        problems.append(f"click buffer not drained within {plan.drain_timeout:.0f} s")
    for key in (
        "lost",
        "doubled",
        "missing_conversions",
        "invalid_converted",
        "not_final",
        "clicks_lost",
        "restarted_by_supervisor",
    ):
        if counts[key]:
            problems.append(f"{key} = {counts[key]}")
    if counts["conversions"] != counts["valid_recorded"]:
        problems.append("conversions != valid postbacks recorded")
    if capped_live > CAP_LIMIT or cap_used > CAP_LIMIT:
        problems.append("cap overspent")
    for key, value in counts.items():
        log(f"{key:>20}: {value}")
    log(f"drain after the stream: {drain_seconds:.0f} s")
    if write_doc:
        _write_doc(write_doc, plan, counts, events, drain_seconds, problems)
    stack.close()
    if problems:
        log("FAILED: " + "; ".join(problems))
        return 1
    log("OK: nothing lost, nothing doubled, cap held")
    return 0


def _write_doc(
    path: Path, plan: Plan, counts: dict, events: list, drain: float, problems: list
) -> None:
    lines = [
        "# Fault test",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make faults` "
        "(private PostgreSQL and Redis on loopback, gunicorn 2 workers, two Celery workers "
        "of concurrency 2, beat; the short form `make faults-short` runs in `.ci/run`).",
        "",
        f"Stream: {plan.rate:.0f} postbacks/s for {plan.seconds:.0f} s, each with a unique "
        "action_id; 8 in 10 valid on an open offer, 1 in 10 valid on an offer with a cap of "
        f"{CAP_LIMIT} conversions (overcap declined), 1 in 10 with an unknown clickid "
        "(must be rejected). Beside it, "
        f"{plan.click_rate:.0f} clicks/s on the open offer. Client timeout 10 s, no "
        "retries. Faults during the streams (seconds from their start):",
        "",
        *[f"- {t:.1f} s: {what}" for t, what in events],
        "",
        "App settings for the run: "
        + ", ".join(f"`{k}={v}`" for k, v in APP_ENV.items())
        + " (a killed worker's batch is taken as abandoned after 20 s instead of 120 s, so "
        "the drain fits in the run); everything else as configured by default.",
        "",
        f"Result: {'**FAILED**: ' + '; '.join(problems) if problems else 'passed'}; "
        f"drained {drain:.0f} s after the stream ended. *lost* = answered status 1 but not "
        "in the database in a final state; *doubled* = extra conversions per action_id plus "
        "extra postback rows; *spooled* = answers given from the local spool while "
        "PostgreSQL was down; *dispatched_again* = postbacks dispatched more than once "
        "(killed worker, lost chord callback); *restarted_by_supervisor* = workers or beat "
        "that exited by themselves and were started again, as compose's `restart: "
        "unless-stopped` does (must be 0: `make run` has no such supervisor). "
        "*clicks_lost* = clicks answered 302 with a clickid whose click is not in the table "
        "after the drain; *clicks_refused* = clicks not answered with a clickid (an offer "
        "this web process had not seen before PostgreSQL went away cannot be answered).",
        "",
        "| count | value |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in counts.items()],
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="the bounded CI form (~2 min)")
    parser.add_argument("--write", type=Path, help="write the result as Markdown here")
    args = parser.parse_args()
    return run(SHORT if args.short else FULL, args.write)


if __name__ == "__main__":
    sys.exit(main())
