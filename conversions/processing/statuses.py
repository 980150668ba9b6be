"""Conversion status changes shared by the callback, the hold approval, the admin and the API."""

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from affise_proj import history
from conversions.delivery.deliveries import fire
from conversions.models import Conversion
from conversions.outcomes import Decline

from . import caps

S = Conversion.Status


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
    notify: bool = True,
    also: tuple[str, ...] = (),
) -> None:
    """Apply a status change (and a new price) inside the caller's transaction.

    ``price`` is (sum, revenue, payout), from a status update that carried
    a sum. The caps that count the conversion move by the difference in what
    it counts (declined counts nothing; a payout cap counts its payout),
    before the row is written. A change of status is a new event: partner
    postbacks fire, unless ``notify`` is false (a manager's choice).
    ``offer_caps``: the offer's caps, when read already. ``also``: other
    fields the caller set on the conversion, written with it.
    """
    before = (conversion.status, conversion.payout)
    payout = price[2] if price else conversion.payout
    caps.shift(conversion, before, (status, payout), offer_caps)
    fields = ["reason", "updated_at", *also]
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
    if changed and notify:
        fire(conversion)


def change_status_by_manager(
    conversion_id: int,
    status: str,
    reason: str = "",
    *,
    user=None,
    comment: str = "",
    notify: bool = True,
) -> tuple[Conversion, bool]:
    """A manager's status change (admin action or API PATCH); returns (conversion, changed).

    Any status to any other. The conversion's row is locked first, so two
    managers changing it at once apply in turn: the second sees the first's
    result, and asking for the status it already has changes nothing (no
    event, no partner postback). A decline's reason is "Rejected by a
    manager"; an approve counts against caps and no cap refuses it; hold
    lasts the offer's hold period from the conversion's creation (ending
    at the next hold approval if that is past). Partner postbacks of the new
    status fire once, when ``notify``. The change is in the history with
    ``user`` and ``comment``. Raises TransitionError for an unknown status.
    """
    if status not in S.values:
        raise TransitionError(f"Unknown status {status!r}.")
    with transaction.atomic(), history.context(history.MANAGER, user, comment):
        conversion = (
            Conversion.objects.select_for_update(of=("self",))
            .select_related("offer")
            .get(pk=conversion_id)
        )
        if status == conversion.status:
            return conversion, False
        hold_until = None
        if status == S.DECLINED:
            reason = Decline.BY_MANAGER
        elif status == S.HOLD:
            until = conversion.created_at + timedelta(hours=conversion.offer.hold_period)
            hold_until = max(until, timezone.now())
        set_status(conversion, status, reason, hold_until, notify=notify)
        return conversion, True


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
