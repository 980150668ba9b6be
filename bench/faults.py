"""``make faults`` / ``make faults-short``: lose nothing while parts of the system fail.

While a steady stream of postbacks and one of clicks run: SIGKILL a worker
and start it again, SIGKILL the web server (gunicorn's master and workers)
and start it again, restart Redis (append-only, as docker-compose runs it;
with ``--broker rabbitmq``, SIGKILL the RabbitMQ node and start it again,
then restart the Redis beside it), crash PostgreSQL (an immediate stop: no
checkpoint, the WAL replayed at start) and start it again a few seconds
later (the web spools postbacks and buffers clicks meanwhile). After the
streams and a drain, every postback answered status 1 must be in the database
in a final state, conversions must equal valid postbacks, none doubled, the
cap not overspent, and every click answered with a clickid must be in the
click table, and no worker or beat may have exited by itself (a Redis
restart must not end them).
Beside them, a stream of status sequences, one click each (pending, then
approved, declined or a plain postback, sent one after another as an
advertiser's server does): each click's final status, and each postback's
outcome, must be what settling them in arrival order gives. Two rules on the
open offer meet part of the main stream (a declined one on a parameter, a
pending one on the sum): each of those conversions must carry its rule's
status and reason. Meanwhile a manager changes the status of random stream
conversions, through the same service as the admin and the API, notifying
the partner: every change reported applied must be in the history, and each
conversion's partner postbacks (for declined and hold) must fire exactly once
per applied change to one of those. Throughout, /metrics
is scraped every half second: the spool gauge must rise while PostgreSQL is
stopped and be back to 0 after the drain, and the oldest-waiting gauge must
rise after the worker is killed (its batches wait for the sweeper). Exits
non-zero on any loss, any restart, any sequence settled out of order and any
metric that does not tell the story, any rule or manual change misapplied.
"""

import argparse
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import dashboard, data, load
from bench.measure import FINAL, new_tag
from bench.stack import Stack


@dataclass
class Plan:
    rate: float
    seconds: float
    kill_worker_at: float
    worker_down: float
    kill_web_at: float
    web_down: float
    redis_at: float
    redis_down: float
    postgres_at: float
    postgres_down: float
    drain_timeout: float
    click_rate: float
    sequence_rate: float


FULL = Plan(
    rate=30,
    seconds=75,
    kill_worker_at=10,
    worker_down=4,
    kill_web_at=19,
    web_down=2,
    redis_at=28,
    redis_down=3,
    postgres_at=45,
    postgres_down=6,
    drain_timeout=300,
    click_rate=30,
    sequence_rate=3,
)
SHORT = Plan(
    rate=20,
    seconds=40,
    kill_worker_at=6,
    worker_down=3,
    kill_web_at=10,
    web_down=1,
    redis_at=15,
    redis_down=2,
    postgres_at=25,
    postgres_down=5,
    drain_timeout=150,
    click_rate=20,
    sequence_rate=2,
)
CAP_LIMIT = 15
# Status sequences an advertiser sends for one click (None: no status), taken in turn.
SEQUENCES = [
    ["2", "1"],
    ["2", "3"],
    ["2", None],
    ["2", "1", "3"],
    ["2", "3", "1"],
    ["2", "1", "3", None],
    [None, "2"],
    ["2", "2", "1"],
]
STATUS_WORDS = {"1": "approved", "2": "pending", "3": "declined"}
# Main-stream postbacks a rule meets (index % 10): declined by a parameter, pending by sum.
BOT, BIG = 6, 7
RULES = {BOT: ("declined", "Bot traffic"), BIG: ("pending", "Big sale")}
# A manager's status changes during the stream, one every this many seconds.
MANAGER_EVERY = 0.3
NOTIFIED = ("declined", "hold")
# The fault run's own timings: sweep often, take a killed worker's batch as
# abandoned after 20 s (not the default 120 s), so the drain fits in minutes.
APP_ENV = {
    "POSTBACK_SWEEP_INTERVAL": "2",
    "POSTBACK_SWEEP_AFTER": "3",
    "POSTBACK_STALE_AFTER": "20",
    "METRICS_TOKEN": "faults-metrics-token",
    # The partner's receiver is the app itself: while the web server is down every
    # call to it fails. Disabled after 50 in a row, not 20, so the open offer's
    # postback (the manager check's) outlasts that; the 404 one still reaches it.
    "PARTNER_POSTBACK_DISABLE_AFTER": "50",
}
# The gauges the run follows on /metrics.
GAUGES = ("postbacks_spooled", "postbacks_oldest_waiting_seconds", "postbacks_waiting")


@dataclass
class Scrapes:
    """/metrics read every half second: (seconds since the streams began, {gauge: value})."""

    base_url: str
    started: float
    samples: list = field(default_factory=list)
    failed: int = 0

    def read(self) -> dict[str, float]:
        answer = httpx.get(
            f"{self.base_url}/metrics",
            headers={"Authorization": f"Bearer {APP_ENV['METRICS_TOKEN']}"},
            timeout=3,
        )
        answer.raise_for_status()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
            if sample.name in GAUGES
        }

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            try:
                values = self.read()
            except httpx.HTTPError:
                self.failed += 1
                continue
            self.samples.append((round(time.monotonic() - self.started, 1), values))

    def peak(self, gauge: str, start: float, end: float) -> float:
        return max((v.get(gauge, 0.0) for t, v in self.samples if start <= t < end), default=0.0)


def _metrics_story(scrapes: Scrapes, plan: Plan, events: list) -> tuple[dict, list[str]]:
    """What the gauges showed around each fault, and what they failed to show."""

    def when(start: str, planned: float) -> float:
        return next((t for t, what in events if what.startswith(start)), planned)

    kill = when("SIGKILL worker", plan.kill_worker_at)
    # The stop is noted once pg_ctl returns; the web spools from its start.
    pg_stop = min(when("PostgreSQL stopped", plan.postgres_at), plan.postgres_at)
    stale = float(APP_ENV["POSTBACK_STALE_AFTER"])
    final = scrapes.read()
    story = {
        "metrics_scrapes": len(scrapes.samples),
        "metrics_scrapes_failed": scrapes.failed,
        "oldest_waiting_before_kill_max_s": round(
            scrapes.peak("postbacks_oldest_waiting_seconds", 0, kill), 1
        ),
        "oldest_waiting_after_kill_max_s": round(
            scrapes.peak("postbacks_oldest_waiting_seconds", kill, kill + stale + 10), 1
        ),
        "spooled_before_pg_stop_max": scrapes.peak("postbacks_spooled", 0, pg_stop),
        "spooled_during_pg_stop_max": scrapes.peak(
            "postbacks_spooled", pg_stop, pg_stop + plan.postgres_down + 3
        ),
        "spooled_after_drain": final.get("postbacks_spooled", -1),
        "waiting_after_drain": final.get("postbacks_waiting", -1),
    }
    problems = []
    if story["spooled_during_pg_stop_max"] <= 0:
        problems.append("the spool gauge did not rise while PostgreSQL was stopped")
    if story["spooled_after_drain"] != 0:
        problems.append("the spool gauge is not back to 0 after the drain")
    rose = story["oldest_waiting_after_kill_max_s"]
    if rose < 5 or rose <= story["oldest_waiting_before_kill_max_s"]:
        problems.append("the oldest-waiting gauge did not rise after the worker was killed")
    return story, problems


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
    at(plan.kill_web_at)
    # Answers in flight are cut off; every postback answered before was committed.
    stack.stop("web", sig=9)
    note("SIGKILL web (gunicorn master and workers)")
    at(plan.kill_web_at + plan.web_down)
    stack.start_web(2, **APP_ENV)
    note("web started again")
    at(plan.redis_at)
    if stack.broker == "rabbitmq":
        stack.kill_rabbitmq()
        note("RabbitMQ killed (SIGKILL of the node: only what it had on disk remains)")
        at(plan.redis_at + plan.redis_down)
        stack.start_rabbitmq()
        note("RabbitMQ started again")
        # The Redis beside it (chords, click buffer) restarts too.
        at((plan.redis_at + plan.redis_down + plan.postgres_at) / 2)
    stack.stop_redis()
    note("Redis stopped (SHUTDOWN, append-only file kept)")
    at(time.monotonic() - started + plan.redis_down)
    stack.start_redis()
    note("Redis started again")
    at(plan.postgres_at)
    # A crash, not a shutdown: what was committed survives through the WAL alone.
    stack.stop_postgres("immediate")
    note("PostgreSQL crashed (immediate stop: no checkpoint)")
    at(plan.postgres_at + plan.postgres_down)
    stack.start_postgres()
    note("PostgreSQL started again")


def _spooled(stack: Stack) -> int:
    return sum(1 for _ in (stack.var / "spool").glob("postbacks*.jsonl"))


def in_arrival_order(statuses: list) -> tuple[str | None, list[str]]:
    """What settling ``statuses`` one after another gives: final status, error of each."""
    status, errors = None, []
    for sent in statuses:
        if status is None:
            status, error = STATUS_WORDS.get(sent, "approved"), ""
        elif sent is None:
            error = "Conversion exists"
        elif status != "pending":
            error = "Conversion status is not pending"
        else:
            status, error = STATUS_WORDS[sent], ""
        errors.append(error)
    return status, errors


def _sequence_urls(base_url: str, tag: str, clickids: list[str]) -> list[list[str]]:
    """One sequence per click; action_id ``<tag>-<sequence>-<position>`` names each postback."""
    sequences = []
    for k, clickid in enumerate(clickids):
        statuses = SEQUENCES[k % len(SEQUENCES)]
        sequences.append(
            [
                f"{base_url}/postback?clickid={clickid}&action_id={tag}-{k}-{j}&sum=2"
                + (f"&status={sent}" if sent else "")
                for j, sent in enumerate(statuses)
            ]
        )
    return sequences


def _check_order(stack: Stack, tag: str, clickids: list[str]) -> dict:
    """Compare each sequence's outcome with settling its postbacks in arrival order.

    Arrival order is the database's (received_at, id) of the postbacks that were
    recorded. ``spool_straddled`` counts the sequences whose earlier postback
    was spooled (PostgreSQL down) and a later one stored directly: evidence
    that the hardest case happened; they must be in order too.
    """
    from conversions.models import Conversion, Postback

    web_log = (stack.dir / "web.log").read_text(errors="replace")
    spooled = set(re.findall(r"spooling postback (\w+)", web_log))
    finals = dict(Conversion.objects.filter(click__in=clickids).values_list("click", "status"))
    rows: dict[int, list] = {}
    for row in Postback.objects.filter(action_id__startswith=f"{tag}-").order_by(
        "received_at", "id"
    ):
        _, k, j = row.action_id.rsplit("-", 2)
        rows.setdefault(int(k), []).append((int(j), row))
    counts = {"sequences": len(clickids), "out_of_order": 0, "spool_straddled": 0}
    wrong = []
    for k, clickid in enumerate(clickids):
        arrived = rows.get(k, [])
        statuses = [SEQUENCES[k % len(SEQUENCES)][j] for j, _ in arrived]
        expected = in_arrival_order(statuses) if arrived else (None, [])
        actual = (finals.get(clickid), [row.error for _, row in arrived])
        was_spooled = [row.id in spooled for _, row in arrived]
        straddled = any(a and not b for i, a in enumerate(was_spooled) for b in was_spooled[i:])
        counts["spool_straddled"] += straddled
        if actual != expected:
            counts["out_of_order"] += 1
            wrong.append((statuses, actual))
    for statuses, actual in wrong[:5]:
        log(f"out of order: sent {statuses}, got {actual}")
    return counts


def _drain(stack: Stack, tags: tuple[str, ...], timeout: float) -> bool:
    from django.db import DatabaseError, connection
    from django.db.models import Q

    from conversions.models import Postback

    connection.close()
    deadline = time.monotonic() + timeout
    stable, last = 0, None
    mine = Q()
    for tag in tags:
        mine |= Q(action_id__startswith=tag)
    while time.monotonic() < deadline:
        try:
            rows = Postback.objects.filter(mine)
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

    from conversions.intake import click_buffer

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if click_buffer.pending() == 0:
                return True
        except RedisError:
            pass
        time.sleep(0.5)
    return False


def run(
    plan: Plan, write_doc: Path | None, broker: str = "redis", dashboard_png: Path | None = None
) -> int:
    stack = Stack("faults", broker=broker)
    log(f"private servers in {stack.dir}")
    stack.up()
    data.setup_django(stack.env())
    from django.db.models import Count

    from conversions.models import Click, Conversion, Postback
    from offers.models import CapCounter, PostbackRule
    from partners.models import PartnerPostback

    if dashboard_png:
        # The dashboard's partner panels need deliveries: the app's own demo
        # receiver takes them (the guard lets that one address pass).
        APP_ENV.update(DEMO="1", PARTNER_POSTBACK_ALLOWED_TARGETS=stack.base_url.split("//", 1)[1])
    offer = data.make_offer("Fault offer")
    PostbackRule.objects.create(
        offer=offer,
        field="param:sub9",
        op="eq",
        value="bot",
        action="declined",
        reason=RULES[BOT][1],
    )
    PostbackRule.objects.create(
        offer=offer, field="sum", op="gt", value="100", action="pending", reason=RULES[BIG][1]
    )
    capped = data.make_offer("Capped offer", cap=CAP_LIMIT)
    partner = data.make_partner()
    # The partner hears of declines and holds on the open offer (the app's /noop answers).
    notified = PartnerPostback.objects.create(
        partner=partner,
        offer=offer,
        url=f"{stack.base_url}/noop?c={{clickid}}&s={{status}}",
        statuses=list(NOTIFIED),
    )
    if dashboard_png:
        # Global, for declines on every offer (the open offer's too, beside the
        # postback above): one to the receiver, delivered, one to a path it does
        # not have, failed (404) until it is disabled after repeated failures.
        for path in ("/demo/partner-postback", "/demo/no-such-tracker"):
            PartnerPostback.objects.create(
                partner=partner, url=f"{stack.base_url}{path}?c={{clickid}}", statuses=["declined"]
            )
    count = int(plan.rate * plan.seconds)
    # A click converts once per goal: every postback has a click of its own.
    clicks = data.make_clicks(offer, partner, count)
    capped_clicks = data.make_clicks(capped, partner, count // 10 + 1)

    tag = new_tag("f")
    urls, valid = [], set()
    for i in range(count):
        action = f"{tag}-{i}"
        if i % 10 == 9:
            # Well formed, but no such click: must end rejected, never converted.
            clickid = f"{i:024x}"
        else:
            clickid = capped_clicks[i // 10] if i % 10 == 8 else clicks[i]
            valid.add(action)
        extra = {BOT: "&sub9=bot", BIG: "&sum=500"}.get(i % 10, "&sum=2")
        urls.append(f"{stack.base_url}/postback?clickid={clickid}&action_id={action}{extra}")
    status_tag = new_tag("s")
    status_clicks = data.make_clicks(offer, partner, int(plan.sequence_rate * plan.seconds))
    sequences = _sequence_urls(stack.base_url, status_tag, status_clicks)

    # Partner postbacks go to the app itself (/noop, or the demo receiver): let that pass.
    APP_ENV["PARTNER_POSTBACK_ALLOWED_TARGETS"] = stack.base_url.split("//", 1)[1]
    stack.start_web(2, **APP_ENV)
    stack.start_worker("worker", concurrency=2, **APP_ENV)
    stack.start_worker("worker2", concurrency=2, **APP_ENV)
    stack.start_beat(**APP_ENV)
    from bench.stack import wait_until

    wait_until(lambda: stack.worker_ready("worker2"), 60, "the workers")
    stack.supervise()
    prometheus = None
    if dashboard_png and dashboard.available():
        prometheus = dashboard.Prometheus(
            stack.dir, stack.base_url.split("//", 1)[1], APP_ENV["METRICS_TOKEN"]
        )
        log(f"prometheus scraping /metrics every second at {prometheus.url}")
    run_started_at = time.time()

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
    scrapes = Scrapes(stack.base_url, started)
    stop_scraping = threading.Event()
    scraper = threading.Thread(target=scrapes.run, args=(stop_scraping,), daemon=True)
    scraper.start()
    status_answers: list = []
    status_stream = threading.Thread(
        target=lambda: status_answers.extend(
            load.fire_sequences(
                sequences, rate=plan.sequence_rate, timeout=10, max_seconds=plan.seconds
            )
        ),
        daemon=True,
    )
    status_stream.start()
    manual: list = []
    stop_manager = threading.Event()
    manager = threading.Thread(
        target=_manager, args=(offer.pk, tag, stop_manager, manual), daemon=True
    )
    manager.start()
    answers = load.fire(
        urls, rate=plan.rate, concurrency=512, timeout=10, max_seconds=plan.seconds + 5
    )
    click_stream.join()
    status_stream.join()
    stop_manager.set()
    manager.join()
    chaos.join()
    log(f"streams done in {time.monotonic() - started:.0f} s; draining")
    drained = _drain(stack, (tag, status_tag), plan.drain_timeout)
    clicks_drained = _drain_clicks(plan.drain_timeout)
    drain_seconds = time.monotonic() - started - plan.seconds
    stop_scraping.set()
    scraper.join()
    story, metric_problems = _metrics_story(scrapes, plan, events)
    if prometheus is not None:
        time.sleep(3)  # the last scrapes after the drain
        dashboard.render(
            prometheus,
            run_started_at,
            time.time(),
            dashboard_png,
            "make faults: worker killed, Redis and PostgreSQL restarted "
            "(rate windows 20 s for this 90 s run)",
            rate_window="20s",
        )
        prometheus.stop()
        log(f"dashboard drawn in {dashboard_png}")
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
        "status_postbacks_sent": sum(len(a) for a in status_answers),
        "status_postbacks_unanswered": sum(not x.accepted for a in status_answers for x in a),
        **_check_order(stack, status_tag, status_clicks[: len(status_answers)]),
        **_check_rules(tag, valid),
        **_check_manual(manual, notified.pk),
        **story,
    }
    problems = list(metric_problems)
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
        "out_of_order",
        "rule_misapplied",
        "manual_not_in_history",
        "manual_notified_wrong",
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
        _write_doc(write_doc, plan, counts, events, drain_seconds, problems, broker)
        _chart(write_doc.with_name(f"{write_doc.stem}-metrics.png"), scrapes, events)
    stack.close()
    if problems:
        log("FAILED: " + "; ".join(problems))
        return 1
    log(
        "OK: nothing lost, nothing doubled, cap held, every status sequence in arrival order; "
        "the spool and oldest-waiting gauges told the story"
    )
    return 0


def _manager(offer_id: int, tag: str, stop: threading.Event, applied: list) -> None:
    """A manager changing random stream conversions' statuses, notifying the partner.

    Records each change the service reports applied: (conversion id, new status).
    A change that raised (the database away) is not recorded: it did not commit.
    """
    from django.db import connections

    from conversions.models import Conversion
    from conversions.processing import statuses

    rng = random.Random(15)
    while not stop.wait(MANAGER_EVERY):
        try:
            recent = list(
                Conversion.objects.filter(offer_id=offer_id, action_id__startswith=tag)
                .order_by("-id")
                .values_list("pk", "status")[: rng.randint(1, 40)]
            )
            if not recent:
                continue
            pk, status = recent[-1]
            new = rng.choice(
                [s for s in ("approved", "pending", "declined", "hold") if s != status]
            )
            _, changed = statuses.change_status_by_manager(
                pk, new, comment="fault test", notify=True
            )
            if changed:
                applied.append((pk, new))
        except Exception as exc:  # the database is away: try again on the next tick
            log(f"manager: {exc.__class__.__name__}")
            connections.close_all()
    connections.close_all()


def _check_rules(tag: str, valid: set) -> dict:
    """Each stream conversion a rule meets carries its rule's status and reason."""
    from django.apps import apps

    from conversions.models import Conversion

    ConversionEvent = apps.get_model("conversions", "ConversionEvent")
    expected = {
        f"{tag}-{i}": RULES[i % 10]
        for i in (int(a.rsplit("-", 1)[1]) for a in valid)
        if i % 10 in RULES
    }
    first = {}
    # The status and reason the conversion was created with (a manager may have changed it since).
    for action, status, reason in ConversionEvent.objects.filter(
        pgh_label="insert", pgh_obj__action_id__in=list(expected)
    ).values_list("pgh_obj__action_id", "status", "reason"):
        first[action] = (status, reason)
    if not first:  # no history (not PostgreSQL): read the conversions as they are
        first = {
            a: (st, r)
            for a, st, r in Conversion.objects.filter(action_id__in=list(expected)).values_list(
                "action_id", "status", "reason"
            )
        }
    return {
        "rule_conversions": len(first),
        "rule_misapplied": sum(
            1 for a, want in expected.items() if a in first and first[a] != want
        ),
    }


def _check_manual(applied: list, postback_id: int) -> dict:
    """Every applied manual change is in the history; partners notified once per change.

    ``postback_id``: the open offer's partner postback for declines and holds,
    the one whose deliveries are counted (others may fire for the same events:
    the dashboard run's global postbacks for declines).
    """
    from collections import Counter, defaultdict

    from django.apps import apps

    from conversions.models import PostbackDelivery

    ConversionEvent = apps.get_model("conversions", "ConversionEvent")

    ids = {pk for pk, _ in applied}
    recorded = Counter(
        (pk, status)
        for pk, status in ConversionEvent.objects.filter(
            pgh_obj_id__in=ids, pgh_context__metadata__source="manager"
        ).values_list("pgh_obj_id", "status")
    )
    wanted = Counter(applied)
    # What that postback was sent, first attempts in event order: one per event.
    sent = defaultdict(list)
    for pk, status in (
        PostbackDelivery.objects.filter(
            conversion_id__in=ids, partner_postback_id=postback_id, attempt=1
        )
        .order_by("event")
        .values_list("conversion_id", "status")
    ):
        sent[pk].append(status)
    # Each conversion's events into a notifying status, its creation included, as its
    # history has them, in order: one first attempt of that status is owed for each.
    owed, last = defaultdict(list), {}
    for pk, status in (
        ConversionEvent.objects.filter(pgh_obj_id__in=ids)
        .order_by("pgh_id")
        .values_list("pgh_obj_id", "status")
    ):
        if status in NOTIFIED and last.get(pk) != status:
            owed[pk].append(status)
        last[pk] = status
    return {
        "manual_changes": len(applied),
        "manual_not_in_history": sum((wanted - recorded).values()),
        "manual_notified_wrong": sum(1 for pk in ids if sent[pk] != owed[pk]),
    }


def _write_doc(
    path: Path,
    plan: Plan,
    counts: dict,
    events: list,
    drain: float,
    problems: list,
    broker: str = "redis",
) -> None:
    servers = (
        "private PostgreSQL, RabbitMQ as the broker and a Redis beside it (`REDIS_URL`: "
        "chords, click buffer)"
        if broker == "rabbitmq"
        else "private PostgreSQL and Redis"
    )
    command = "make faults BROKER=rabbitmq" if broker == "rabbitmq" else "make faults"
    lines = [
        "# Fault test" + (" (RabbitMQ broker)" if broker == "rabbitmq" else ""),
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `{command}` "
        f"({servers} on loopback, gunicorn 2 workers, two Celery workers "
        "of concurrency 2, beat; the short form `make faults-short` runs in `.ci/run`).",
        "",
        f"Stream: {plan.rate:.0f} postbacks/s for {plan.seconds:.0f} s, each with a unique "
        "action_id and a click of its own; 8 in 10 valid on an open offer, 1 in 10 valid on "
        "an offer with a cap of "
        f"{CAP_LIMIT} conversions (overcap declined), 1 in 10 with an unknown clickid "
        "(must be rejected). Beside it, "
        f"{plan.click_rate:.0f} clicks/s on the open offer, and {plan.sequence_rate:.0f} "
        "status sequences/s, one click each, on the open offer: each sequence's postbacks "
        "are sent one after another, each once the one before was answered, in turn "
        + ", ".join(
            "→".join({"1": "approve", "2": "pending", "3": "decline"}.get(x, "plain") for x in seq)
            for seq in SEQUENCES
        )
        + ". Client timeout 10 s, no retries. Faults during the streams (seconds from "
        "their start):",
        "",
        *[f"- {t:.1f} s: {what}" for t, what in events],
        "",
        "App settings for the run: "
        + ", ".join(f"`{k}={v}`" for k, v in APP_ENV.items())
        + " (a killed worker's batch is taken as abandoned after 20 s instead of 120 s, so "
        "the drain fits in the run), and a partner postback is disabled after 50 failed "
        "deliveries in a row instead of 20 (the partners' receiver is the app itself, which "
        "fails every call while the web server is down; the postback the manager check "
        "counts must stay on); everything else as configured by default.",
        "",
        f"Result: {'**FAILED**: ' + '; '.join(problems) if problems else 'passed'}; "
        f"drained {drain:.0f} s after the stream ended. *lost* = answered status 1 but not "
        "in the database in a final state; *doubled* = extra conversions per action_id plus "
        "extra postback rows; *spooled* = answers given from the local spool while "
        "PostgreSQL was down; *dispatched_again* = postbacks dispatched more than once "
        "(killed worker, lost chord callback); *restarted_by_supervisor* = workers or beat "
        "that exited by themselves and were started again, as compose's `restart: "
        "unless-stopped` does (must be 0: `make run` has no such supervisor; a broker "
        "restart must not end them). "
        "*clicks_lost* = clicks answered 302 with a clickid whose click is not in the table "
        "after the drain; *clicks_refused* = clicks not answered with a clickid (an offer "
        "this web process had not seen before PostgreSQL went away cannot be answered). "
        "*out_of_order* = status sequences whose click's final status, or any postback's "
        "outcome, differs from settling the recorded postbacks in arrival order (must be 0); "
        "*spool_straddled* = sequences with a postback answered from the spool before one "
        "stored directly once PostgreSQL was back (in order too: a claim imports the spool "
        "first). *rule_misapplied* = conversions of the main stream that a rule met "
        '(sub9=bot: declined "Bot traffic"; sum 500: pending "Big sale") created '
        "with another status or reason; *manual_changes* = status changes a manager made "
        f"during the stream (one every {MANAGER_EVERY} s, on recent stream conversions, "
        "notifying the partner), *manual_not_in_history* = those applied but missing "
        "from the conversion's history, *manual_notified_wrong* = conversions whose first "
        "attempts of the open offer's partner postback for declines and holds differ from "
        "one per change to declined or hold, in the history's order. "
        "The *metrics_* and gauge rows are /metrics as the run scraped it every "
        "0.5 s: *spooled_during_pg_stop_max* is the highest `postbacks_spooled` while "
        "PostgreSQL was stopped (must be above 0) and *spooled_after_drain* its value after "
        "the drain (must be 0); *oldest_waiting_after_kill_max_s* is the highest "
        "`postbacks_oldest_waiting_seconds` in the 30 s after the worker was killed (must be "
        "at least 5 s and above its highest before the kill: the killed worker's batches wait "
        "for the sweeper).",
        "",
        (
            "For the dashboard's partner panels, the partner has two global postbacks for "
            "declined conversions (every offer's, the open offer's too): one to the app's "
            "demo receiver (delivered), one to a path it does not have (404, failed, not "
            "retried, disabled after repeated failures). They fire beside the open offer's "
            "postback for the manager's declines; *manual_notified_wrong* counts that "
            "postback's deliveries only."
            if APP_ENV.get("DEMO")
            else ""
        ),
        "",
        f"![/metrics during the run]({path.stem}-metrics.png)",
        "",
        "| count | value |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in counts.items()],
        "",
    ]
    path.write_text("\n".join(lines))


def _chart(path: Path, scrapes: Scrapes, events: list) -> None:
    """The gauges as /metrics gave them during the run, with the faults marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    times = [t for t, _ in scrapes.samples]
    top.plot(times, [v.get("postbacks_spooled", float("nan")) for _, v in scrapes.samples])
    top.set_ylabel("postbacks_spooled")
    bottom.plot(
        times,
        [v.get("postbacks_oldest_waiting_seconds", float("nan")) for _, v in scrapes.samples],
        color="tab:red",
    )
    bottom.set_ylabel("oldest waiting (s)")
    bottom.set_xlabel("seconds from the start of the streams")
    for axis in (top, bottom):
        for t, _what in events:
            axis.axvline(t, color="grey", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    for t, what in events:
        top.annotate(
            what.split(" (")[0],
            (t, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="grey",
        )
    top.set_title("/metrics during make faults (scraped every 0.5 s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="the bounded CI form (~2 min)")
    parser.add_argument("--write", type=Path, help="write the result as Markdown here")
    parser.add_argument(
        "--broker",
        choices=("redis", "rabbitmq"),
        default="redis",
        help="rabbitmq: RabbitMQ carries the tasks (killed mid-stream), a Redis beside it",
    )
    parser.add_argument(
        "--dashboard",
        type=Path,
        help="draw the example Grafana dashboard of the run here (needs prometheus)",
    )
    args = parser.parse_args()
    return run(SHORT if args.short else FULL, args.write, args.broker, args.dashboard)


if __name__ == "__main__":
    sys.exit(main())
