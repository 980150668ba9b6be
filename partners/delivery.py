"""Outgoing partner postbacks: which fire for a conversion event, and sending them."""

import contextlib

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from offers.macros import fill


def matching(conversion) -> list:
    """Enabled postbacks of the conversion's partner that want this event.

    The partner's global postbacks (no offer) and the offer's own both fire,
    unless one of the offer's own postbacks has ``replaces_global`` set.
    """
    from .models import PartnerPostback

    candidates = [
        pp
        for pp in PartnerPostback.objects.select_related("goal").filter(
            Q(offer__isnull=True) | Q(offer_id=conversion.offer_id),
            partner_id=conversion.partner_id,
            enabled=True,
        )
        if (pp.goal is None or pp.goal.value.lower() == conversion.goal.lower())
        and (not pp.statuses or conversion.status in pp.statuses)
    ]
    if any(pp.offer_id and pp.replaces_global for pp in candidates):
        candidates = [pp for pp in candidates if pp.offer_id]
    return candidates


STATUS_CODES = {"approved": 1, "pending": 2, "declined": 3, "hold": 5}


def macro_values(conversion) -> dict:
    click = conversion.click
    values = {
        "clickid": click.clickid if click else "",
        "conversion_id": conversion.pk,
        "transactionid": conversion.action_id,
        "offer_id": conversion.offer_id,
        "pid": conversion.partner_id,
        "goal": conversion.goal,
        "status": STATUS_CODES[conversion.status],
        "sum": conversion.payout,
        "revenue": conversion.revenue,
        "currency": conversion.currency,
        "ip": conversion.ip or "",
        "date": timezone.localtime(conversion.created_at).date().isoformat(),
        "timestamp": int(conversion.created_at.timestamp()),
    }
    for i in range(1, 9):
        values[f"sub{i}"] = getattr(click, f"sub{i}", "") if click else ""
    return values


def fire(conversion) -> int:
    """Record the deliveries this conversion event owes, then send them after commit."""
    from conversions.models import PostbackDelivery

    postbacks = matching(conversion)
    if not postbacks:
        return 0
    values = macro_values(conversion)
    rows = [
        PostbackDelivery(
            conversion=conversion,
            partner_postback=pp,
            event=conversion.version,
            status=conversion.status,
            url=fill(pp.url, values),
            method=pp.method,
        )
        for pp in postbacks
    ]
    # Unique per (postback, conversion, event, attempt): firing twice adds nothing.
    PostbackDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        PostbackDelivery.objects.filter(
            conversion=conversion, event=conversion.version, attempt=1
        ).values_list("pk", flat=True)
    )

    def send() -> None:
        from .tasks import deliver

        for pk in ids:
            # A failed publish leaves the row pending: beat's retry sends it.
            with contextlib.suppress(Exception):
                deliver.delay(pk)

    transaction.on_commit(send)
    return len(ids)
