"""The beat's data lifecycle run (retention.py)."""

from celery import shared_task

from . import retention


@shared_task(name="conversions.tasks.data_lifecycle", ignore_result=True)
def data_lifecycle() -> dict:
    """Day partitions made ahead, and clicks and postback rows past their retention removed."""
    return retention.maintain()
