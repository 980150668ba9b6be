"""Getting postbacks from the table onto the queue: nudge, claim, publish, sweep.

The Postback row is the source of truth. A postback is *claimed* by moving it
from ``received`` to ``processing`` in one conditional UPDATE; whoever claims
it publishes the chord. Anything that did not finish is found again by
:func:`sweep`, so a lost message or a dead worker only delays a postback.
"""

import contextlib
import logging
import os
import time
from datetime import timedelta

from celery import chord, current_app
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from affise_proj import metrics
from conversions.intake import spool
from conversions.models import DispatchFlag, Postback

from .checks import CHECKS

log = logging.getLogger(__name__)

# Task names (tasks.py registers each under its name): explicit strings kept
# from the first layout, so messages already queued under them keep working.
CHECK_TASK = "conversions.tasks.check_{}"
SETTLE_TASK = "conversions.tasks.settle"
DISPATCH_TASK = "conversions.tasks.dispatch_received"

# The pending-dispatch flag (DispatchFlag's one row) stays up at most this
# long: a dispatch task lost with the broker is queued again after it.
NUDGE_TTL = 2
# After a failed publish, skip publishing for a moment: while the broker is
# down every request would otherwise wait for the connect timeout.
PUBLISH_BACKOFF = 1.0
_publish_blocked_until = 0.0

_FLAG = DispatchFlag._meta.db_table
# Raise the flag unless it is up (and younger than NUDGE_TTL); the row is made
# on first use. As common table expressions, so that the accept path raises
# it in the statement that stores the postback, whose received_at is the
# time here. Neither locks the row unless it raises the flag: a statement that
# finds it up only reads it.
RAISE_FLAG_CTES = (
    f"raised AS (UPDATE {_FLAG} SET raised_at = %(received_at)s::timestamptz WHERE id = 1"
    f" AND (raised_at IS NULL OR raised_at < %(received_at)s::timestamptz - interval '{NUDGE_TTL} seconds')"
    " RETURNING 1),"
    f" created AS (INSERT INTO {_FLAG} (id, raised_at) SELECT 1, %(received_at)s::timestamptz"
    f" WHERE NOT EXISTS (SELECT 1 FROM {_FLAG}) ON CONFLICT (id) DO NOTHING RETURNING 1)"
)
FLAG_RAISED = "EXISTS (SELECT 1 FROM raised) OR EXISTS (SELECT 1 FROM created)"


def nudge() -> None:
    """Ask a worker to dispatch received postbacks; never raises.

    One dispatch task is queued per pending dispatch, not one per postback:
    whoever raises the flag publishes it. The accept path on PostgreSQL raises
    the flag in the statement that stores the postback (``store_and_raise``)
    and calls :func:`publish_dispatch` itself; everything else calls this,
    after its own commit.
    """
    try:
        raised = raise_flag()
    except Exception:
        # The row is stored: the sweeper dispatches it.
        log.warning("could not raise the dispatch flag; the sweeper will dispatch", exc_info=True)
        return
    if raised:
        publish_dispatch()


def raise_flag() -> bool:
    """Raise the flag in a statement of its own; True if this raised it."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH {RAISE_FLAG_CTES} SELECT {FLAG_RAISED}", {"received_at": timezone.now()}
            )
            return cursor.fetchone()[0]
    # SQLite: writers take turns (IMMEDIATE transactions), so nothing races the check.
    now = timezone.now()
    with transaction.atomic():
        if not DispatchFlag.objects.filter(pk=1).exists():
            DispatchFlag.objects.create(pk=1, raised_at=now)
            return True
        stale = now - timedelta(seconds=NUDGE_TTL)
        return bool(
            DispatchFlag.objects.filter(pk=1)
            .filter(Q(raised_at__isnull=True) | Q(raised_at__lt=stale))
            .update(raised_at=now)
        )


def publish_dispatch() -> None:
    """Queue one dispatch task, for a flag this process raised; never raises."""
    global _publish_blocked_until
    if time.monotonic() < _publish_blocked_until:
        # The flag stays up for NUDGE_TTL: the next postback after it publishes.
        return
    try:
        current_app.send_task(DISPATCH_TASK, retry=False)
    except Exception:
        # The row is stored: the sweeper dispatches it when the broker is back.
        _publish_blocked_until = time.monotonic() + PUBLISH_BACKOFF
        log.warning("could not publish a dispatch; the sweeper will", exc_info=True)


def clear_flag() -> None:
    """Lower the flag before claiming, so that postbacks stored from now on raise it again.

    Steps (PostgreSQL):
    1. lock the flag's table against every statement that reads the flag:
       this waits for those still running to commit. A postback stored by a
       statement that saw the flag up is thus committed before the claim that
       follows, and the claim sees it (a nudge that skipped publishing always
       has a claim after its commit, as when the flag was checked after it);
    2. lower it, and commit, which releases the lock (a statement waits for
       it at most as long as one commit of the statements ahead of it).
    Elsewhere the accept path raises the flag after its commit, and lowering
    it is enough.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {_FLAG} IN SHARE ROW EXCLUSIVE MODE")
        DispatchFlag.objects.filter(pk=1).update(raised_at=None)


# A postback's click as the checks read it (clickid_of): trimmed, lower case.
_CLICK = Lower(Trim("clickid"))
_CLAIM_LOCK = 0x636C61696D


def claim(limit: int, *, stale: bool = False, older_than: float = 0) -> list[str]:
    """Move up to ``limit`` postbacks to ``processing``, oldest first; return their ids.

    ``stale`` claims ``processing`` postbacks abandoned for POSTBACK_STALE_AFTER
    instead of ``received`` ones.

    Postbacks of one click settle in the order received: a received postback
    whose click has a postback still processing is held (left received) until
    that batch settles, which dispatches again (``release_held``); a batch
    takes a click's postbacks oldest first, and settles them in that order.
    Claims are serialised (an advisory lock on PostgreSQL; SQLite serialises
    writers), so two dispatchers never split one click's postbacks between
    them. Unrelated clicks are never held. Postbacks spooled while the
    database was down are imported first (``_import_spooled``).
    """
    if not stale:
        _import_spooled()
    now = timezone.now()
    state = Postback.State.PROCESSING if stale else Postback.State.RECEIVED
    candidates = Postback.objects.filter(state=state)
    if stale:
        candidates = candidates.filter(
            dispatched_at__lte=now - timedelta(seconds=settings.POSTBACK_STALE_AFTER)
        )
    else:
        if older_than:
            candidates = candidates.filter(received_at__lte=now - timedelta(seconds=older_than))
        busy = (
            Postback.objects.filter(state=Postback.State.PROCESSING)
            .annotate(click=_CLICK)
            .exclude(click="")
            .values("click")
        )
        candidates = candidates.alias(click=_CLICK).exclude(click__in=busy)
    with transaction.atomic():
        _serialise_claims()
        ids = list(
            candidates.order_by("received_at", "id")
            .select_for_update()
            .values_list("id", flat=True)[:limit]
        )
        if ids:
            Postback.objects.filter(pk__in=ids).claim(stale=stale, now=now)
    return ids


def _import_spooled() -> None:
    """Put postbacks spooled while the database was down into the table; never raises.

    Before a claim, so a postback stored directly once the database was back
    is never claimed before an earlier one of its click still in the spool
    (the sweeper imports too, later). An import in progress elsewhere is met
    on its rows (same ids): this one waits for them. Any failure leaves the
    spool to the sweeper and the claim goes on.
    """
    try:
        if spool.pending():
            spool.import_spool(wait=True)
    except Exception:
        log.warning("could not import the spool before a claim", exc_info=True)


def _serialise_claims() -> None:
    """One claim at a time, until the claiming transaction ends (PostgreSQL)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK])


def release_held() -> None:
    """After a batch settled: dispatch again if postbacks wait, some perhaps held by it."""
    if Postback.objects.filter(state=Postback.State.RECEIVED).exists():
        nudge()


def publish(ids: list[str]) -> bool:
    """Publish one chord for a claimed batch. On failure, hand the batch back."""
    header = [current_app.signature(CHECK_TASK.format(name), args=(ids,)) for name in CHECKS]
    try:
        chord(header)(current_app.signature(SETTLE_TASK, args=(ids,)))
        return True
    except Exception:
        log.warning(
            "could not publish a batch of %d; returned to received", len(ids), exc_info=True
        )
        Postback.objects.filter(pk__in=ids).release()
        return False


def dispatch(*, stale: bool = False, older_than: float = 0, max_batches: int = 50) -> int:
    """Claim and publish batches until none is left (or ``max_batches``). Returns postbacks sent."""
    size = max(1, settings.POSTBACK_BATCH_SIZE)
    sent = 0
    for _ in range(max_batches):
        ids = claim(size, stale=stale, older_than=older_than)
        if not ids or not publish(ids):
            return sent
        sent += len(ids)
        if len(ids) < size:
            return sent
    if not stale:
        # More waits than one run takes: hand the rest to another dispatch task
        # rather than to the sweeper's next round.
        with contextlib.suppress(Exception):
            current_app.send_task(DISPATCH_TASK, retry=False)
    return sent


def dispatch_received() -> int:
    try:
        clear_flag()
    except DatabaseError:
        # Dispatch anyway (the claim will likely fail too); the flag expires by itself.
        log.warning("could not clear the dispatch flag", exc_info=True)
    return dispatch()


def fail_exhausted() -> int:
    """Abandoned postbacks that used all their attempts become ``failed``."""
    cutoff = timezone.now() - timedelta(seconds=settings.POSTBACK_STALE_AFTER)
    failed = Postback.objects.fail_abandoned(cutoff, settings.POSTBACK_MAX_ATTEMPTS)
    metrics.postbacks_failed(failed)
    return failed


def sweep() -> dict:
    """Find what did not finish and send it again. Run by beat every few seconds."""
    imported = spool.import_spool()
    return {
        "imported": imported,
        # Spooled postbacks have waited already: send them (and any fresh ones) now.
        "received": dispatch(older_than=0 if imported else settings.POSTBACK_SWEEP_AFTER),
        "failed": fail_exhausted(),
        "stale": dispatch(stale=True),
    }


def requeue(ids) -> int:
    """Put rejected or failed postbacks back to ``received`` and dispatch them.

    Processing again is safe: the callback settles each postback once and the
    conversion's unique constraints hold whatever happens.
    """
    count = Postback.objects.filter(pk__in=list(ids)).requeue()
    if count:
        transaction.on_commit(nudge)
    return count


def broker_status() -> str:
    conf = current_app.conf
    if conf.broker_url.startswith("filesystem"):
        # The filesystem transport "connects" to anything: check its queue folder.
        folder = conf.broker_transport_options.get("data_folder_out", "")
        return "ok" if folder and os.access(folder, os.W_OK) else "error: queue folder unwritable"
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"
