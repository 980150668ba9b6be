"""Cap accounting: counters raised conditionally inside the conversion's transaction."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from offers.models import Cap, CapCounter, Goal


def applicable(caps: list[Cap], goal: Goal | None, partner_id: int) -> list[Cap]:
    """Caps that count a conversion of ``goal`` by ``partner_id``, in a fixed (id) order."""
    return sorted(
        (
            cap
            for cap in caps
            if (cap.goal_id is None or (goal is not None and cap.goal_id == goal.pk))
            and (cap.partner_id is None or cap.partner_id == partner_id)
        ),
        key=lambda cap: cap.pk,
    )


def period_key(cap: Cap, when: datetime) -> str:
    local = when.astimezone(ZoneInfo(settings.CAP_TIMEZONE))
    if cap.period == Cap.Period.DAY:
        return local.date().isoformat()
    if cap.period == Cap.Period.MONTH:
        return f"{local.year:04d}-{local.month:02d}"
    return "all"


def _amount(cap: Cap, payout: Decimal) -> Decimal:
    return Decimal(1) if cap.kind == Cap.Kind.CONVERSIONS else Decimal(payout)


class _Declined(Exception):
    pass


def spend(caps: list[Cap], payout: Decimal, when: datetime) -> str | None:
    """Count a new conversion against ``caps``. Must run inside a transaction.

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
    try:
        with transaction.atomic():
            full = []
            for cap in caps:
                key, amount = period_key(cap, when), _amount(cap, payout)
                CapCounter.objects.bulk_create(
                    [CapCounter(cap=cap, period_key=key)], ignore_conflicts=True
                )
                room = CapCounter.objects.filter(
                    cap=cap, period_key=key, used__lte=cap.limit - amount
                ).update(used=F("used") + amount)
                if not room:
                    full.append((cap, key, amount))
            if any(cap.overcap_status == Cap.OvercapStatus.DECLINED for cap, _, _ in full):
                raise _Declined
            for cap, key, amount in full:
                CapCounter.objects.filter(cap=cap, period_key=key).update(used=F("used") + amount)
            return Cap.OvercapStatus.PENDING if full else None
    except _Declined:
        return Cap.OvercapStatus.DECLINED


def caps_of(conversion) -> list[Cap]:
    goal = Goal.objects.filter(offer_id=conversion.offer_id, value__iexact=conversion.goal).first()
    return applicable(
        list(Cap.objects.filter(offer_id=conversion.offer_id)), goal, conversion.partner_id
    )


def adjust(conversion, sign: int) -> None:
    """Count (+1) or uncount (-1) an existing conversion, e.g. when it is declined."""
    for cap in caps_of(conversion):
        key = period_key(cap, conversion.created_at)
        amount = _amount(cap, conversion.payout) * sign
        if sign > 0:
            CapCounter.objects.bulk_create(
                [CapCounter(cap=cap, period_key=key)], ignore_conflicts=True
            )
        CapCounter.objects.filter(cap=cap, period_key=key).update(
            used=Greatest(F("used") + amount, Value(Decimal(0)))
        )


def usage(cap: Cap, when: datetime) -> Decimal:
    counter = CapCounter.objects.filter(cap=cap, period_key=period_key(cap, when)).first()
    return counter.used if counter else Decimal(0)
