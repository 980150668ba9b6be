"""Celery tasks for outgoing partner postbacks (the logic lives in delivery.py)."""

from celery import shared_task

from . import deliveries


@shared_task(name=deliveries.DELIVER_TASK, ignore_result=True)
def deliver(delivery_id: int) -> str:
    """Send one PostbackDelivery row; a second run of the same row sends nothing."""
    return deliveries.attempt(delivery_id)


@shared_task(name="partners.tasks.retry_due_deliveries", ignore_result=True)
def retry_due_deliveries() -> int:
    """Beat, every 15 s: publish pending deliveries that are due."""
    return deliveries.publish_due()
