"""A test postback: the pipeline's own checks and callback on a postback that is never kept.

The postback row, the sample click (when none is named), the conversion, the
cap counters and the partner deliveries are written inside one transaction
that is then rolled back: what the test answers is what the pipeline would
have done, and nothing of it stays. Partner postbacks are published only after
a commit, so none is sent; clicks are read from the table only (a flush of
the click buffer inside the rolled-back transaction would lose clicks).
"""

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from conversions.intake import params as intake_params
from conversions.models import Click, Conversion, Postback, new_clickid
from offers.models import Offer
from partners.models import OfferAccess, Partner

from . import settlement
from .checks import CHECKS, TABLE_ONLY


class DryRunRefused(ValueError):
    """The test cannot run as asked (e.g. the click is another offer's)."""


class _Undo(Exception):
    """Raised to roll the dry run's transaction back."""


def _amount(value: Decimal) -> str:
    text = f"{Decimal(value).normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def sample_partner(offer: Offer) -> Partner | None:
    """An active partner who may run the offer, for a sample click."""
    partners = Partner.objects.filter(status=Partner.Status.ACTIVE).order_by("pk")
    if offer.privacy == Offer.Privacy.PRIVATE:
        partners = partners.filter(
            pk__in=OfferAccess.objects.filter(offer=offer).values("partner_id")
        )
    return partners.first()


def _sample_click(offer: Offer, partner: Partner | None, now) -> Click:
    partner = partner or sample_partner(offer)
    if partner is None:
        raise DryRunRefused("No active partner may run this offer: a sample click needs one.")
    # Old enough for the offer's minimum click lifespan, young enough for its maximum.
    age = timedelta(seconds=max(60, offer.min_click_lifespan + 1))
    at = now - age
    return Click.objects.create(
        clickid=new_clickid(at), offer=offer, partner=partner, created_at=at
    )


def run(
    offer: Offer, sent: dict[str, str], *, sender_ip: str | None, partner: Partner | None = None
) -> dict:
    """Run ``sent`` (the parameters an advertiser would send) through the pipeline, then undo it.

    Without a clickid, a sample click of the offer is made for the test (from
    ``partner``, else the first active partner who may run the offer).
    Returns ``{"outcome", "message", "status", "revenue", "payout", "checks"}``.
    """
    answer: dict = {}
    token = TABLE_ONLY.set(True)
    try:
        with transaction.atomic():
            answer = _run(offer, dict(sent), sender_ip, partner)
            raise _Undo
    except _Undo:
        pass
    finally:
        TABLE_ONLY.reset(token)
    return answer


def _run(offer: Offer, sent: dict, sender_ip: str | None, partner: Partner | None) -> dict:
    now = timezone.now()
    clickid = intake_params.raw(sent, "clickid", "click_id").lower()
    if not clickid:
        sent["clickid"] = clickid = _sample_click(offer, partner, now).clickid
    else:
        named = Click.objects.filter(clickid=clickid).values_list("offer_id", flat=True).first()
        if named is not None and named != offer.pk:
            raise DryRunRefused(f"This click belongs to offer {named}, not to offer {offer.pk}.")
    row = Postback.objects.create(
        params=sent,
        ip=sender_ip,
        method="POST",
        clickid=clickid[:64],
        action_id=intake_params.raw(sent, "action_id")[:255],
        state=Postback.State.PROCESSING,
        attempts=1,
        received_at=now,
        dispatched_at=now,
    )
    batch = settlement.load_batch([row.pk])
    settlement.settle([check(batch) for check in CHECKS.values()], [row.pk])
    row = Postback.objects.select_related("conversion").get(pk=row.pk)
    return _answer(row, now)


def _answer(row: Postback, started) -> dict:
    conversion: Conversion | None = row.conversion
    if row.state != Postback.State.ACCEPTED or conversion is None:
        return {
            "outcome": "rejected",
            "message": row.error,
            "status": None,
            "revenue": None,
            "payout": None,
            "checks": row.checks,
        }
    if conversion.created_at < started:
        outcome = "updated"
    elif conversion.status == Conversion.Status.DECLINED:
        outcome = "declined"
    else:
        outcome = "accepted"
    return {
        "outcome": outcome,
        "message": conversion.reason,
        "status": conversion.status,
        "revenue": _amount(conversion.revenue),
        "payout": _amount(conversion.payout),
        "checks": row.checks,
    }
