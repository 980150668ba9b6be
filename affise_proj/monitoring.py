"""/metrics (Prometheus text format) and /readyz (each dependency, for a load balancer or an operator).

/metrics gives the counters and histograms of every web and worker process
(affise_proj/metrics.py) and, read at scrape time where the truth lives:

- from the database (the small partial index of unfinished postbacks):
  ``postbacks_waiting`` (received + processing), ``postbacks_received``,
  ``postbacks_processing``, ``postbacks_oldest_waiting_seconds``;
- from this host's spool folder: ``postbacks_spooled`` (set-aside included)
  and ``postbacks_spool_set_aside``;
- from the click buffer's Redis stream: ``clicks_buffered``,
  ``clicks_buffer_lag_seconds`` (age of the oldest click not yet flushed) and
  ``clicks_set_aside``;
- from the workers' heartbeats: ``celery_workers``.

A source that does not answer leaves its gauges out and says so in
``monitoring_source_up{source}``: a scrape still answers while PostgreSQL or
Redis is down, which is when the spool gauge matters.
"""

import functools
import time

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from affise_proj import heartbeat, metrics
from conversions.intake import click_buffer, spool
from conversions.models import Postback
from conversions.processing import dispatch

WAITING = (Postback.State.RECEIVED, Postback.State.PROCESSING)


@functools.cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _gauge(name: str, documentation: str, value: float, labels: dict | None = None):
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    if labels:
        family.add_metric(list(labels.values()), value)
    else:
        family.add_metric([], value)
    return family


def waiting_postbacks() -> dict[str, tuple[int, object]]:
    """{state: (count, oldest received_at)} of the unfinished postbacks: one query."""
    rows = (
        Postback.objects.filter(state__in=WAITING)
        .values("state")
        .annotate(n=Count("id"), oldest=Min("received_at"))
        .order_by()
    )
    return {row["state"]: (row["n"], row["oldest"]) for row in rows}


class ScrapeTimeCollector:
    """Gauges read when Prometheus asks, from the database, the spool folder and Redis."""

    def collect(self):
        up = GaugeMetricFamily(
            "monitoring_source_up",
            "1 when the source of the scrape-time gauges answered this scrape.",
            labels=["source"],
        )
        yield from self._database(up)
        yield _gauge(
            "postbacks_spooled",
            "Postbacks in this host's spool (waiting for the database, set-aside included).",
            spool.pending() + spool.set_aside(),
        )
        yield _gauge(
            "postbacks_spool_set_aside",
            "Spooled postbacks the database refused, waiting for an operator.",
            spool.set_aside(),
        )
        yield from self._click_buffer(up)
        yield from self._workers(up)
        yield up

    def _database(self, up):
        try:
            waiting = waiting_postbacks()
        except DatabaseError:
            up.add_metric(["database"], 0)
            return
        up.add_metric(["database"], 1)
        counts = {state: waiting.get(state, (0, None))[0] for state in WAITING}
        yield _gauge(
            "postbacks_waiting",
            "Postbacks not final yet (received + processing).",
            sum(counts.values()),
        )
        yield _gauge("postbacks_received", "Postbacks stored, not yet claimed.", counts["received"])
        yield _gauge(
            "postbacks_processing", "Postbacks claimed, batch not settled.", counts["processing"]
        )
        oldest = [at for _, at in waiting.values() if at is not None]
        age = (timezone.now() - min(oldest)).total_seconds() if oldest else 0.0
        yield _gauge(
            "postbacks_oldest_waiting_seconds",
            "Age of the oldest postback not final yet (0 when none waits).",
            max(age, 0.0),
        )

    def _click_buffer(self, up):
        if not click_buffer.enabled():
            return
        client = _redis(settings.CLICK_BUFFER_URL)
        try:
            length = client.xlen(click_buffer.STREAM_KEY)
            first = client.xrange(click_buffer.STREAM_KEY, "-", "+", count=1)
            rejected = client.xlen(click_buffer.REJECTED_KEY)
        except RedisError:
            up.add_metric(["click_buffer"], 0)
            return
        up.add_metric(["click_buffer"], 1)
        lag = 0.0
        if first:
            # A stream entry's id starts with the milliseconds of its XADD.
            entry_id = first[0][0]
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            lag = max(0.0, time.time() - int(entry_id.split("-")[0]) / 1000)
        yield _gauge("clicks_buffered", "Clicks in the Redis stream, not yet in the table.", length)
        yield _gauge(
            "clicks_buffer_lag_seconds",
            "Age of the oldest buffered click (0 when the buffer is empty).",
            lag,
        )
        yield _gauge("clicks_set_aside", "Buffered clicks the table refused.", rejected)

    def _workers(self, up):
        try:
            live = heartbeat.live()
        except (RedisError, OSError):
            up.add_metric(["workers"], 0)
            return
        up.add_metric(["workers"], 1)
        yield _gauge(
            "celery_workers",
            f"Celery workers that renewed their heartbeat in the last {heartbeat.TTL} s.",
            live,
        )


def render() -> bytes:
    """The whole exposition: every process's counters, then the scrape-time gauges."""
    state = CollectorRegistry()
    state.register(ScrapeTimeCollector())
    return generate_latest(metrics.registry()) + generate_latest(state)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape: ``Authorization: Bearer <METRICS_TOKEN>``; 404 while no token is set."""
    token = settings.METRICS_TOKEN
    if not token:
        return HttpResponseNotFound("Not found", content_type="text/plain")
    given = request.META.get("HTTP_AUTHORIZATION", "")
    if not constant_time_compare(given, f"Bearer {token}"):
        response = HttpResponse("Unauthorized", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render(), content_type=CONTENT_TYPE_LATEST)


def _timed(check) -> dict:
    started = time.monotonic()
    try:
        detail = check() or {}
        result = {"ok": True, **detail}
    except Exception as exc:
        result = {"ok": False, "error": exc.__class__.__name__}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> None:
    status = dispatch.broker_status()
    if status != "ok":
        raise ConnectionError(status)


def _ping(url: str):
    return lambda: _redis(url).ping() and None


def _spool() -> dict:
    set_aside = spool.set_aside()
    if set_aside:
        raise ValueError(f"{set_aside} set aside")
    return {"spooled": spool.pending()}


def readyz(request: HttpRequest) -> JsonResponse:
    """Each dependency with its answer time; 503 when one the web needs does not answer.

    The workers are reported, not required: postbacks are stored and answered
    without them, and a load balancer must not take the web away from
    advertisers because processing stopped.
    """
    checks = {"database": _timed(_database), "broker": _timed(_broker)}
    if settings.CLICK_BUFFER:
        checks["click_buffer"] = _timed(_ping(settings.CLICK_BUFFER_URL))
    checks["spool"] = _timed(_spool)
    ready = all(check["ok"] for check in checks.values())
    checks["workers"] = _timed(lambda: {"live": heartbeat.live()})
    checks["workers"]["required"] = False
    return JsonResponse({"ready": ready, "checks": checks}, status=200 if ready else 503)
