"""``make faults-hosts``: two app hosts, one killed whole mid-stream.

Two "hosts" run the app: each is one process group (gunicorn with 2 workers
and a Celery worker) with its own ``var/`` and so its own postback spool, as
separate machines have their own disks; a third runs the beat. They share a
private PostgreSQL and the broker (Redis, or RabbitMQ with a Redis beside it).
A load generator sends postbacks to both in turn, as a load balancer would,
takes a host out of its rotation when it dies and back once it answers again
(a health check), and sends a postback to the other host when its host
refuses the connection (nginx's ``proxy_next_upstream error``).

The faults, while the stream runs:
1. PostgreSQL stops for a few seconds: both hosts answer from their spools;
2. host A is SIGKILLed whole (web and worker, every process of its group)
   while PostgreSQL is still down, then PostgreSQL comes back: host B goes on
   alone, and imports its own spool;
3. A's spooled postbacks are looked for in the database (there must be none:
   they are on A's disk only), then ``manage.py import_spool`` is run
   elsewhere (in this process) with A's spool folder, as with A's disk
   mounted on another host;
4. host A comes back, takes its share of the stream, and is SIGKILLed whole
   again, this time with PostgreSQL up and batches in flight.

Checked after a drain: every postback either host answered status 1 is in
the database in a final state; nothing doubled (one conversion per action_id,
one row per postback); unknown clicks rejected, never converted; no process
of host B exited. Exits non-zero otherwise.
"""

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench import data, load
from bench.faults import APP_ENV, log
from bench.measure import FINAL, new_tag
from bench.stack import ROOT, VENV_BIN, WEB_PORT, Stack, wait_until


@dataclass
class Plan:
    rate: float
    seconds: float
    postgres_at: float
    postgres_down: float
    kill_at: float
    import_at: float
    return_at: float
    second_kill_at: float
    drain_timeout: float


FULL = Plan(
    rate=30,
    seconds=60,
    postgres_at=12,
    postgres_down=6,
    kill_at=15,
    import_at=24,
    return_at=25,
    second_kill_at=45,
    drain_timeout=240,
)
SHORT = Plan(
    rate=20,
    seconds=40,
    postgres_at=6,
    postgres_down=5,
    kill_at=8,
    import_at=14,
    return_at=15,
    second_kill_at=30,
    drain_timeout=150,
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Host:
    """One machine's app processes: one process group, one var/ (spool) of its own."""

    def __init__(self, stack: Stack, name: str, port: int | None) -> None:
        self.stack, self.name, self.port = stack, name, port
        self.dir = stack.dir / f"host-{name}"
        self.var = self.dir / "var"
        self.var.mkdir(parents=True)
        self.procs: list[subprocess.Popen] = []
        self.pgid: int | None = None
        # In the balancer's rotation: a host comes in once it answers (a health
        # check) and leaves when it dies.
        self.in_rotation = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def spool(self) -> Path:
        return self.var / "spool"

    def env(self, **extra: str) -> dict[str, str]:
        return self.stack.env(VAR_DIR=str(self.var), **APP_ENV, **extra)

    def _spawn(self, what: str, args: list[str], **extra: str) -> None:
        out = open(self.dir / f"{what}.log", "ab")  # noqa: SIM115 - kept open for the process
        # The first process leads the host's group; the others join it, so one
        # killpg takes the whole host.
        group = {"process_group": 0} if self.pgid is None else {"process_group": self.pgid}
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(**extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            **group,
        )
        if self.pgid is None:
            self.pgid = proc.pid
        self.procs.append(proc)

    def start_web(self) -> None:
        self._spawn(
            "web",
            [str(VENV_BIN / "gunicorn"), "affise_proj.wsgi"],
            WEB_BIND=f"127.0.0.1:{self.port}",
            WEB_CONCURRENCY="2",
        )

    def start_worker(self, concurrency: int = 2) -> None:
        self._spawn(
            "worker",
            [
                *(str(VENV_BIN / "celery"), "-A", "affise_proj", "worker", "--loglevel", "WARNING"),
                *("--concurrency", str(concurrency), "--hostname", f"host-{self.name}@%h"),
                *("--without-gossip", "--without-mingle"),
            ],
        )

    def start_beat(self) -> None:
        self._spawn(
            "beat",
            [
                *(str(VENV_BIN / "celery"), "-A", "affise_proj", "beat", "--loglevel", "WARNING"),
                *("--schedule", str(self.var / "celerybeat-schedule")),
            ],
        )

    def web_up(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/noop", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL every process of the host at once, as a power cut does."""
        if self.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGKILL)
        self.in_rotation = False
        for proc in self.procs:
            proc.wait()
        self.procs, self.pgid = [], None

    def spooled(self) -> int:
        return sum(path.read_bytes().count(b"\n") for path in self.spool.glob("postbacks*.jsonl"))

    def exited(self) -> list[str]:
        return [" ".join(p.args[:4]) for p in self.procs if p.poll() is not None]


async def _send_all(urls_by_host: list[tuple[Host, Host, str]], rate: float, max_seconds: float):
    """Open loop at ``rate``; a refused connection goes to the other host (a balancer's retry)."""
    started = time.monotonic()
    connector = aiohttp.TCPConnector(limit=256)
    # No retry of a GET on a kept connection the server closed: a request a
    # host stored and died before answering would be sent again, a second
    # postback (an advertiser's or a balancer's retry; README "Running on many
    # hosts"). Here each postback is sent once, to count what the system doubles.
    async with aiohttp.ClientSession(connector=connector) as session:
        session._retry_connection = False  # aiohttp 3.10+ has no public switch

        async def one(i: int, first: Host, second: Host, path: str):
            if not first.in_rotation:
                first, second = second, first
            answer = await load._one(session, i, first.url + path, started, 10)
            if answer.error == "ClientConnectorError":
                return second, await load._one(session, i, second.url + path, started, 10)
            return first, answer

        tasks = []
        for i, (first, second, path) in enumerate(urls_by_host):
            due = started + i / rate
            if due - started > max_seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(i, first, second, path)))
        return list(await asyncio.gather(*tasks))


def _drain(tag: str, spools: list[Host], timeout: float) -> bool:
    from django.db import DatabaseError, connection

    from conversions.models import Postback

    deadline = time.monotonic() + timeout
    stable, last = 0, None
    while time.monotonic() < deadline:
        try:
            rows = Postback.objects.filter(action_id__startswith=tag)
            now = (
                rows.count(),
                rows.exclude(state__in=FINAL).count(),
                sum(h.spooled() for h in spools),
            )
        except DatabaseError:
            connection.close()
            now = None
        stable = stable + 1 if now is not None and now == last and now[1:] == (0, 0) else 0
        if stable >= 6:
            return True
        last = now
        time.sleep(0.5)
    return False


def _spooled_actions(host: Host) -> set[str]:
    """The action_ids of the postbacks waiting in ``host``'s spool folder."""
    found = set()
    for path in host.spool.glob("postbacks*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                found.add(json.loads(line)["params"]["action_id"])
            except (ValueError, KeyError):
                continue
    return found


def _outcome(tag: str, valid: set[str]) -> dict:
    from django.db.models import Count

    from conversions.models import Conversion, Postback

    rows = Postback.objects.filter(action_id__startswith=tag)
    states = dict(rows.values_list("action_id", "state"))
    per_action = dict(
        Conversion.objects.filter(action_id__startswith=tag)
        .values("action_id")
        .annotate(n=Count("id"))
        .values_list("action_id", "n")
    )
    twice = set(
        rows.values("action_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("action_id", flat=True)
    ) | {a for a, n in per_action.items() if n > 1}
    for action in sorted(twice)[:5]:
        log(
            f"doubled {action}: postbacks "
            + str(
                list(
                    rows.filter(action_id=action).values_list(
                        "id", "state", "error", "received_at", "attempts", "conversion_id"
                    )
                )
            )
            + " conversions "
            + str(
                list(
                    Conversion.objects.filter(action_id=action).values_list(
                        "id", "status", "click", "created_at"
                    )
                )
            )
        )
    return {
        "states": states,
        "attempts": dict(rows.values_list("action_id", "attempts")),
        "doubled": sum(n - 1 for n in per_action.values() if n > 1) + (rows.count() - len(states)),
        "missing_conversions": sum(1 for a in states if a in valid and a not in per_action),
        "invalid_converted": sum(1 for a in per_action if a not in valid),
    }


def run(plan: Plan, write_doc: Path | None, broker: str) -> int:
    stack = Stack("hosts", broker=broker)
    log(f"private servers in {stack.dir}")
    stack.up()
    data.setup_django(stack.env())
    offer = data.make_offer("Hosts offer")
    partner = data.make_partner()
    count = int(plan.rate * plan.seconds)
    clicks = data.make_clicks(offer, partner, count)

    a, b = Host(stack, "a", WEB_PORT), Host(stack, "b", _free_port())
    beat = Host(stack, "beat", None)
    try:
        return _run(stack, plan, write_doc, broker, a, b, beat, count, clicks)
    finally:
        for host in (a, b, beat):
            host.kill()
        stack.close()


def _run(stack, plan, write_doc, broker, a: Host, b: Host, beat: Host, count, clicks) -> int:
    for host in (a, b):
        host.start_web()
        host.start_worker()
    beat.start_beat()
    for host in (a, b):
        wait_until(host.web_up, 60, f"host {host.name}'s web")
        host.in_rotation = True
    wait_until(lambda: stack.worker_ready("host-a") and stack.worker_ready("host-b"), 60, "workers")

    tag = new_tag("h")
    valid, plan_urls = set(), []
    for i in range(count):
        action = f"{tag}-{i}"
        # 1 in 10 names no click: must end rejected, never converted.
        clickid = f"{i:024x}" if i % 10 == 9 else clicks[i]
        if i % 10 != 9:
            valid.add(action)
        first, second = (a, b) if i % 2 == 0 else (b, a)
        plan_urls.append((first, second, f"/postback?clickid={clickid}&action_id={action}&sum=2"))

    events: list = []
    seen: dict = {}
    started = time.monotonic()

    def note(what: str) -> None:
        events.append((round(time.monotonic() - started, 1), what))
        log(what)

    def faults() -> None:
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import override_settings

        from conversions.models import Postback

        def at(offset: float) -> None:
            time.sleep(max(0.0, started + offset - time.monotonic()))

        at(plan.postgres_at)
        stack.stop_postgres("fast")
        note("PostgreSQL stopped: both hosts answer from their spools")
        at(plan.kill_at)
        a.kill()
        note(f"host A SIGKILLed whole (web and worker), {a.spooled()} postbacks in its spool")
        at(plan.postgres_at + plan.postgres_down)
        stack.start_postgres()
        note("PostgreSQL started again")
        at(plan.import_at)
        seen["on_a_disk"] = _spooled_actions(a)
        seen["in_database_before_import"] = Postback.objects.filter(
            action_id__in=seen["on_a_disk"]
        ).count()
        note(
            f"{len(seen['on_a_disk'])} postbacks still only on host A's disk, "
            f"{seen['in_database_before_import']} of them in the database"
        )
        # A's disk, mounted elsewhere: its spool imported by the command, run
        # here (another host) with A's spool folder.
        with override_settings(POSTBACK_SPOOL_DIR=a.spool):
            call_command("import_spool", stdout=io.StringIO())
        note("manage.py import_spool run elsewhere with host A's spool folder")
        at(plan.return_at)
        a.start_web()
        a.start_worker()
        wait_until(a.web_up, 60, "host A's web")
        a.in_rotation = True
        note("host A back (web and worker), in the rotation again")
        # Some seconds of traffic on A before it dies again, however slow its start was.
        at(max(plan.second_kill_at, time.monotonic() - started + 8))
        processing = Postback.objects.filter(state="processing").count()
        a.kill()
        note(f"host A SIGKILLed whole again, PostgreSQL up, {processing} postbacks processing")
        connection.close()

    log(f"streaming {count} postbacks at {plan.rate:.0f}/s to hosts A and B for {plan.seconds} s")
    chaos = threading.Thread(target=faults, daemon=True)
    chaos.start()
    results = asyncio.run(_send_all(plan_urls, plan.rate, plan.seconds))
    chaos.join()
    log(f"stream done in {time.monotonic() - started:.0f} s; draining")
    from django.db import connection

    connection.close()
    drained = _drain(tag, [a, b, beat], plan.drain_timeout)

    answered = {"a": set(), "b": set()}
    for host, answer in results:
        if answer.accepted:
            answered[host.name].add(f"{tag}-{answer.index}")
    after = _outcome(tag, valid)
    states = after["states"]
    counts = {
        "sent": len(results),
        "answered_by_a": len(answered["a"]),
        "answered_by_b": len(answered["b"]),
        "unanswered": len(results) - len(answered["a"]) - len(answered["b"]),
        "sent_to_b_for_a": sum(
            1 for i, (host, _) in enumerate(results) if host.name == "b" and i % 2 == 0
        ),
        "a_answered_on_its_disk": len(answered["a"] & seen.get("on_a_disk", set())),
        "a_spool_entries_in_database_before_import": seen.get("in_database_before_import", -1),
        "a_answered_not_final": sum(1 for x in answered["a"] if states.get(x) not in FINAL),
        "b_answered_not_final": sum(1 for x in answered["b"] if states.get(x) not in FINAL),
        "recorded": len(states),
        "accepted": sum(s == "accepted" for s in states.values()),
        "rejected": sum(s == "rejected" for s in states.values()),
        "doubled": after["doubled"],
        "missing_conversions": after["missing_conversions"],
        "invalid_converted": after["invalid_converted"],
        "spooled_on_b": (b.dir / "web.log").read_text(errors="replace").count("spooling"),
        # Evidence that work in flight on A was picked up elsewhere (redelivered
        # or swept): postbacks dispatched more than once.
        "dispatched_again": sum(1 for x in after["attempts"].values() if x > 1),
        "host_b_processes_exited": len(b.exited()),
    }
    problems = []
    if not drained:
        problems.append(f"not drained within {plan.drain_timeout:.0f} s")
    for key in (
        "a_answered_not_final",
        "b_answered_not_final",
        "a_spool_entries_in_database_before_import",
        "doubled",
        "missing_conversions",
        "invalid_converted",
        "host_b_processes_exited",
    ):
        if counts[key]:
            problems.append(f"{key} = {counts[key]}")
    if not counts["a_answered_on_its_disk"]:
        problems.append("host A answered nothing from its spool: the case did not happen")
    for key, value in counts.items():
        log(f"{key:>42}: {value}")
    if write_doc:
        _write_doc(write_doc, plan, counts, events, problems, broker)
    if problems:
        log("FAILED: " + "; ".join(problems))
        return 1
    log("OK: every postback host B answered is final; host A's spool waited on its disk")
    return 0


def _write_doc(path: Path, plan: Plan, counts: dict, events: list, problems: list, broker: str):
    broker_text = (
        "RabbitMQ (a private node) with a Redis beside it" if broker == "rabbitmq" else "Redis"
    )
    lines = [
        "# Fault test: a host killed whole",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        f"`make faults-hosts{' BROKER=rabbitmq' if broker == 'rabbitmq' else ''}` "
        f"(`python -m bench.hosts`), on one 2-core machine: private PostgreSQL, broker "
        f"{broker_text}; two app hosts A and B, each one process group (gunicorn with 2 "
        "workers and a Celery worker of concurrency 2) with its own `var/` and spool "
        "folder; the beat as a third host. No network namespaces: the hosts share "
        "loopback, and a host's death is the SIGKILL of its whole process group.",
        "",
        f"Stream: {plan.rate:.0f} postbacks/s for {plan.seconds:.0f} s, each with a unique "
        "action_id and a click of its own (1 in 10 with an unknown clickid: must be "
        "rejected), sent to A and B in turn as a balancer does: a host leaves the rotation "
        "when it dies and comes back once it answers, and a postback whose host refuses "
        "the connection goes to the other (a retry of a connection never made; no retry "
        "of a request sent). Client timeout "
        "10 s. Faults (seconds from the start of the stream):",
        "",
        *[f"- {t:.1f} s: {what}" for t, what in events],
        "",
        f"Result: {'**FAILED**: ' + '; '.join(problems) if problems else 'passed'}.",
        "",
        "- *a_answered_on_its_disk*: postbacks A answered from its spool while PostgreSQL "
        "was down, before it died. While A was down they were on its disk and nowhere else "
        "(*a_spool_entries_in_database_before_import*, counted just before the import, "
        "must be 0): no other host can see them. `manage.py import_spool` run elsewhere "
        "with A's spool folder brought them in;",
        "- *a_answered_not_final* / *b_answered_not_final*: postbacks the host answered "
        "status 1 that were not in the database in a final state after the drain (must "
        "be 0), the second kill of A included;",
        "- *doubled*: extra conversions per action_id plus extra postback rows (must be "
        "0); *dispatched_again*: postbacks dispatched more than once (a killed worker's "
        "batch redelivered or swept); *unanswered*: requests cut by a kill (no answer, "
        "nothing promised).",
        "",
        "| count | value |",
        "| --- | --- |",
        *[f"| {key} | {value} |" for key, value in counts.items()],
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="a shorter stream")
    parser.add_argument("--write", type=Path, help="write the result as Markdown here")
    parser.add_argument("--broker", choices=("redis", "rabbitmq"), default="redis")
    args = parser.parse_args()
    return run(SHORT if args.short else FULL, args.write, args.broker)


if __name__ == "__main__":
    sys.exit(main())
