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


def resend(delivery_ids) -> int:
    """Send deliveries again (support's "resend"): a new attempt row for each.

    Returns how many attempts were queued.
    """
    from django.db.models import Max

    from conversions.models import PostbackDelivery

    queued = []
    with transaction.atomic():
        for old in PostbackDelivery.objects.select_for_update().filter(pk__in=list(delivery_ids)):
            last = PostbackDelivery.objects.filter(
                partner_postback_id=old.partner_postback_id,
                conversion_id=old.conversion_id,
                event=old.event,
            ).aggregate(n=Max("attempt"))["n"]
            new = PostbackDelivery.objects.create(
                conversion_id=old.conversion_id,
                partner_postback_id=old.partner_postback_id,
                event=old.event,
                status=old.status,
                url=old.url,
                method=old.method,
                attempt=last + 1,
            )
            queued.append(new.pk)

    def send() -> None:
        from .tasks import deliver

        for pk in queued:
            with contextlib.suppress(Exception):
                deliver.delay(pk)

    transaction.on_commit(send)
    return len(queued)


def resend_conversion(conversion_id: int) -> int:
    """Resend the latest event of a conversion to every partner postback it went to."""
    from django.db.models import Max

    from conversions.models import PostbackDelivery

    rows = PostbackDelivery.objects.filter(conversion_id=conversion_id)
    event = rows.aggregate(n=Max("event"))["n"]
    if event is None:
        return 0
    latest = {}
    for row in rows.filter(event=event).order_by("attempt"):
        latest[row.partner_postback_id] = row.pk
    return resend(latest.values())
