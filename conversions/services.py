"""Conversion status changes shared by the callback, the hold approval, the admin and the API."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import caps
from .models import Conversion

S = Conversion.Status
MANAGER_DECLINE_REASON = "Rejected by a manager"
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


def set_status(conversion: Conversion, status: str, reason: str = "", hold_until=None) -> None:
    """Apply a status change inside the caller's transaction and fire partner postbacks.

    Declined conversions do not count against caps: leaving or entering
    ``declined`` uncounts or counts the conversion.
    """
    from partners.delivery import fire

    previous = conversion.status
    if previous != S.DECLINED and status == S.DECLINED:
        caps.adjust(conversion, -1)
    elif previous == S.DECLINED and status != S.DECLINED:
        caps.adjust(conversion, +1)
    conversion.status = status
    conversion.reason = reason
    conversion.hold_until = hold_until if status == S.HOLD else None
    conversion.version += 1
    conversion.save(update_fields=["status", "reason", "hold_until", "version", "updated_at"])
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
            reason = MANAGER_DECLINE_REASON
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
