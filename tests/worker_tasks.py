"""A task for tests that start a real Celery worker process (``--include tests.worker_tasks``)."""

import time

import redis
from celery import shared_task
from django.conf import settings


@shared_task(name="tests.hold", ignore_result=True)
def hold(seconds: float, tag: str) -> None:
    """Keep a pool process (and its unacknowledged message) busy, reporting start and end.

    Reports go to lists in the broker's Redis, each on a connection of its own,
    so they get through once Redis is back after a restart.
    """
    redis.Redis.from_url(settings.CELERY_BROKER_URL).rpush("tests:started", tag)
    time.sleep(seconds)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).rpush("tests:done", tag)
