"""Conversion status changes shared by the callback, the hold approval, the admin and the API."""

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from conversions.delivery.deliveries import fire
from conversions.models import Conversion
from conversions.outcomes import Decline

from . import caps

S = Conversion.Status
# What a manager may do from each status. Hold is entered by the pipeline
# only (it needs the offer's hold period); a manager may release or decline it.
MANAGER_TRANSITIONS = {
    S.PENDING: {S.APPROVED, S.DECLINED},
    S.APPROVED: {S.PENDING, S.DECLINED},
    S.DECLINED: {S.APPROVED, S.PENDING},
    S.HOLD: {S.APPROVED, S.PENDING, S.DECLINED},
}


class TransitionError(ValueError):
    pass


def hold_or_approved(conversion: Conversion, hold_period_hours: int) -> tuple[str, object]:
    """An approval on an offer with a hold period waits until hold_until."""
    if hold_period_hours:
        until = conversion.created_at + timedelta(hours=hold_period_hours)
        if until > timezone.now():
            return S.HOLD, until
    return S.APPROVED, None


def set_status(
    conversion: Conversion,
    status: str,
    reason: str = "",
    hold_until=None,
    *,
    price: tuple[Decimal, Decimal, Decimal] | None = None,
    offer_caps: list | None = None,
) -> None:
    """Apply a status change (and a new price) inside the caller's transaction.

    ``price`` is (sum, revenue, payout), from a status update that carried
    a sum. The caps that count the conversion move by the difference in what
    it counts (declined counts nothing; a payout cap counts its payout),
    before the row is written. A change of status is a new event: partner
    postbacks fire. ``offer_caps``: the offer's caps, when read already.
    """
    before = (conversion.status, conversion.payout)
    payout = price[2] if price else conversion.payout
    caps.shift(conversion, before, (status, payout), offer_caps)
    fields = ["reason", "updated_at"]
    if price:
        conversion.sum, conversion.revenue, conversion.payout = price
        fields += ["sum", "revenue", "payout"]
    changed = status != conversion.status
    conversion.status = status
    conversion.reason = reason
    conversion.hold_until = hold_until if status == S.HOLD else None
    if changed:
        conversion.version += 1
        fields += ["status", "hold_until", "version"]
    conversion.save(update_fields=fields)
    if changed:
        fire(conversion)


def change_status_by_manager(conversion_id: int, status: str, reason: str = "") -> Conversion:
    """A manager's status change (admin action or API PATCH). Raises TransitionError."""
    with transaction.atomic():
        conversion = Conversion.objects.select_for_update().get(pk=conversion_id)
        if status not in S.values:
            raise TransitionError(f"Unknown status {status!r}.")
        if status not in MANAGER_TRANSITIONS[conversion.status]:
            raise TransitionError(
                f"Conversion #{conversion.pk} is {conversion.status}; it cannot become {status}."
            )
        if status == S.DECLINED:
            reason = Decline.BY_MANAGER
        set_status(conversion, status, reason)
        return conversion


def approve_holds(limit: int = 1000) -> int:
    """Approve held conversions whose hold_until has passed."""
    approved = 0
    now = timezone.now()
    while True:
        with transaction.atomic():
            due = list(
                Conversion.objects.select_for_update(skip_locked=True)
                .filter(status=S.HOLD, hold_until__lte=now)
                .order_by("hold_until")[:limit]
            )
            for conversion in due:
                set_status(conversion, S.APPROVED, "")
        approved += len(due)
        if len(due) < limit:
            return approved
