"""Celery tasks: dispatch, one check task per parameter, the chord callback, the sweeper.

Arguments are postback ids. Infrastructure errors (the database going away)
are retried a bounded number of times; after that the batch is handed to
:func:`settlement.record_failure`, which retries it through the sweeper or
marks it failed once it has used POSTBACK_MAX_ATTEMPTS.
"""

import contextlib

from celery import shared_task
from django.db import DatabaseError
from redis.exceptions import RedisError

from conversions.intake import click_buffer

from . import caps, dispatch, settlement, statuses
from .checks import CHECKS

RETRIES = 3


def _retry_or_give_up(task, ids: list[str], exc: Exception):
    # Redis too: a check that misses a clickid flushes the click buffer.
    if isinstance(exc, DatabaseError | RedisError) and task.request.retries < RETRIES:
        raise task.retry(exc=exc, countdown=min(2**task.request.retries, 10))
    # If the database is still away, the sweeper finds the batch as stale.
    with contextlib.suppress(DatabaseError):
        settlement.record_failure(ids, f"{exc.__class__.__name__}: {exc}")
    raise exc


def _check_task(name: str):
    check = CHECKS[name]

    @shared_task(bind=True, name=f"conversions.tasks.check_{name}", max_retries=RETRIES)
    def task(self, ids: list[str]) -> dict:
        try:
            return check(settlement.load_batch(ids))
        except Exception as exc:
            _retry_or_give_up(self, ids, exc)

    task.__doc__ = f"Chord header task: the {name} check for a batch of postbacks."
    return task


CHECK_TASKS = [_check_task(name) for name in CHECKS]


@shared_task(bind=True, name="conversions.tasks.settle", max_retries=RETRIES)
def settle(self, results: list[dict], ids: list[str]) -> dict:
    """Chord callback: create or update conversions and mark the postbacks."""
    try:
        outcome = settlement.settle(results, ids)
    except Exception as exc:
        _retry_or_give_up(self, ids, exc)
    # Later postbacks of this batch's clicks were held while it ran: send them now.
    with contextlib.suppress(DatabaseError):
        dispatch.release_held()
    return outcome


# One per nudge: high volume, nothing to show in the task results.
@shared_task(name="conversions.tasks.dispatch_received", ignore_result=True)
def dispatch_received() -> int:
    return dispatch.dispatch_received()


@shared_task(name="conversions.tasks.sweep")
def sweep() -> dict:
    result = dispatch.sweep()
    result["approved_holds"] = statuses.approve_holds()
    return result


@shared_task(name="conversions.tasks.approve_holds")
def approve_holds() -> int:
    return statuses.approve_holds()


@shared_task(name="conversions.tasks.reconcile_caps")
def reconcile_caps() -> int:
    """Beat: repair any cap counter that differs from its conversions (logged as an error)."""
    return caps.reconcile()


@shared_task(name="conversions.tasks.flush_clicks", ignore_result=True)
def flush_clicks() -> int:
    """Beat: move buffered clicks into the table (skipped while another flush runs)."""
    return click_buffer.flush(wait=False)
