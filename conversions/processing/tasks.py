"""Celery tasks: dispatch, one check task per parameter, the chord callback, the sweeper.

Arguments are postback ids. Task names are the explicit strings of
dispatch.py (TASK_*), unchanged since the first layout, so messages already
queued under them keep working. Infrastructure errors (the database or Redis
going away: a check that misses a clickid flushes the click buffer) are
retried by Celery with a backoff, at most RETRIES times; after that, or on
any other error, the batch is handed to :func:`settlement.record_failure`,
which retries it through the sweeper or marks it failed once it has used
POSTBACK_MAX_ATTEMPTS.
"""

import contextlib

from celery import Task, shared_task
from django.db import DatabaseError
from redis.exceptions import RedisError

from conversions.intake import click_buffer

from . import caps, dispatch, settlement, statuses, verdicts
from .checks import CHECKS
from .dispatch import CHECK_TASK, DISPATCH_TASK, SETTLE_TASK

RETRIES = 3


class BatchTask(Task):
    """A task over a batch of postbacks, its ids the last argument."""

    autoretry_for = (DatabaseError, RedisError)
    max_retries = RETRIES
    # 1, 2, 4 s: the database has a moment to come back.
    retry_backoff = 1
    retry_backoff_max = 10
    retry_jitter = False

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        # If the database is still away, the sweeper finds the batch as stale.
        with contextlib.suppress(DatabaseError):
            settlement.record_failure(args[-1], f"{exc.__class__.__name__}: {exc}")


def _check_task(name: str):
    check = CHECKS[name]

    @shared_task(base=BatchTask, name=CHECK_TASK.format(name))
    def task(ids: list[str]) -> dict:
        return verdicts.to_json(check(settlement.load_batch(ids)))

    task.__doc__ = f"Chord header task: the {name} check for a batch of postbacks."
    return task


CHECK_TASKS = [_check_task(name) for name in CHECKS]


@shared_task(base=BatchTask, name=SETTLE_TASK)
def settle(results: list[dict], ids: list[str]) -> dict:
    """Chord callback: create or update conversions and mark the postbacks."""
    by_check = [
        verdicts.from_json(name, result) for name, result in zip(CHECKS, results, strict=True)
    ]
    outcome = settlement.settle(by_check, ids)
    # Later postbacks of this batch's clicks were held while it ran: send them now.
    with contextlib.suppress(DatabaseError):
        dispatch.release_held()
    return outcome


# One per nudge: high volume, nothing to show in the task results.
@shared_task(name=DISPATCH_TASK, ignore_result=True)
def dispatch_received() -> int:
    return dispatch.dispatch_received()


@shared_task(name="conversions.tasks.sweep")
def sweep() -> dict:
    """Beat: dispatch what did not finish, approve holds that are due."""
    result = dispatch.sweep()
    result["approved_holds"] = statuses.approve_holds()
    return result


@shared_task(name="conversions.tasks.reconcile_caps")
def reconcile_caps() -> int:
    """Beat: repair any cap counter that differs from its conversions (logged as an error)."""
    return caps.reconcile()


@shared_task(name="conversions.tasks.flush_clicks", ignore_result=True)
def flush_clicks() -> int:
    """Beat: move buffered clicks into the table (skipped while another flush runs)."""
    return click_buffer.flush(wait=False)
