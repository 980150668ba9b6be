"""The panel's periodic work: merging the statistics counters."""

from celery import shared_task

from . import rollups


@shared_task(name="conversions.tasks.merge_stats", ignore_result=True)
def merge_stats() -> dict[str, int]:
    return rollups.merge()
