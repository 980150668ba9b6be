"""Cap accounting: one counter per cap and period, always equal to what the cap counts.

A cap counts the conversions of its offer (and of its goal, and its partner,
where set) that are not declined, by their creation time in CAP_TIMEZONE: one
each, or their payout for a payout cap. The counter stays equal to that:

- a counter row is made from a count of those conversions (``lock_counters``),
  so a cap created or edited mid-period, and every new period, start from the
  truth;
- a new conversion is spent with a conditional UPDATE (``spend``) in its own
  transaction, and every later change of what a conversion counts (a status
  change, a repricing) moves the counters by the difference (``shift``);
- whatever counts holds its offers' cap lock shared (``lock_caps_of``) until it
  commits, and a cap that changes what it counts is recounted holding it
  exclusively (``Cap.save``), so no conversion is half counted meanwhile;
- ``reconcile`` (beat) compares each current counter with a count and repairs
  it, logging an error: a repair means a path above was bypassed.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DecimalField, F, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from conversions.models import Conversion
from offers.models import Cap, CapCounter, lock_caps_of, period_key

log = logging.getLogger(__name__)

Counted = tuple[str, Decimal] | None  # what a conversion counts as: (status, payout), or nothing


def applicable(caps: Iterable[Cap], goal: str | None, partner_id: int) -> list[Cap]:
    """Caps that count a conversion of ``goal`` (a value) by ``partner_id``, in id order.

    A cap's goal matches by value, case-insensitively, as postbacks name goals;
    the caps must come with their goal (``select_related("goal")``).
    """
    goal = (goal or "").lower()
    return sorted(
        (
            cap
            for cap in caps
            if (cap.goal_id is None or cap.goal.value.lower() == goal)
            and (cap.partner_id is None or cap.partner_id == partner_id)
        ),
        key=lambda cap: cap.pk,
    )


def period_bounds(cap: Cap, key: str) -> tuple[datetime | None, datetime | None]:
    """The period a key names, as [start, end) in CAP_TIMEZONE (None: unbounded)."""
    zone = ZoneInfo(settings.CAP_TIMEZONE)
    if cap.period == Cap.Period.DAY:
        first = date.fromisoformat(key)
        after = first + timedelta(days=1)
    elif cap.period == Cap.Period.MONTH:
        year, month = (int(part) for part in key.split("-"))
        first = date(year, month, 1)
        after = date(year + month // 12, month % 12 + 1, 1)
    else:
        return None, None
    return datetime.combine(first, time(), zone), datetime.combine(after, time(), zone)


def counted_conversions(cap: Cap, key: str) -> QuerySet:
    """The conversions ``cap`` counts in the period ``key``."""
    rows = Conversion.objects.filter(offer_id=cap.offer_id).exclude(
        status=Conversion.Status.DECLINED
    )
    if cap.goal_id is not None:
        rows = rows.filter(goal__iexact=cap.goal.value)
    if cap.partner_id is not None:
        rows = rows.filter(partner_id=cap.partner_id)
    start, end = period_bounds(cap, key)
    if start is not None:
        rows = rows.filter(created_at__gte=start, created_at__lt=end)
    return rows


def _used(cap: Cap) -> Count | Sum:
    return Count("pk") if cap.kind == Cap.Kind.CONVERSIONS else Sum("payout")


def measure(cap: Cap, key: str, *, without: Conversion | None = None) -> Decimal:
    """How much the period ``key`` of ``cap`` uses, counted from the conversions."""
    rows = counted_conversions(cap, key)
    if without is not None and without.pk is not None:
        rows = rows.exclude(pk=without.pk)
    return Decimal(rows.aggregate(used=_used(cap))["used"] or 0)


def _counts(counted: Counted) -> bool:
    return counted is not None and counted[0] != Conversion.Status.DECLINED


def amount(cap: Cap, counted: Counted) -> Decimal:
    """What one conversion, counted as ``counted``, uses of ``cap``."""
    if not _counts(counted):
        return Decimal(0)
    return Decimal(1) if cap.kind == Cap.Kind.CONVERSIONS else Decimal(counted[1])


def lock_counters(
    wanted: Iterable[tuple[Cap, str]],
    initial: Callable[[Cap, str], Decimal] = measure,
) -> None:
    """Make the missing counters, each from ``initial`` (a count), and lock them all.

    Steps: find which exist; count and insert the others (ON CONFLICT DO
    NOTHING: a concurrent transaction that made one first wins, and its count
    is as good); then lock every wanted counter in (cap, period) order, so
    concurrent batches queue on counters instead of deadlocking. The count
    runs after the caller took the offers' cap lock and before it changes any
    conversion it counts.
    """
    caps = {(cap.pk, key): cap for cap, key in wanted}
    if not caps:
        return
    rows = Q()
    for cap_id, key in caps:
        rows |= Q(cap_id=cap_id, period_key=key)
    present = set(CapCounter.objects.filter(rows).values_list("cap_id", "period_key"))
    if missing := [pair for pair in caps if pair not in present]:
        CapCounter.objects.bulk_create(
            [
                CapCounter(cap_id=cap_id, period_key=key, used=initial(caps[cap_id, key], key))
                for cap_id, key in missing
            ],
            ignore_conflicts=True,
        )
    list(
        CapCounter.objects.select_for_update()
        .filter(rows)
        .order_by("cap_id", "period_key")
        .values_list("pk", flat=True)
    )


class _Declined(Exception):
    pass


def spend(caps: list[Cap], payout: Decimal, created_at: datetime) -> str | None:
    """Count a new conversion against ``caps``; its counters are locked (``lock_counters``).

    Returns None when every cap had room, ``"pending"`` when a full cap lets
    over-cap conversions through as pending (counted), ``"declined"`` when a
    full cap declines them (nothing counted). Each counter is raised by
    ``UPDATE ... WHERE used + amount <= limit``: the row lock serialises
    concurrent callbacks and the condition is re-read after the wait, so no
    interleaving can spend past the limit. Caps are taken in id order, so two
    callbacks never wait on each other's counters in opposite orders.
    """
    if not caps:
        return None
    counted = (Conversion.Status.APPROVED, payout)
    try:
        with transaction.atomic():
            full = []
            for cap in caps:
                key, used = period_key(cap, created_at), amount(cap, counted)
                room = CapCounter.objects.filter(
                    cap=cap, period_key=key, used__lte=cap.limit - used
                ).update(used=F("used") + used)
                if not room:
                    full.append((cap, key, used))
            if any(cap.overcap_status == Cap.OvercapStatus.DECLINED for cap, _, _ in full):
                raise _Declined
            for cap, key, used in full:
                CapCounter.objects.filter(cap=cap, period_key=key).update(used=F("used") + used)
            return Cap.OvercapStatus.PENDING if full else None
    except _Declined:
        return Cap.OvercapStatus.DECLINED


def caps_of(conversion: Conversion) -> list[Cap]:
    caps = Cap.objects.filter(offer_id=conversion.offer_id).select_related("goal")
    return applicable(caps, conversion.goal, conversion.partner_id)


def shift(
    conversion: Conversion,
    before: Counted,
    after: Counted,
    offer_caps: list[Cap] | None = None,
) -> None:
    """Move the caps counting ``conversion`` from ``before`` to ``after`` (by the difference).

    Inside the change's transaction, before or after the row is written: a
    counter that must be made is counted without this conversion, plus what
    it counted ``before``. ``offer_caps``: the offer's caps, if read already
    (under its cap lock). Never refused by a cap: a status change or a
    repricing of a conversion the cap admitted may take it past its limit.
    """
    if _counts(before) == _counts(after) and (
        not _counts(before) or Decimal(before[1]) == Decimal(after[1])
    ):
        return  # counted as before, for the same payout: no cap moves
    if offer_caps is None:
        lock_caps_of([conversion.offer_id], exclusive=False)
        caps = caps_of(conversion)
    else:
        caps = applicable(offer_caps, conversion.goal, conversion.partner_id)
    moves = {cap: amount(cap, after) - amount(cap, before) for cap in caps}
    moves = {cap: delta for cap, delta in moves.items() if delta}
    if not moves:
        return
    keys = [(cap, period_key(cap, conversion.created_at)) for cap in moves]
    lock_counters(
        keys, lambda cap, key: measure(cap, key, without=conversion) + amount(cap, before)
    )
    for cap, key in keys:
        CapCounter.objects.filter(cap=cap, period_key=key).update(used=F("used") + moves[cap])


def adjust(conversion: Conversion, sign: int) -> None:
    """Count (+1) or uncount (-1) a whole conversion, e.g. one imported as it stands."""
    counted = (conversion.status, conversion.payout)
    shift(conversion, None if sign > 0 else counted, counted if sign > 0 else None)


def usage(cap: Cap, when: datetime) -> Decimal:
    """What ``cap`` uses in the period of ``when``: its counter, else a count."""
    key = period_key(cap, when)
    counter = CapCounter.objects.filter(cap=cap, period_key=key).first()
    return counter.used if counter else measure(cap, key)


def count_current_period(sender, cap: Cap, **kwargs) -> None:
    """``cap_counting_changed``: the cap's current counter, from a count (under its lock)."""
    lock_counters([(cap, period_key(cap, timezone.now()))])


def reconcile() -> int:
    """Compare every cap's current counter with a count of its conversions; repair any difference.

    Each comparison is one statement, so the counter and the count come from
    one snapshot: every change of what a cap counts commits with its counter
    change, so a difference there is real. It is repaired by adding it
    (concurrent changes since the snapshot are kept) and logged as an error.
    Returns how many counters were repaired.
    """
    now = timezone.now()
    repaired = 0
    for cap in Cap.objects.select_related("goal").order_by("pk"):
        key = period_key(cap, now)
        # One row, one value: the whole count, grouped by the offer they all share.
        total = counted_conversions(cap, key).order_by().values("offer_id")
        truth = Coalesce(
            Subquery(total.annotate(used=_used(cap)).values("used")),
            Value(Decimal(0)),
            output_field=DecimalField(max_digits=16, decimal_places=4),
        )
        found = (
            CapCounter.objects.filter(cap=cap, period_key=key)
            .annotate(truth=truth)
            .values_list("pk", "used", "truth")
            .first()
        )
        if found is None or found[1] == found[2]:
            continue
        pk, used, counted = found
        log.error(
            "cap %s (offer %s) %s: counter said %s, its conversions %s; repaired",
            cap.pk,
            cap.offer_id,
            key,
            used,
            counted,
        )
        CapCounter.objects.filter(pk=pk).update(used=F("used") + (counted - used))
        repaired += 1
    return repaired
