import time

import httpx
from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone


@shared_task(name="partners.tasks.deliver")
def deliver(delivery_id: int) -> str:
    """Send one delivery attempt (minimal: full retries and safety live in delivery.py)."""
    from conversions.models import PostbackDelivery

    with transaction.atomic():
        row = (
            PostbackDelivery.objects.select_for_update()
            .filter(pk=delivery_id, state=PostbackDelivery.State.PENDING, sent_at__isnull=True)
            .first()
        )
        if row is None:
            return "skipped"
        row.sent_at = timezone.now()
        row.save(update_fields=["sent_at"])
    started = time.monotonic()
    try:
        with httpx.Client(timeout=settings.PARTNER_POSTBACK_TIMEOUT) as client:
            response = client.request(row.method, row.url)
        row.status_code = response.status_code
        row.response = response.text[:1000]
        row.state = (
            PostbackDelivery.State.DELIVERED
            if response.is_success
            else PostbackDelivery.State.FAILED
        )
    except httpx.HTTPError as exc:
        row.error = f"{exc.__class__.__name__}: {exc}"[:512]
        row.state = PostbackDelivery.State.FAILED
    row.duration_ms = int((time.monotonic() - started) * 1000)
    row.save()
    return row.state


@shared_task(name="partners.tasks.retry_due_deliveries")
def retry_due_deliveries() -> int:
    return 0
