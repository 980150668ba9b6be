"""Outgoing partner postbacks: which fire for a conversion event, sending them, retrying.

Every send is a PostbackDelivery row (one per attempt). The life of a row:

1. created ``pending`` by :func:`fire` (or :func:`resend`) inside the
   conversion's transaction, published to Celery after commit;
2. claimed by the ``deliver`` task with a conditional UPDATE (pending and
   ``sent_at`` empty -> ``sent_at`` set): only one run ever calls out;
3. finished ``delivered`` or ``failed`` with the call's record. A retryable
   failure adds a NEW pending row, attempt + 1, due at ``next_retry_at``.

``next_retry_at`` on a pending row is when beat's :func:`publish_due` will
publish it if nothing sent it before: the retry's due time, or a short lease
for a fresh row whose publish may have been lost.
"""

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max
from django.utils import timezone

from affise_proj import metrics
from conversions.intake.params import STATUS_CODES as ADVERTISER_STATUS_CODES
from conversions.models import SUB_FIELDS, Conversion, PostbackDelivery
from offers.macros import fill
from partners.models import PartnerPostback

from . import tracker_call

log = logging.getLogger(__name__)

# The task that sends one row (tasks.py): an explicit name kept from the first
# layout, so messages already queued under it keep working.
DELIVER_TASK = "partners.tasks.deliver"

# A pending row not sent this long after it was published is published again
# by beat (a lost publish, a worker that died before claiming it).
PUBLISH_LEASE = timedelta(seconds=120)
# How much of the partner's answer is kept on the row.
STORED_RESPONSE_CHARS = 1024
# The {status} macro: the code an advertiser sends for the status (1/2/3/5).
STATUS_CODES = {status: int(code) for code, status in ADVERTISER_STATUS_CODES.items()}
NOT_SENT_DISABLED = "Not sent: the partner postback is disabled"


def enabled_postbacks(partner_ids: Iterable[int]) -> dict[int, list["PartnerPostback"]]:
    """Every enabled postback of these partners, by partner: one query for a batch."""

    pool: dict[int, list[PartnerPostback]] = {pid: [] for pid in partner_ids}
    for pp in PartnerPostback.objects.select_related("goal").filter(
        partner_id__in=list(pool), enabled=True
    ):
        pool[pp.partner_id].append(pp)
    return pool


def matching(
    conversion: "Conversion", pool: list["PartnerPostback"] | None = None
) -> list["PartnerPostback"]:
    """Enabled postbacks of the conversion's partner that want this event.

    The partner's global postbacks (no offer) and the offer's own both fire,
    unless one of the offer's own matching postbacks has ``replaces_global``.
    Goal: empty = every goal, else the conversion's goal value
    (case-insensitive). Statuses: empty = every status. ``pool``: the
    partner's enabled postbacks when the caller has read them already.
    """
    if pool is None:
        pool = enabled_postbacks([conversion.partner_id])[conversion.partner_id]
    candidates = [
        pp
        for pp in pool
        if pp.offer_id in (None, conversion.offer_id)
        and (pp.goal is None or pp.goal.value.lower() == conversion.goal.lower())
        and (not pp.statuses or conversion.status in pp.statuses)
    ]
    if any(pp.offer_id and pp.replaces_global for pp in candidates):
        candidates = [pp for pp in candidates if pp.offer_id]
    return candidates


def _money(value: Decimal) -> str:
    """2.0000 -> "2.00", 2.125 -> "2.125": what trackers expect to parse."""
    text = f"{Decimal(value).normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def macro_values(conversion: "Conversion") -> dict[str, object]:
    """DESIGN.md's partner postback macros for a conversion (filled URL-encoded)."""
    values = {
        "clickid": conversion.click or "",
        "conversion_id": conversion.pk,
        "transactionid": conversion.action_id,
        "offer_id": conversion.offer_id,
        "pid": conversion.partner_id,
        "goal": conversion.goal,
        "status": STATUS_CODES[conversion.status],
        "sum": _money(conversion.payout),
        "revenue": _money(conversion.revenue),
        "currency": conversion.currency,
        "ip": conversion.ip or "",
        "date": timezone.localtime(conversion.created_at).date().isoformat(),
        "timestamp": int(conversion.created_at.timestamp()),
        "advertiser_status": conversion.advertiser_status,
        # The sum as the advertiser sent it, in its currency (the sum's own when not converted).
        "original_sum": _money(
            conversion.sum if conversion.original_sum is None else conversion.original_sum
        ),
        "original_currency": conversion.original_currency or conversion.currency,
        "ctit": "" if conversion.ctit is None else conversion.ctit,
    }
    for name in SUB_FIELDS:
        # The click's subs as the conversion keeps them (the click may be gone).
        values[name] = getattr(conversion, name)
    return values


def _publish_after_commit(ids: list[int], countdown: float = 0) -> None:
    def send() -> None:
        for pk in ids:
            # A failed publish leaves the row pending: beat publishes it when due.
            try:
                current_app.send_task(DELIVER_TASK, (pk,), countdown=countdown or None)
            except Exception:
                log.warning("publish of delivery %s failed; beat will retry it", pk, exc_info=True)

    if ids:
        transaction.on_commit(send)


def fire(conversion: "Conversion", pool: list["PartnerPostback"] | None = None) -> int:
    """Record the deliveries this conversion event owes, then send them after commit.

    Called inside the transaction that created the conversion or changed its
    status. The event is ``conversion.version``: firing twice for one event
    adds nothing (unique per postback, conversion, event, attempt).
    """

    postbacks = matching(conversion, pool)
    if not postbacks:
        return 0
    values = macro_values(conversion)
    now = timezone.now()
    rows = [
        PostbackDelivery(
            conversion=conversion,
            partner_postback=pp,
            event=conversion.version,
            status=conversion.status,
            url=fill(pp.url, values),
            method=pp.method,
            created_at=now,
            next_retry_at=now + PUBLISH_LEASE,
        )
        for pp in postbacks
    ]
    PostbackDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    ids = list(
        PostbackDelivery.objects.filter(
            conversion=conversion,
            event=conversion.version,
            attempt=1,
            partner_postback__in=postbacks,
            state=PostbackDelivery.State.PENDING,
            sent_at__isnull=True,
        ).values_list("pk", flat=True)
    )
    _publish_after_commit(ids)
    return len(ids)


def _next_attempt(old: "PostbackDelivery") -> int:
    return (
        type(old)
        .objects.filter(
            partner_postback_id=old.partner_postback_id,
            conversion_id=old.conversion_id,
            event=old.event,
        )
        .aggregate(n=Max("attempt"))["n"]
        + 1
    )


def _follow_up(
    old: "PostbackDelivery", attempt: int, now: datetime, next_retry_at: datetime
) -> "PostbackDelivery":
    """A new attempt of ``old``'s event: the same call, sent again."""
    return type(old).objects.create(
        conversion_id=old.conversion_id,
        partner_postback_id=old.partner_postback_id,
        event=old.event,
        status=old.status,
        url=old.url,
        method=old.method,
        attempt=attempt,
        created_at=now,
        next_retry_at=next_retry_at,
    )


def resend(delivery_ids: Iterable[int]) -> int:
    """Send deliveries again (support's "resend"): a new attempt row for each.

    Returns how many attempts were queued.
    """

    queued = []
    now = timezone.now()
    with transaction.atomic():
        for old in PostbackDelivery.objects.select_for_update().filter(pk__in=list(delivery_ids)):
            new = _follow_up(old, _next_attempt(old), now, now + PUBLISH_LEASE)
            queued.append(new.pk)
        _publish_after_commit(queued)
    return len(queued)


def resend_conversion(conversion_id: int) -> int:
    """Resend the latest event of a conversion to every partner postback it went to."""

    rows = PostbackDelivery.objects.filter(conversion_id=conversion_id)
    event = rows.aggregate(n=Max("event"))["n"]
    if event is None:
        return 0
    latest = {}
    for row in rows.filter(event=event).order_by("attempt"):
        latest[row.partner_postback_id] = row.pk
    return resend(latest.values())


def retry_delay(attempt: int) -> int | None:
    """Seconds to wait after failed ``attempt`` (1-based); None once the schedule is used up."""
    delays = settings.PARTNER_POSTBACK_RETRY_DELAYS
    return delays[attempt - 1] if attempt <= len(delays) else None


def countdown_for(delay: int) -> int | None:
    """``delay`` as a Celery countdown, or None when it is beat's to publish when due.

    With late acks a countdown task is held unacknowledged for its whole wait
    and then its run (at most CELERY_TASK_TIME_LIMIT). Past BROKER_ACK_TIMEOUT
    the broker acts on it: Redis hands it to another worker (a second call),
    RabbitMQ closes the worker's channel (consumer_timeout). So only waits that
    end, run included, inside that bound are countdowns.
    """
    if delay + settings.CELERY_TASK_TIME_LIMIT < settings.BROKER_ACK_TIMEOUT:
        return delay
    return None


def _schedule_retry(row: "PostbackDelivery", now: datetime) -> None:
    """Add the next attempt of ``row``'s event, unless one exists already (a resend)."""
    delay = retry_delay(row.attempt)
    if delay is None:
        return
    model = type(row)
    newer = model.objects.filter(
        partner_postback_id=row.partner_postback_id,
        conversion_id=row.conversion_id,
        event=row.event,
        attempt__gt=row.attempt,
    )
    if newer.exists():
        return
    try:
        with transaction.atomic():
            retry = _follow_up(row, row.attempt + 1, now, now + timedelta(seconds=delay))
    except IntegrityError:
        # A concurrent resend took that attempt number: that row carries the event on.
        return
    # Long waits live only in next_retry_at, for beat (countdown_for).
    if (countdown := countdown_for(delay)) is not None:
        _publish_after_commit([retry.pk], countdown=countdown)


def _record_failure(pp_id: int, error: str, now: datetime) -> None:
    """Count a failed attempt; disable the postback after PARTNER_POSTBACK_DISABLE_AFTER in a row."""

    PartnerPostback.objects.filter(pk=pp_id).update(
        consecutive_failures=F("consecutive_failures") + 1
    )
    limit = settings.PARTNER_POSTBACK_DISABLE_AFTER
    if not limit:
        return
    reason = (
        f"Disabled {now:%Y-%m-%d %H:%M} UTC after {limit} failed deliveries in a row; last: {error}"
    )
    disabled = PartnerPostback.objects.filter(
        pk=pp_id, enabled=True, consecutive_failures__gte=limit
    ).update(enabled=False, disabled_reason=reason[:255])
    if disabled:
        log.warning("partner postback %s disabled: %s", pp_id, reason)
        # Waiting retries would only fail one by one: close them now.
        PostbackDelivery.objects.filter(
            partner_postback_id=pp_id,
            state=PostbackDelivery.State.PENDING,
            sent_at__isnull=True,
        ).update(state=PostbackDelivery.State.FAILED, error=NOT_SENT_DISABLED, next_retry_at=None)


def attempt(delivery_id: int) -> str:
    """Send one delivery row; returns its final state, or "skipped" if not ours to send.

    Steps: claim the row (conditional UPDATE; a second run of the task finds
    it claimed and stops), call the partner outside any transaction, then in
    one transaction record the outcome, count the failure or reset the
    count, and schedule the next attempt of a retryable failure.
    """

    State = PostbackDelivery.State
    claimed = PostbackDelivery.objects.filter(
        pk=delivery_id, state=State.PENDING, sent_at__isnull=True
    ).update(sent_at=timezone.now(), next_retry_at=None)
    if not claimed:
        return "skipped"
    row = PostbackDelivery.objects.select_related("partner_postback").get(pk=delivery_id)
    if not row.partner_postback.enabled:
        row.state, row.error = State.FAILED, NOT_SENT_DISABLED
        row.save(update_fields=["state", "error"])
        return row.state

    result = tracker_call.call(
        row.method,
        row.url,
        timeout=settings.PARTNER_POSTBACK_TIMEOUT,
        allow_private=settings.PARTNER_POSTBACK_ALLOW_PRIVATE,
        allowed_targets=settings.PARTNER_POSTBACK_ALLOWED_TARGETS,
    )
    row.status_code = result.status_code
    row.response = result.body.decode("utf-8", errors="replace")[:STORED_RESPONSE_CHARS]
    row.error = result.error
    row.duration_ms = result.duration_ms
    row.state = State.DELIVERED if result.ok else State.FAILED
    now = timezone.now()
    with transaction.atomic():
        row.save(update_fields=["status_code", "response", "error", "duration_ms", "state"])
        if result.ok:
            PartnerPostback.objects.filter(pk=row.partner_postback_id).exclude(
                consecutive_failures=0
            ).update(consecutive_failures=0)
        else:
            if result.retry:
                _schedule_retry(row, now)
            _record_failure(row.partner_postback_id, result.error, now)
    metrics.delivery_finished(row)
    return row.state


def publish_due(limit: int = 1000) -> int:
    """Beat: publish pending rows whose time has come; close rows lost mid-call.

    Each published row's ``next_retry_at`` moves one lease ahead, so the next
    tick does not publish it again while it waits in the queue, and does if
    the message was lost.
    """

    now = timezone.now()
    with transaction.atomic():
        ids = list(
            PostbackDelivery.objects.select_for_update(skip_locked=True)
            .filter(
                state=PostbackDelivery.State.PENDING,
                sent_at__isnull=True,
                next_retry_at__lte=now,
            )
            .order_by("next_retry_at")
            .values_list("pk", flat=True)[:limit]
        )
        PostbackDelivery.objects.filter(pk__in=ids).update(next_retry_at=now + PUBLISH_LEASE)
    for pk in ids:
        with contextlib.suppress(Exception):
            current_app.send_task(DELIVER_TASK, (pk,))
    close_interrupted(now)
    return len(ids)


def close_interrupted(now: datetime) -> int:
    """Rows claimed by a worker that died during the call: failed, not retried.

    The call may have reached the partner, and a delivery is sent at most
    once, so it is left for support to resend.
    """

    limit = getattr(settings, "CELERY_TASK_TIME_LIMIT", 300) or 300
    return PostbackDelivery.objects.filter(
        state=PostbackDelivery.State.PENDING,
        sent_at__lte=now - timedelta(seconds=limit + 60),
    ).update(
        state=PostbackDelivery.State.FAILED,
        error="Interrupted during the call (worker lost); not retried, it may have arrived",
    )
