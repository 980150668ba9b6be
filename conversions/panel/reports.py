"""The admin's Reports page: the statistics as a sortable table with totals, a chart and CSV.

Reads the same report as ``GET /api/v1/stats/`` (conversions/panel/stats.py);
the chart is an inline SVG drawn here (conversions per time bucket as bars,
approved revenue as a line), so the page needs no script or outside asset.
"""

from datetime import date, timedelta
from decimal import Decimal

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from offers.models import Advertiser, Offer
from partners.models import Partner

from . import stats
from .stats_api import csv_text

FIGURE_LABELS = {
    "clicks": "Clicks",
    "conversions": "Conversions",
    "approved": "Approved",
    "pending": "Pending",
    "hold": "Hold",
    "declined": "Declined",
    "revenue": "Revenue",
    "payout": "Payout",
    "profit": "Profit",
    "cr": "CR %",
    "epc": "EPC",
}
DIMENSION_LABELS = {
    "hour": "Hour",
    "day": "Day",
    "month": "Month",
    "offer": "Offer",
    "advertiser": "Advertiser",
    "partner": "Partner",
    "goal": "Goal",
    "country": "Country",
    **{s: s.capitalize() for s in stats.SUB_FIELDS},
}
CHART = {"width": 1000, "height": 220, "top": 16, "bottom": 26, "left": 48, "right": 64}
PERMISSION = "conversions.view_conversion"


def presets(today: date) -> list[tuple[str, date, date]]:
    first = today.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return [
        ("Today", today, today),
        ("Yesterday", today - timedelta(days=1), today - timedelta(days=1)),
        ("Last 7 days", today - timedelta(days=6), today),
        ("Last 30 days", today - timedelta(days=29), today),
        ("This month", first, today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
    ]


def _names(query: stats.Query, results: list[dict]) -> dict:
    """Display names of the ids in the keys: {dimension: {id: name}}."""
    wanted = {"offer": Offer, "advertiser": Advertiser, "partner": Partner}
    names = {}
    for dimension, model in wanted.items():
        ids = {row["key"][dimension] for row in results if dimension in row["key"]}
        if ids:
            names[dimension] = {obj.pk: str(obj) for obj in model.objects.filter(pk__in=ids)}
    return names


def _sorted(results: list[dict], by: str, descending: bool) -> list[dict]:
    if by in FIGURE_LABELS:

        def value(row):
            return Decimal(str(row[by]))

    else:

        def value(row):
            v = row["key"].get(by)
            return (v is None, "" if v is None else v)

    return sorted(results, key=value, reverse=descending)


def chart(query: stats.Query) -> dict:
    """Geometry of the chart over the query's range: bars of conversions, a line of revenue."""
    span = (query.date_to - query.date_from).days + 1
    kind = "hour" if span <= 2 else "day" if span <= 93 else "month"
    series = stats.report(
        stats.Query(
            group_by=(kind,),
            date_from=query.date_from,
            date_to=query.date_to,
            tz=query.tz,
            offer=query.offer,
            advertiser=query.advertiser,
            partner=query.partner,
            goal=query.goal,
            country=query.country,
        )
    )["results"]
    width, height = CHART["width"], CHART["height"]
    top, bottom, left, right = CHART["top"], CHART["bottom"], CHART["left"], CHART["right"]
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(row["key"][kind], row["conversions"], Decimal(row["revenue"])) for row in series]
    slot = plot_w / max(len(points), 1)
    peak = max((p[1] for p in points), default=0) or 1
    peak_revenue = max((p[2] for p in points), default=Decimal(0)) or Decimal(1)
    bars, line, labels = [], [], []
    step = max(1, len(points) // 10)
    for i, (label, conversions, revenue) in enumerate(points):
        x = left + i * slot
        h = plot_h * conversions / peak
        bars.append(
            {
                "x": round(x + slot * 0.15, 1),
                "y": round(top + plot_h - h, 1),
                "w": round(slot * 0.7, 1),
                "h": round(h, 1),
                "title": f"{label}: {conversions} conversions, revenue {revenue:.2f}",
            }
        )
        y = top + plot_h - float(Decimal(plot_h) * revenue / peak_revenue)
        line.append(f"{x + slot / 2:.1f},{y:.1f}")
        if i % step == 0:
            labels.append(
                {"x": round(x + slot / 2, 1), "text": label[5:] if kind != "month" else label}
            )
    return {
        **CHART,
        "kind": kind,
        "bars": bars,
        "line": " ".join(line),
        "labels": labels,
        "peak": peak,
        "peak_revenue": f"{peak_revenue:.2f}",
        "axis_y": top + plot_h,
        "label_y": height - 8,
        "right_x": width - right + 6,
        "empty": not points,
    }


def reports_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    params = request.GET.copy()
    # The page's three grouping choosers make the one group_by parameter.
    chosen = [params.get(slot, "") for slot in ("g1", "g2", "g3")]
    if any(chosen):
        params["group_by"] = ",".join(dict.fromkeys(g for g in chosen if g))
    params.setdefault("group_by", "day")
    error = None
    try:
        query = stats.parse(params)
    except stats.StatsError as exc:
        error = f"{exc.field}: {exc.message}"
        query = stats.parse({"group_by": "day"})
    data = stats.report(query)
    if request.GET.get("export") == "csv":
        response = HttpResponse(csv_text(query.group_by, data), content_type="text/csv")
        name = f"stats-{query.date_from}-{query.date_to}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    sort = request.GET.get("sort", "")
    descending = request.GET.get("dir") == "desc"
    results = data["results"]
    if sort in FIGURE_LABELS or sort in query.group_by:
        results = _sorted(results, sort, descending)
    names = _names(query, results)
    rows = [
        {
            "keys": [names.get(g, {}).get(row["key"][g], row["key"][g]) for g in query.group_by],
            "figures": [row[f] for f in FIGURE_LABELS],
        }
        for row in results
    ]
    base = {k: v for k, v in params.items() if k not in ("sort", "dir", "export", "g1", "g2", "g3")}

    def link(**changes) -> str:
        return "?" + urlencode({**base, **changes})

    columns = [
        {
            "label": DIMENSION_LABELS[g],
            "name": g,
            "key": True,
            "sorted": sort == g,
            "descending": descending,
            "url": link(sort=g, dir="asc" if sort == g and descending else "desc"),
        }
        for g in query.group_by
    ] + [
        {
            "label": label,
            "name": name,
            "key": False,
            "sorted": sort == name,
            "descending": descending,
            "url": link(sort=name, dir="asc" if sort == name and descending else "desc"),
        }
        for name, label in FIGURE_LABELS.items()
    ]
    today = stats.today(query.tz)
    context = {
        **admin.site.each_context(request),
        "title": "Reports",
        "error": error,
        "query": query,
        "tz": query.tz.key,
        "group_slots": [query.group_by[i] if i < len(query.group_by) else "" for i in range(3)],
        "dimensions": DIMENSION_LABELS,
        "columns": columns,
        "rows": rows,
        "totals": [data["totals"][f] for f in FIGURE_LABELS],
        "presets": [
            {
                "label": label,
                "url": link(date_from=start.isoformat(), date_to=end.isoformat()),
                "active": (start, end) == (query.date_from, query.date_to),
            }
            for label, start, end in presets(today)
        ],
        "csv_url": link(export="csv"),
        "api_url": reverse("stats") + link(),
        "chart": chart(query),
        "offers": Offer.objects.order_by("title").only("id", "title"),
        "advertisers": Advertiser.objects.order_by("name").only("id", "name"),
        "partners": Partner.objects.order_by("name").only("id", "name"),
        "selected": {
            "offer": query.offer[0] if len(query.offer) == 1 else None,
            "advertiser": query.advertiser[0] if len(query.advertiser) == 1 else None,
            "partner": query.partner[0] if len(query.partner) == 1 else None,
        },
    }
    return TemplateResponse(request, "admin/reports.html", context)
