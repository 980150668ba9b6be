"""Statistics: clicks, conversions and money grouped by time, offer, partner, goal, country or sub.

DESIGN.md "Statistics". Steps of :func:`report`:

1. Choose where to read: on PostgreSQL the smallest counter table
   (conversions/panel/rollups.py) that has every dimension the report groups
   or filters by. Sub counters are per UTC day and partner: a sub report by
   hour, in a zone whose offset is not 0 over the range, or with an offer,
   advertiser or country reads the raw rows, as do two subs and SQLite.
2. One query groups the rows of the date range by the time bucket (the UTC
   hour's start in ``tz``, truncated to hour, day or month) and the other
   dimensions, goal and status; click rows have no status.
3. Here: advertisers from offers, clicks beside the conversions of their key
   (a click has no goal: with ``goal`` in the grouping, each goal's row shows
   the clicks of its other keys), the derived figures, the order of keys.

Time buckets are whole UTC hours. In a zone whose offset is whole hours (nearly
all; any DST) days and months are exact. In a zone with a half or quarter
hour offset (Asia/Kolkata, Asia/Kathmandu…) a UTC hour counts in the local day
and hour where it starts: up to 45 minutes at each end of a day go to the
neighbouring day.
"""

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.conf import settings
from django.db import connection
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from conversions.models import SUB_FIELDS, Click, Conversion, OfferStat, SubStat, TrafficStat
from offers.models import Offer

TIME_DIMENSIONS = ("hour", "day", "month")
DIMENSIONS = (*TIME_DIMENSIONS, "offer", "advertiser", "partner", "goal", "country", *SUB_FIELDS)
FILTERS = ("offer", "advertiser", "partner", "goal", "country")
MAX_GROUPS = 3
MAX_DAYS = 732
MAX_HOUR_DAYS = 93
# In the order of DESIGN.md's answer.
STATUSES = ("approved", "pending", "hold", "declined")
FIGURES = (
    "clicks",
    "conversions",
    *STATUSES,
    "revenue",
    "payout",
    "profit",
    "cr",
    "epc",
)
CENT = Decimal("0.0001")
EPC = Decimal("0.0001")
ZERO = Decimal(0)
# Dimensions each counter table has (time and goal/status in all of them).
ROLLUP_DIMENSIONS = (
    (OfferStat, {"offer"}),
    (TrafficStat, {"offer", "partner", "country"}),
)


class StatsError(ValueError):
    """A parameter the report cannot use; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Query:
    group_by: tuple[str, ...] = ("day",)
    date_from: date | None = None
    date_to: date | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    offer: tuple[int, ...] = ()
    advertiser: tuple[int, ...] = ()
    partner: tuple[int, ...] = ()
    goal: str = ""
    country: str = ""

    @property
    def time_dimension(self) -> str | None:
        return next((g for g in self.group_by if g in TIME_DIMENSIONS), None)

    def bounds(self) -> tuple[datetime, datetime]:
        """The UTC hours of the range: those whose start falls in [date_from, date_to] in tz."""
        return _hour_on_or_after(self.date_from, self.tz), _hour_on_or_after(
            self.date_to + timedelta(days=1), self.tz
        )

    def filters(self) -> dict:
        return {name: getattr(self, name) for name in FILTERS if getattr(self, name)}


def _hour_on_or_after(day: date, tz: ZoneInfo) -> datetime:
    start = datetime.combine(day, time(), tzinfo=tz).astimezone(UTC)
    hour = start.replace(minute=0, second=0, microsecond=0)
    return hour if hour == start else hour + timedelta(hours=1)


def today(tz: ZoneInfo) -> date:
    return timezone.now().astimezone(tz).date()


def default_timezone() -> ZoneInfo:
    return ZoneInfo(settings.STATS_TIMEZONE)


# --- Parameters ------------------------------------------------------------


def _group_by(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not 1 <= len(names) <= MAX_GROUPS:
        raise StatsError("group_by", f"Give one to {MAX_GROUPS} of: {', '.join(DIMENSIONS)}.")
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown:
        raise StatsError(
            "group_by", f"Unknown grouping {unknown[0]!r}; use {', '.join(DIMENSIONS)}."
        )
    if len(set(names)) != len(names):
        raise StatsError("group_by", "A grouping is named twice.")
    if sum(n in TIME_DIMENSIONS for n in names) > 1:
        raise StatsError("group_by", "Group by one of hour, day or month at a time.")
    return names


def _date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value) if len(value) == 10 else date.fromisoformat("x")
    except ValueError:
        raise StatsError(name, "Use a date as YYYY-MM-DD.") from None


def _tz(value: str) -> ZoneInfo:
    try:
        if value not in _zones():
            raise ZoneInfoNotFoundError(value)
        tz = ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatsError(
            "tz", f"Unknown time zone {value!r}; use an IANA name such as Europe/Berlin."
        ) from None
    return tz


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _ids(name: str, value: str) -> tuple[int, ...]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isascii() and p.isdigit() and len(p) < 19 for p in parts):
        raise StatsError(name, "Use ids: whole numbers, comma separated.")
    return tuple(sorted({int(p) for p in parts}))


def _goal(value: str) -> str:
    if len(value) > 64 or not value.isprintable():
        raise StatsError("goal", "A goal value is at most 64 printable characters.")
    return value


def _country(value: str) -> str:
    if not (len(value) == 2 and value.isascii() and value.isalpha()):
        raise StatsError("country", "Use a two-letter country code (ISO 3166).")
    return value.upper()


# One line per parameter: how its text is read. Empty values are left out.
PARAMETERS = {
    "group_by": _group_by,
    "date_from": lambda v: _date("date_from", v),
    "date_to": lambda v: _date("date_to", v),
    "tz": _tz,
    "offer": lambda v: _ids("offer", v),
    "advertiser": lambda v: _ids("advertiser", v),
    "partner": lambda v: _ids("partner", v),
    "goal": _goal,
    "country": _country,
}


def parse(params) -> Query:
    """A Query from request parameters (a QueryDict or a dict of strings); raises StatsError."""
    values = {}
    for name, read in PARAMETERS.items():
        raw = params.get(name)
        if raw is None:
            continue
        if not isinstance(raw, str):
            raise StatsError(name, "Give one value.")
        raw = raw.strip()
        if raw:
            values[name] = read(raw)
    tz = values.setdefault("tz", default_timezone())
    values.setdefault("date_to", today(tz))
    values.setdefault("date_from", values["date_to"] - timedelta(days=6))
    span = (values["date_to"] - values["date_from"]).days + 1
    if span < 1:
        raise StatsError("date_from", "date_from is after date_to.")
    if span > MAX_DAYS:
        raise StatsError("date_to", f"A report covers at most {MAX_DAYS} days.")
    if "hour" in values.get("group_by", ()) and span > MAX_HOUR_DAYS:
        raise StatsError("group_by", f"Group by hour over at most {MAX_HOUR_DAYS} days.")
    return Query(**values)


# --- Reading ---------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where one query reads: a model, its time field and the path of each dimension."""

    model: type
    time: str
    paths: dict
    base: Q = field(default_factory=Q)
    rollup: bool = False


def _sources(query: Query) -> list[_Source]:
    """The counter table that covers the query, else the raw clicks and conversions."""
    needed = {g for g in query.group_by if g not in TIME_DIMENSIONS} | set(query.filters())
    needed = {"offer" if n == "advertiser" else n for n in needed} - {"goal"}
    subs = sorted(needed & set(SUB_FIELDS))
    if connection.vendor == "postgresql":
        common = {"offer": "offer_id", "partner": "partner_id", "country": "country"}
        for model, has in ROLLUP_DIMENSIONS:
            if needed <= has:
                return [_Source(model, "hour", common, rollup=True)]
        if len(subs) == 1 and needed - set(subs) <= {"partner"} and _utc_days(query):
            number = int(subs[0][3:])
            paths = {"partner": "partner_id", subs[0]: "sub"}
            return [_Source(SubStat, "hour", paths, base=Q(sub_no=number), rollup=True)]
    click_paths = {"offer": "offer_id", "partner": "partner_id", "country": "country"}
    click_paths |= {s: s for s in SUB_FIELDS}
    # A conversion keeps its click's country and subs (the click may be gone).
    conversion_paths = {"offer": "offer_id", "partner": "partner_id", "country": "country"}
    conversion_paths |= {s: s for s in SUB_FIELDS}
    return [
        _Source(Click, "created_at", click_paths),
        _Source(Conversion, "created_at", conversion_paths),
    ]


def _utc_days(query: Query) -> bool:
    """Whether the query's days are UTC days (the sub counters' days): no hours, offset 0 throughout."""
    if query.time_dimension == "hour":
        return False
    days = (query.date_to - query.date_from).days + 2
    return all(
        datetime.combine(query.date_from + timedelta(days=i), time(), tzinfo=query.tz).utcoffset()
        == timedelta(0)
        for i in range(days)
    )


def _rows(query: Query, source: _Source) -> list[dict]:
    """Sums per time bucket, dimension, goal and status from one source."""
    start, end = query.bounds()
    time_field = source.time
    q = source.base & Q(**{f"{time_field}__gte": start, f"{time_field}__lt": end})
    offers = set(query.offer)
    if query.advertiser:
        of_advertisers = set(
            Offer.objects.filter(advertiser__in=query.advertiser).values_list("id", flat=True)
        )
        offers = offers & of_advertisers if offers else of_advertisers
        if not offers:
            return []
    if offers:
        q &= Q(**{f"{source.paths['offer']}__in": offers})
    if query.partner:
        q &= Q(**{f"{source.paths['partner']}__in": query.partner})
    if query.country:
        q &= Q(**{source.paths["country"]: query.country})
    is_clicks = source.model is Click
    if query.goal and not is_clicks:
        # Click rows of a counter table have no goal: a goal filter keeps them.
        goal_match = Q(goal__iexact=query.goal)
        q &= (Q(status="") | goal_match) if source.rollup else goal_match

    names = {}
    kind = query.time_dimension
    if kind:
        # Raw rows are first put in their UTC hour, as the counters are.
        hour = source.time if source.rollup else Trunc(source.time, "hour", tzinfo=UTC)
        names["t"] = Trunc(hour, kind, tzinfo=query.tz)
    for dimension in query.group_by:
        if dimension in TIME_DIMENSIONS or dimension == "goal":
            continue
        path = source.paths["offer" if dimension == "advertiser" else dimension]
        # A conversion without a click counts under empty country and subs, as in the counters.
        value = Coalesce(path, Value("")) if "__" in path else F(path)
        names[f"d_{'offer' if dimension == 'advertiser' else dimension}"] = value
    qs = source.model.objects.filter(q).annotate(**names)
    keys = list(names)
    if "goal" in query.group_by and not is_clicks:
        # A click has no goal: its clicks go to every goal's row of its key (below).
        keys.append("goal")
    if is_clicks:
        return list(qs.values(*keys).annotate(clicks=Count("pk")).order_by())
    # One row per key with a column per status: fewer rows than one per status.
    approved = Q(status=Conversion.Status.APPROVED)
    if source.rollup:
        metrics = {"clicks": Sum("clicks")}
        metrics |= {s: Sum("conversions", filter=Q(status=s)) for s in STATUSES}
        metrics |= {m: Sum(m, filter=approved) for m in ("revenue", "payout")}
    else:
        metrics = {s: Count("pk", filter=Q(status=s)) for s in STATUSES}
        metrics |= {m: Sum(m, filter=approved) for m in ("revenue", "payout")}
    return list(qs.values(*keys).annotate(**metrics).order_by())


# --- Assembling ------------------------------------------------------------


def _bucket_text(kind: str, value: datetime, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    if kind == "hour":
        return local.isoformat()
    if kind == "day":
        return local.date().isoformat()
    return f"{local.year:04d}-{local.month:02d}"


def _empty() -> dict:
    return {"clicks": 0, **dict.fromkeys(STATUSES, 0), "revenue": ZERO, "payout": ZERO}


def _figures(sums: dict) -> dict:
    clicks = sums["clicks"]
    conversions = sums["approved"] + sums["pending"] + sums["hold"]
    revenue, payout = sums["revenue"], sums["payout"]
    return {
        "clicks": clicks,
        "conversions": conversions,
        **{s: sums[s] for s in STATUSES},
        "revenue": str(revenue.quantize(CENT)),
        "payout": str(payout.quantize(CENT)),
        "profit": str((revenue - payout).quantize(CENT)),
        "cr": round(conversions * 100 / clicks, 2) if clicks else 0,
        "epc": str(
            (payout / clicks).quantize(EPC, ROUND_HALF_UP) if clicks else ZERO.quantize(EPC)
        ),
    }


def _sort_key(key: tuple) -> tuple:
    return tuple((v is None, v if v is not None else "") for v in key)


def report(query: Query) -> dict:
    """``{"results": [{"key", figures…}], "totals": {figures…}}`` (DESIGN.md "Statistics")."""
    rows = []
    for source in _sources(query):
        rows += _rows(query, source)
    advertiser_of = {}
    if "advertiser" in query.group_by:
        offer_ids = {row["d_offer"] for row in rows}
        advertiser_of = dict(
            Offer.objects.filter(id__in=offer_ids).values_list("id", "advertiser_id")
        )
    kind = query.time_dimension
    goal_at = query.group_by.index("goal") if "goal" in query.group_by else None

    def key_of(row: dict) -> tuple:
        key = []
        for dimension in query.group_by:
            if dimension in TIME_DIMENSIONS:
                key.append(_bucket_text(kind, row["t"], query.tz))
            elif dimension == "goal":
                key.append(row.get("goal") or None)
            elif dimension == "advertiser":
                key.append(advertiser_of.get(row["d_offer"]))
            else:
                key.append(row[f"d_{dimension}"])
        return tuple(key)

    def without_goal(key: tuple) -> tuple:
        return key if goal_at is None else (*key[:goal_at], None, *key[goal_at + 1 :])

    clicks = defaultdict(int)
    converted = defaultdict(_empty)
    for row in rows:
        key = key_of(row)
        if row.get("clicks"):
            clicks[without_goal(key)] += row["clicks"]
        if any(row.get(s) for s in STATUSES) or row.get("revenue") or row.get("payout"):
            sums = converted[key]
            for name in STATUSES:
                sums[name] += row[name] or 0
            sums["revenue"] += row["revenue"] or ZERO
            sums["payout"] += row["payout"] or ZERO

    by_key = {}
    for key, sums in converted.items():
        if not any(sums.values()):
            continue
        by_key[key] = {**sums, "clicks": clicks.get(without_goal(key), 0)}
    covered = {without_goal(key) for key in by_key}
    for key, count in clicks.items():
        if key not in covered and count:
            if goal_at is not None and query.goal:
                key = (*key[:goal_at], query.goal, *key[goal_at + 1 :])
            by_key[key] = {**_empty(), "clicks": count}

    totals = _empty()
    totals["clicks"] = sum(clicks.values())
    for sums in converted.values():
        for name in (*STATUSES, "revenue", "payout"):
            totals[name] += sums[name]
    results = [
        {"key": dict(zip(query.group_by, key, strict=True)), **_figures(by_key[key])}
        for key in sorted(by_key, key=_sort_key)
    ]
    return {"results": results, "totals": _figures(totals)}
