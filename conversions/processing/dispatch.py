"""Getting postbacks from the table onto the queue: nudge, claim, publish, sweep.

The Postback row is the source of truth. A postback is *claimed* by moving it
from ``received`` to ``processing`` in one conditional UPDATE; whoever claims
it publishes the chord. Anything that did not finish is found again by
:func:`sweep`, so a lost message or a dead worker only delays a postback.
"""

import contextlib
import functools
import logging
import os
import time
from datetime import timedelta

import redis
from celery import chord, current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Lower, Trim
from django.utils import timezone

from affise_proj import metrics
from conversions.intake import spool
from conversions.intake.redis_connection import KeptConnection
from conversions.models import Postback

from .checks import CHECKS

log = logging.getLogger(__name__)

# Task names (tasks.py registers each under its name): explicit strings kept
# from the first layout, so messages already queued under them keep working.
CHECK_TASK = "conversions.tasks.check_{}"
SETTLE_TASK = "conversions.tasks.settle"
DISPATCH_TASK = "conversions.tasks.dispatch_received"

NUDGE_KEY = "affise:postbacks:dispatch-pending"
NUDGE_TTL = 2
# After a failed publish, skip publishing for a moment: while the broker is
# down every request would otherwise wait for the connect timeout.
PUBLISH_BACKOFF = 1.0
_publish_blocked_until = 0.0


class _PendingFlag:
    """ "A dispatch is queued and has not started claiming yet", shared by all processes.

    One SET NX EX in the Redis of DISPATCH_FLAG_URL (by default the Redis
    cache's, else the broker's), sent on a connection kept per thread
    (conversions/intake/redis_connection.py): through a client's pool it cost about as much
    as the rest of the accept path. Without Redis the flag cannot be shared
    between processes: ``set`` always answers True and every postback queues
    its own dispatch.
    """

    def __init__(self) -> None:
        url = settings.DISPATCH_FLAG_URL
        self.shared = bool(url)
        self.key = NUDGE_KEY
        self.client = self._kept = None
        if url:
            self.client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            self._kept = KeptConnection(self.client)

    def set(self) -> bool:
        """Raise the flag; False if it was already up."""
        if self._kept is None:
            return True
        return self._kept.execute("SET", self.key, 1, "NX", "EX", NUDGE_TTL) is not None

    def clear(self) -> None:
        if self.client is not None:
            self.client.delete(self.key)


@functools.cache
def pending_flag() -> _PendingFlag:
    """The flag, made once per process."""
    return _PendingFlag()


def nudge() -> None:
    """Ask a worker to dispatch received postbacks; never raises.

    With the flag in Redis, one dispatch task is queued per pending dispatch,
    not one per postback: the accept path stays a single insert plus one Redis
    round trip. The dispatcher clears the flag *before* it claims, so a
    postback that finds the flag up is always seen by that claim.
    """
    global _publish_blocked_until
    if time.monotonic() < _publish_blocked_until:
        return
    try:
        if not pending_flag().set():
            return
        current_app.send_task(DISPATCH_TASK, retry=False)
    except Exception:
        # The row is stored: the sweeper dispatches it when the broker is back.
        _publish_blocked_until = time.monotonic() + PUBLISH_BACKOFF
        log.warning("could not publish a dispatch; the sweeper will", exc_info=True)


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
        pending_flag().clear()
    except Exception:
        # Redis is away: dispatch anyway; the flag expires by itself (NUDGE_TTL).
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
