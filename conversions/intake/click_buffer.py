"""Write-behind for clicks: the request appends to a Redis stream, the worker inserts in batches.

A click answered 302 must be kept, and recording it must not cost the request
a database round trip. With CLICK_BUFFER on (PostgreSQL and Redis), the click
view appends the whole row to a Redis stream (one XADD) and the worker moves
the stream into the table in batches of up to FLUSH_BATCH rows: every
CLICK_FLUSH_INTERVAL through the beat, and at once when a postback names a
clickid the table does not have yet (conversions/processing/checks.py).

Nothing is lost or doubled between the two:

- Flushes take one PostgreSQL advisory lock, so they run one at a time and
  each reads the stream from its start. Entries are deleted (XDEL, by id) only
  after the transaction that inserted them has committed; a flush that dies
  in between leaves them to the next one. So an empty stream means every
  click appended so far is in the table.
- The insert is ``ON CONFLICT (clickid) DO NOTHING``: an entry read twice is
  stored once. A click whose offer or partner was deleted before the flush is
  dropped. A row the table refuses does not hold up the others: the batch is
  inserted row by row and the refused one is moved to the REJECTED_KEY stream
  and logged.
- If Redis cannot take a click, the request inserts it itself (conversions/
  clicks.py) and stops trying Redis for BACKOFF seconds.

The stream is as durable as the Redis server: docker-compose runs it with an
append-only file fsynced every second, the same bound the direct path has with
CLICK_SYNCHRONOUS_COMMIT off.
"""

import functools
import json
import logging
import re
import time
from datetime import datetime

import redis
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from redis.exceptions import RedisError

from affise_proj import metrics
from conversions.models import CLICKID_PATTERN, SUB_FIELDS, Click
from offers.models import Offer
from partners.models import Partner

from .redis_connection import KeptConnection

log = logging.getLogger(__name__)

STREAM_KEY = "affise:clicks:buffer"
# Entries the table refused (should never happen: only this module writes the
# stream), kept for an operator with the reason.
REJECTED_KEY = "affise:clicks:rejected"
FLUSH_BATCH = 1000
# pg_advisory_xact_lock key of the flush ("clicks" in ASCII).
LOCK_ID = 0x636C69636B73
# After Redis refused a click, clicks go straight to the table for this long:
# while Redis is down every click would otherwise wait for the connect timeout.
BACKOFF = 1.0
_blocked_until = 0.0

# The order of a stream entry's values; the view passes the last ones as fields.
FIELDS = ("ip", "user_agent", "referrer", "country", *SUB_FIELDS)
COLUMNS = ("clickid", "offer_id", "partner_id", "created_at", *FIELDS)
_TYPES = {"offer_id": "bigint", "partner_id": "bigint", "created_at": "timestamptz", "ip": "inet"}
CLICKID_RE = re.compile(CLICKID_PATTERN)


class _Stream:
    """The stream's Redis client, made once per process; ``append`` on a kept connection."""

    def __init__(self) -> None:
        self.key = STREAM_KEY
        self.client = redis.Redis.from_url(
            settings.CLICK_BUFFER_URL, socket_connect_timeout=1, socket_timeout=1
        )
        self._kept = KeptConnection(self.client)

    def append(self, text: str) -> None:
        # Should a retried XADD have landed twice, the flush stores the clickid once.
        self._kept.execute("XADD", self.key, "*", "c", text)


@functools.cache
def _stream() -> _Stream:
    return _Stream()


def enabled() -> bool:
    return settings.CLICK_BUFFER and connection.vendor == "postgresql"


def add(clickid: str, offer_id: int, pid: int, created_at: datetime, fields: dict) -> bool:
    """Append a click; False (and nothing appended) if Redis did not take it."""
    global _blocked_until
    if time.monotonic() < _blocked_until:
        return False
    values = [clickid, offer_id, pid, created_at.isoformat(), *(fields[f] for f in FIELDS)]
    try:
        _stream().append(json.dumps(values, separators=(",", ":")))
    except RedisError as exc:
        _blocked_until = time.monotonic() + BACKOFF
        log.warning("click buffer unavailable, inserting clicks directly: %s", exc)
        return False
    return True


def flush(*, wait: bool = True, limit: int = 100_000) -> int:
    """Move buffered clicks into the table; returns how many entries were read.

    ``wait`` True (a postback names an unknown clickid): waits for a flush
    running elsewhere and reads up to the newest entry, however many, so that
    on return every click appended before the call is in the table. ``wait``
    False (the beat's ticks): gives up at once if another flush is running and
    reads at most about ``limit`` entries.
    """
    if not enabled():
        return 0
    stream = _stream()
    newest = stream.client.xrevrange(stream.key, "+", "-", count=1)
    if not newest:
        # Entries are deleted only once stored: nothing is waiting.
        return 0
    end = newest[0][0]
    start, read = "-", 0
    while wait or read < limit:
        with transaction.atomic(), connection.cursor() as cursor:
            if wait:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_ID])
            else:
                cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [LOCK_ID])
                if not cursor.fetchone()[0]:
                    return read
            entries = stream.client.xrange(stream.key, start, end, count=FLUSH_BATCH)
            if not entries:
                return read
            _insert(cursor, entries)
            ids = [entry_id for entry_id, _ in entries]
            # Deleted once the rows are committed; inside a caller's transaction
            # (tests, the synchronous mode) when that one commits.
            transaction.on_commit(lambda ids=ids: stream.client.xdel(stream.key, *ids), robust=True)
            transaction.on_commit(functools.partial(metrics.clicks_flushed, len(ids)))
        read += len(entries)
        if len(entries) < FLUSH_BATCH or ids[-1] == end:
            break
        start = "(" + _text(ids[-1])
    return read


def pending() -> int:
    """Entries in the stream: buffered clicks not flushed yet (and flushed ones not yet deleted)."""
    if not enabled():
        return 0
    stream = _stream()
    return stream.client.xlen(stream.key)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _insert(cursor, entries) -> None:
    rows = _decode(entries)
    if not rows:
        return
    try:
        with transaction.atomic():
            cursor.execute(_insert_sql(), [[text for _, text in rows]])
    except (DataError, IntegrityError):
        # One row the table refuses must not hold up the stream: row by row,
        # and what is still refused is set aside.
        for entry_id, text in rows:
            try:
                with transaction.atomic():
                    cursor.execute(_insert_sql(), [[text]])
            except (DataError, IntegrityError) as exc:
                _reject(entry_id, text, str(exc).strip())


def _reject(entry_id, text: str, reason: str) -> None:
    log.error("click buffer entry %s set aside in %s: %s", _text(entry_id), REJECTED_KEY, reason)
    _stream().client.xadd(REJECTED_KEY, {"c": text, "error": reason[:500]})


def _decode(entries) -> list[tuple]:
    """(entry id, JSON text) of the entries that are clicks as add() writes them."""
    rows = []
    for entry_id, data in entries:
        try:
            text = data[b"c"].decode()
            values = json.loads(text)
            if not (isinstance(values, list) and len(values) == len(COLUMNS)):
                raise ValueError("not a list of the click's columns")
            clickid, offer_id, pid, created_at = values[:4]
            if not (isinstance(offer_id, int) and isinstance(pid, int)):
                raise ValueError("offer or partner is not an id")
            if not (isinstance(clickid, str) and CLICKID_RE.fullmatch(clickid)):
                raise ValueError("bad clickid")
            datetime.fromisoformat(created_at)
            if not all(v is None or isinstance(v, str) for v in values[4:]):
                raise ValueError("a field is not text")
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            _reject(entry_id, repr(data)[:2000], f"unreadable: {exc}")
            continue
        rows.append((entry_id, text))
    return rows


@functools.cache
def _insert_sql() -> str:
    # PostgreSQL reads the entries' JSON itself: no per-value work here.
    values = ", ".join(
        f"(j->>{i})::{_TYPES[c]}" if c in _TYPES else f"j->>{i}" for i, c in enumerate(COLUMNS)
    )
    # Table names come from the models, never from input.
    return (
        f"INSERT INTO {Click._meta.db_table} ({', '.join(COLUMNS)})"
        f" SELECT {values} FROM unnest(%s::jsonb[]) AS u(j)"
        f" WHERE EXISTS (SELECT 1 FROM {Offer._meta.db_table} o WHERE o.id = (j->>1)::bigint)"
        f" AND EXISTS (SELECT 1 FROM {Partner._meta.db_table} p WHERE p.id = (j->>2)::bigint)"
        " ON CONFLICT (clickid) DO NOTHING"
    )
