"""Counters and histograms for /metrics, shared by every web and worker process.

prometheus-client's multiprocess mode: each process writes its values to
memory-mapped files in PROMETHEUS_MULTIPROC_DIR (settings: ``VAR_DIR/metrics``
unless set), and a scrape adds up every file, so the counts of all gunicorn
workers and Celery processes add up, and those of a process that has exited
stay counted. Files are named ``<kind>_<host>-<pid>.db``: processes of several
containers may share one folder (docker-compose's shared volume) without two
of them ever writing one file.

What this module counts is cheap where it must be: the accept and click paths
pay one increment (a write into a memory-mapped page, about a microsecond);
the pipeline pays one call per batch step (``batch_settled``,
``clicks_flushed``, ``postbacks_failed``), never one per check. Gauges whose
truth lives in the database, the spool folder or Redis are read at scrape
time instead (affise_proj/monitoring.py).

Each hook also writes the step's log line (INFO): "postback accepted" on the
accept path, "postback settled" per postback of a settled batch, "partner
postback delivered|failed" per attempt; LOG_LEVEL=WARNING leaves them out.

This module imports no app: the apps import it, as they import api_base.
"""

import logging
import os
import socket
import time
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client import multiprocess as _multiprocess

# The steps counted here are also the lines that let one postback be followed
# in a log search (affise_proj/logs.py adds the ids a request or task is about).
log = logging.getLogger("affise.postbacks")

_HOST = socket.gethostname().replace("/", "_")


def process_id(pid: int | None = None) -> str:
    """This process's name in the metrics folder: host and pid (a pid alone repeats across containers)."""
    return f"{_HOST}-{pid if pid is not None else os.getpid()}"


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


if multiprocess_dir():
    os.makedirs(multiprocess_dir(), exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier=process_id)

# DESIGN.md's outcome strings, as labels: anything else (a PostbackRule's own
# reason, an exception's text) is counted as "other", so a label never takes
# an unbounded set of values.
REJECTIONS = frozenset(
    {
        "Missing mandatory parameter clickid",
        "Click_id: invalid format",
        "Invalid parameter status",
        "Invalid parameter sum",
        "Click not found",
        "Offer disabled",
        "Access denied",
        "Current IP-address is denied",
        "Conversion status is not pending",
        "Conversion exists",
    }
)
DECLINES = frozenset(
    {
        "Partner is disabled",
        "Partner is banned",
        "Click session lifespan is expired",
        "Min click session lifespan is not reached",
        "Payments not found",
        "Exchange rate not found",
        "Declined via advertiser's postback",
        "Cap is reached",
        "Rejected by a manager",
    }
)
CAP_REACHED = "Cap is reached"

POSTBACKS_ACCEPTED = Counter(
    "postbacks_accepted",
    "Postbacks answered status 1 (stored, or spooled while the database was down).",
    ["method"],
)
POSTBACKS_FINAL = Counter(
    "postbacks_final",
    "Postbacks that reached a final state, by state (accepted, rejected, failed).",
    ["state"],
)
POSTBACKS_REJECTED = Counter(
    "postbacks_rejected",
    "Rejected postbacks by DESIGN.md's error string.",
    ["reason"],
)
CONVERSIONS_CREATED = Counter(
    "conversions_created",
    "New conversions by status and decline or pending reason (none when there is none).",
    ["status", "reason"],
)
CAPS_REACHED = Counter(
    "caps_reached",
    "New conversions a cap refused (declined) or sent for review (pending).",
    ["status"],
)
POSTBACK_LATENCY = Histogram(
    "postback_latency_seconds",
    "From a postback's arrival to its final state.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
)
BATCH_SIZE = Histogram(
    "postback_batch_size",
    "Postbacks settled by one chord callback.",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
SETTLE_SECONDS = Histogram(
    "postback_settle_seconds",
    "Time one chord callback took to settle its batch.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CLICKS = Counter(
    "clicks",
    "Clicks answered: recorded (302 to the offer with a clickid) or refused "
    "(trafficback or 404, no click).",
    ["outcome"],
)
CLICKS_FLUSHED = Counter(
    "clicks_flushed",
    "Buffered clicks the flush read from the Redis stream into the table.",
)
DELIVERIES = Counter(
    "partner_deliveries",
    "Partner postback attempts by outcome (delivered, failed) and partner id.",
    ["outcome", "partner"],
)


def registry() -> CollectorRegistry:
    """A registry for one scrape: every process's values in multiprocess mode, else this one's."""
    if not multiprocess_dir():
        from prometheus_client import REGISTRY

        return REGISTRY
    scrape = CollectorRegistry()
    _multiprocess.MultiProcessCollector(scrape)
    return scrape


def process_dead(pid: int) -> None:
    """gunicorn's child_exit: drop the live-gauge files of a worker that exited (counts stay)."""
    if multiprocess_dir():
        _multiprocess.mark_process_dead(process_id(pid))


# --- the hooks the apps call --------------------------------------------------


def postback_answered(method: str, *, spooled: bool = False) -> None:
    """The accept path answered status 1 (the postback's ids are bound to the request's lines)."""
    POSTBACKS_ACCEPTED.labels("POST" if method == "POST" else "GET").inc()
    log.info("postback accepted", extra={"spooled": spooled})


def click_answered(recorded: bool) -> None:
    CLICKS.labels("recorded" if recorded else "refused").inc()


def batch_settled(rows: Iterable, started: float | None = None) -> None:
    """One settled batch, after its transaction committed.

    ``rows``: the batch's Postback rows as settled (state, error, received_at,
    processed_at, conversion); ``started``: time.monotonic() when the callback
    began. A conversion made by this batch is one whose creation time is the
    batch's processing time (the callback gives both the batch's one time).
    """
    rows = list(rows)
    if started is not None:
        SETTLE_SECONDS.observe(time.monotonic() - started)
    BATCH_SIZE.observe(len(rows))
    states, rejected, created = Tally(), Tally(), Tally()
    for row in rows:
        states[row.state] += 1
        if row.processed_at and row.received_at:
            POSTBACK_LATENCY.observe(max(0.0, (row.processed_at - row.received_at).total_seconds()))
        if row.state == "rejected":
            rejected[row.error if row.error in REJECTIONS else "other"] += 1
        conversion = getattr(row, "conversion", None)
        if conversion is not None and conversion.created_at == row.processed_at:
            reason = conversion.reason
            created[(conversion.status, _reason_label(reason))] += 1
    if log.isEnabledFor(logging.INFO):
        for row in rows:
            conversion = getattr(row, "conversion", None)
            log.info(
                "postback settled",
                extra={
                    "postback_id": row.pk,
                    "clickid": row.clickid,
                    "state": row.state,
                    "error": row.error,
                    "conversion_id": conversion.pk if conversion is not None else None,
                },
            )
    for state, n in states.items():
        POSTBACKS_FINAL.labels(state).inc(n)
    for reason, n in rejected.items():
        POSTBACKS_REJECTED.labels(reason).inc(n)
    for (status, reason), n in created.items():
        CONVERSIONS_CREATED.labels(status, reason).inc(n)
        if reason == CAP_REACHED:
            CAPS_REACHED.labels(status).inc(n)


def _reason_label(reason: str) -> str:
    if not reason:
        return "none"
    return reason if reason in DECLINES else "other"


def postbacks_failed(count: int) -> None:
    """Postbacks given up as failed outside a callback (attempts used up)."""
    if count:
        POSTBACKS_FINAL.labels("failed").inc(count)


def clicks_flushed(count: int) -> None:
    if count:
        CLICKS_FLUSHED.inc(count)


def delivery_finished(row) -> None:
    """A partner postback attempt (a PostbackDelivery row) ended delivered or failed."""
    partner_id = row.partner_postback.partner_id
    DELIVERIES.labels(row.state, str(partner_id)).inc()
    log.info(
        "partner postback %s",
        row.state,
        extra={
            "delivery_id": row.pk,
            "conversion_id": row.conversion_id,
            "partner_id": partner_id,
            "attempt": row.attempt,
            "status_code": row.status_code,
            "error": row.error,
        },
    )


# Series that exist from the start at 0, so rates and alerts have them before the first event.
for _method in ("GET", "POST"):
    POSTBACKS_ACCEPTED.labels(_method)
for _state in ("accepted", "rejected", "failed"):
    POSTBACKS_FINAL.labels(_state)
for _outcome in ("recorded", "refused"):
    CLICKS.labels(_outcome)
