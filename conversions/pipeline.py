"""The chord's callback: settle a batch of checked postbacks, one transaction each."""

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from offers.models import Cap, Goal

from . import caps
from .checks import CHECKS, DECLINE_ORDER, REJECT_ORDER
from .models import Conversion, Postback
from .services import hold_or_approved, set_status

log = logging.getLogger(__name__)

S = Conversion.Status
DECLINED_BY_ADVERTISER = "Declined via advertiser's postback"


def load_batch(ids: list[str]) -> list[dict]:
    """The postbacks of a batch as plain dicts, in arrival order."""
    rows = Postback.objects.filter(pk__in=ids).values("id", "params", "ip", "received_at")
    batch = [{**row, "received_at": row["received_at"].isoformat()} for row in rows]
    return sorted(batch, key=lambda pb: (pb["received_at"], pb["id"]))


def settle(results: list[dict], ids: list[str]) -> dict[str, str]:
    """Apply DESIGN.md's order to each postback's verdicts; returns {id: state}.

    ``results`` are the checks' outputs in CHECKS order. Each postback is
    settled in its own transaction that starts by locking its row and
    checking it is still ``processing``: running the callback twice, or two
    callbacks at once, settles it once.
    """
    by_check = dict(zip(CHECKS, results, strict=True))
    outcome = {}
    for pb in load_batch(ids):
        verdicts = {name: (by_check[name] or {}).get(pb["id"], {}) for name in CHECKS}
        outcome[pb["id"]] = settle_one(pb, verdicts)
    return outcome


def _finish(row: Postback, state: str, error: str = "", conversion=None, offer_id=None) -> str:
    row.state = state
    row.error = error
    row.conversion = conversion
    row.offer_id = offer_id
    row.processed_at = timezone.now()
    row.save(update_fields=["state", "error", "conversion", "offer", "processed_at"])
    return state


def settle_one(pb: dict, verdicts: dict[str, dict]) -> str:
    with transaction.atomic():
        row = (
            Postback.objects.select_for_update()
            .filter(pk=pb["id"], state=Postback.State.PROCESSING)
            .first()
        )
        if row is None:
            return "skipped"
        click = verdicts["click"].get("data")
        offer_id = click and click["offer_id"]
        for name in REJECT_ORDER:
            if message := verdicts[name].get("reject"):
                return _finish(row, Postback.State.REJECTED, message, offer_id=offer_id)
        return _convert(row, pb, verdicts, offer_id)


def _find_existing(offer_id: int, goal: str, action_id: str, click_pk: int) -> Conversion | None:
    lookup = {"action_id": action_id} if action_id else {"action_id": "", "click_id": click_pk}
    return (
        Conversion.objects.select_for_update()
        .filter(offer_id=offer_id, goal=goal, **lookup)
        .first()
    )


def _convert(row: Postback, pb: dict, verdicts: dict[str, dict], offer_id: int) -> str:
    params = verdicts["params"]["data"]
    click = verdicts["click"]["data"]
    offer = verdicts["offer"]["data"]
    payout = verdicts["payout"].get("data", {})
    goal = payout.get("goal", "1")

    existing = _find_existing(offer_id, goal, params["action_id"], click["id"])
    if existing is not None:
        return _update_existing(row, existing, params, payout, offer, offer_id)

    reason = next(
        (verdicts[name]["decline"] for name in DECLINE_ORDER if verdicts[name].get("decline")),
        "",
    )
    received_at = datetime.fromisoformat(pb["received_at"])
    conversion = Conversion(
        offer_id=offer_id,
        partner_id=click["partner_id"],
        click_id=click["id"],
        goal=goal,
        action_id=params["action_id"],
        revenue=Decimal(payout.get("revenue", 0)),
        payout=Decimal(payout.get("payout", 0)),
        sum=Decimal(params["sum"]),
        currency=params["currency"] or offer["currency"],
        ip=_ip_or_none(params["ip"]),
        comment=params["comment"],
        custom_fields=params["custom_fields"],
        created_at=timezone.now(),
    )
    try:
        with transaction.atomic():
            if reason:
                conversion.status, conversion.reason = S.DECLINED, reason
            else:
                _set_new_status(conversion, params, offer, payout, received_at)
            conversion.save(force_insert=True)
    except IntegrityError:
        # A concurrent postback created it first: settle as an update of it.
        existing = _find_existing(offer_id, goal, params["action_id"], click["id"])
        if existing is None:
            raise
        return _update_existing(row, existing, params, payout, offer, offer_id)

    from partners.delivery import fire

    fire(conversion)
    return _finish(row, Postback.State.ACCEPTED, conversion=conversion, offer_id=offer_id)


def _set_new_status(conversion, params, offer, payout, received_at) -> None:
    """Status of a conversion no earlier rule declined: caps, then sent or default status."""
    goal = (
        Goal(pk=payout["goal_id"], offer_id=conversion.offer_id) if payout.get("goal_id") else None
    )
    offer_caps = caps.applicable(
        list(Cap.objects.filter(offer_id=conversion.offer_id)), goal, conversion.partner_id
    )
    spent = caps.spend(offer_caps, conversion.payout, received_at)
    if spent == Cap.OvercapStatus.DECLINED:
        conversion.status, conversion.reason = S.DECLINED, "Cap is reached"
        return
    if spent == Cap.OvercapStatus.PENDING:
        conversion.status = S.PENDING
        return
    status = params["status"] or offer["default_status"]
    if status == S.APPROVED:
        status, conversion.hold_until = hold_or_approved(conversion, offer["hold_period"])
    elif status == S.HOLD:
        conversion.hold_until = conversion.created_at + timedelta(hours=offer["hold_period"])
    conversion.status = status


def _update_existing(row, existing, params, payout, offer, offer_id) -> str:
    """A postback for a conversion that exists: a status update of a pending one, or a rejection."""
    if not params["status"]:
        return _finish(row, Postback.State.REJECTED, "Conversion exists", offer_id=offer_id)
    if existing.status != S.PENDING:
        return _finish(
            row, Postback.State.REJECTED, "Conversion status is not pending", offer_id=offer_id
        )
    status, reason, hold_until = params["status"], "", None
    if status == S.DECLINED:
        reason = DECLINED_BY_ADVERTISER
    elif status == S.APPROVED:
        status, hold_until = hold_or_approved(existing, offer["hold_period"])
    elif status == S.HOLD:
        hold_until = existing.created_at + timedelta(hours=offer["hold_period"])
    if params["sum_sent"] and payout.get("goal_id"):
        existing.sum = Decimal(params["sum"])
        existing.revenue = Decimal(payout["revenue"])
        existing.payout = Decimal(payout["payout"])
        existing.save(update_fields=["sum", "revenue", "payout", "updated_at"])
    if status != existing.status:
        set_status(existing, status, reason, hold_until)
    return _finish(row, Postback.State.ACCEPTED, conversion=existing, offer_id=offer_id)


def _ip_or_none(value: str) -> str | None:
    from .netutil import valid_ip

    return valid_ip(value)


def record_failure(ids: list[str], error: str) -> None:
    """A batch whose processing broke: retry it via the sweeper, or fail it for good."""
    error = error[:255]
    unfinished = Postback.objects.filter(pk__in=ids, state=Postback.State.PROCESSING)
    unfinished.filter(attempts__gte=settings.POSTBACK_MAX_ATTEMPTS).update(
        state=Postback.State.FAILED, error=error, processed_at=timezone.now()
    )
    unfinished.update(state=Postback.State.RECEIVED, error=error)


def process_inline(postback_id: str) -> tuple[str, str]:
    """The legacy synchronous mode: the same checks and callback, inside the request."""
    from .dispatch import claim_one

    if not claim_one(postback_id):
        row = Postback.objects.get(pk=postback_id)
        return row.state, row.error
    batch = load_batch([postback_id])
    settle([check(batch) for check in CHECKS.values()], [postback_id])
    row = Postback.objects.get(pk=postback_id)
    return row.state, row.error
