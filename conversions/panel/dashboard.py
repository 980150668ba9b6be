"""The operator panel's dashboard: conversions per day, top offers and partners, queue health.

The 30-day figures read a month of conversions (about 3 s for a million
rows), so they are cached for five minutes; the queue health is read fresh on every view from the small partial
index of unfinished postbacks.
"""

from datetime import timedelta

from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from conversions.intake import spool
from conversions.models import Conversion, Postback, PostbackDelivery

from .admin import STATUS_COLOURS

S = Conversion.Status
DAYS = 30
STATS_CACHE_SECONDS = 300
# Waiting longer than this means processing does not keep up with arrivals.
BEHIND_AFTER = timedelta(minutes=1)
CHART = {"width": 900, "height": 220, "top": 10, "bottom": 24, "left": 36}


def daily_by_status(today, days: int = DAYS) -> list[dict]:
    """One entry per day (oldest first): {"day", "total", status: count, ...}."""
    start = today - timedelta(days=days - 1)
    start_at = timezone.make_aware(timezone.datetime.combine(start, timezone.datetime.min.time()))
    rows = (
        Conversion.objects.filter(created_at__gte=start_at)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    by_day = {start + timedelta(days=i): dict.fromkeys(S.values, 0) for i in range(days)}
    for row in rows:
        if row["day"] in by_day:
            by_day[row["day"]][row["status"]] = row["n"]
    return [{"day": day, "total": sum(counts.values()), **counts} for day, counts in by_day.items()]


def chart(days: list[dict]) -> dict:
    """Geometry of a stacked bar chart (inline SVG): one bar per day, one segment per status."""
    width, height = CHART["width"], CHART["height"]
    top, bottom, left = CHART["top"], CHART["bottom"], CHART["left"]
    plot_h = height - top - bottom
    slot = (width - left) / max(len(days), 1)
    peak = max((d["total"] for d in days), default=0) or 1
    bars = []
    for i, day in enumerate(days):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        segments = []
        for status in (S.APPROVED, S.HOLD, S.PENDING, S.DECLINED):
            h = plot_h * day[status] / peak
            if h:
                y -= h
                segments.append(
                    {"y": round(y, 1), "h": round(h, 1), "colour": STATUS_COLOURS[status]}
                )
        title = ", ".join(f"{day[s]} {s}" for s in S.values if day[s]) or "no conversions"
        bars.append(
            {
                "x": round(x, 1),
                "w": round(slot * 0.7, 1),
                "segments": segments,
                "title": f"{day['day']:%Y-%m-%d}: {title}",
                "label": f"{day['day']:%d}" if i % 3 == 0 or i == len(days) - 1 else "",
                "label_x": round(x + slot * 0.35, 1),
            }
        )
    return {
        **CHART,
        "bars": bars,
        "peak": peak,
        "axis_y": top + plot_h,
        "label_y": height - 6,
        "legend": [(s, STATUS_COLOURS[s]) for s in (S.APPROVED, S.HOLD, S.PENDING, S.DECLINED)],
    }


def top(by: str, since, limit: int = 10) -> list[dict]:
    """Offers or partners with the most conversions since ``since``."""
    approved = Q(status=S.APPROVED)
    label = "offer__title" if by == "offer" else "partner__name"
    return list(
        Conversion.objects.filter(created_at__gte=since)
        .values(ident=F(f"{by}_id"), name=F(label))
        .annotate(
            conversions=Count("id"),
            approved=Count("id", filter=approved),
            revenue=Sum("revenue", filter=approved),
            payout=Sum("payout", filter=approved),
        )
        .order_by("-conversions")[:limit]
    )


def queue_health(now) -> dict:
    """How the postback pipeline keeps up: waiting, in flight, failed, the oldest waiting,
    and the spool (waiting for import, or set aside because the database refused them)."""
    states = dict(
        Postback.objects.filter(state__in=[Postback.State.RECEIVED, Postback.State.PROCESSING])
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    oldest = Postback.objects.filter(
        state__in=[Postback.State.RECEIVED, Postback.State.PROCESSING]
    ).aggregate(at=Min("received_at"))["at"]
    hour_ago = now - timedelta(hours=1)
    last_hour = dict(
        Postback.objects.filter(received_at__gte=hour_ago)
        .values_list("state")
        .annotate(n=Count("id"))
        .order_by()
    )
    waiting_for = now - oldest if oldest else None
    return {
        "received": states.get(Postback.State.RECEIVED, 0),
        "processing": states.get(Postback.State.PROCESSING, 0),
        "failed": Postback.objects.filter(state=Postback.State.FAILED).count(),
        "oldest_waiting": oldest,
        "waiting_seconds": int(waiting_for.total_seconds()) if waiting_for else 0,
        "behind": bool(waiting_for and waiting_for > BEHIND_AFTER),
        "last_hour": {
            "received": sum(last_hour.values()),
            "accepted": last_hour.get(Postback.State.ACCEPTED, 0),
            "rejected": last_hour.get(Postback.State.REJECTED, 0),
        },
        "deliveries_pending": PostbackDelivery.objects.filter(
            state=PostbackDelivery.State.PENDING
        ).count(),
        "deliveries_failed_last_hour": PostbackDelivery.objects.filter(
            state=PostbackDelivery.State.FAILED, created_at__gte=hour_ago
        ).count(),
        # This web host's spool: postbacks answered while the database was away.
        "spooled": spool.pending(),
        "set_aside": spool.set_aside(),
    }


def stats_key(now) -> str:
    return f"admin-dashboard:{timezone.localdate(now).isoformat()}"


def stats(now) -> dict:
    today = timezone.localdate(now)
    key = stats_key(now)
    cached = cache.get(key)
    if cached is None:
        days = daily_by_status(today)
        since = now - timedelta(days=DAYS)
        cached = {
            "days": days,
            "chart": chart(days),
            "top_offers": top("offer", since),
            "top_partners": top("partner", since),
        }
        cache.set(key, cached, STATS_CACHE_SECONDS)
    return cached


def dashboard_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("conversions.view_conversion"):
        raise PermissionDenied
    now = timezone.now()
    figures = stats(now)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "queue": queue_health(now),
        **figures,
        "tops": [
            ("Top offers", figures["top_offers"], "offer"),
            ("Top partners", figures["top_partners"], "partner"),
        ],
        "days_shown": DAYS,
    }
    return TemplateResponse(request, "admin/dashboard.html", context)
