"""A durable local spool for postbacks that arrive while the database is down.

Each postback is one JSON line, appended and fsynced before the answer goes
out. Appends and the importer's rename happen under one lock file, so a line
is never written to a file the importer has already taken.

An entry the database refuses when it is back (not a lost connection: a
refusal) is set aside in SET_ASIDE_NAME with the database's reason, so it never
holds up the entries behind it. /healthz is 503 and the dashboard shows the
count while entries are set aside; ``manage.py import_spool --retry-set-aside``
imports them again once the cause is fixed.
"""

import fcntl
import json
import logging
import os
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from conversions.models import Postback

from .params import postback_columns

log = logging.getLogger(__name__)

SPOOL_NAME = "postbacks.jsonl"
SET_ASIDE_NAME = "set-aside.jsonl"
BATCH_SIZE = 500


def _dir() -> Path:
    path = Path(settings.POSTBACK_SPOOL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked(name: str = "spool.lock", *, wait: bool = True):
    """Hold the lock file ``name``; without ``wait``, yield False if another holds it."""
    fd = os.open(_dir() / name, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _append_lines(path: Path, lines: Iterable[str]) -> None:
    data = "".join(f"{line}\n" for line in lines).encode()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _entry(row: Postback) -> dict:
    return {
        "id": row.id,
        "received_at": row.received_at.isoformat(),
        "ip": row.ip,
        "method": row.method,
        "params": row.params,
        "clickid": row.clickid,
        "action_id": row.action_id,
    }


def append(row: Postback) -> None:
    line = json.dumps(_entry(row))
    with _locked():
        _append_lines(_dir() / SPOOL_NAME, [line])


def _count_lines(paths: Iterable[Path]) -> int:
    count = 0
    for path in paths:
        try:
            with path.open("rb") as file:
                while chunk := file.read(1 << 20):
                    count += chunk.count(b"\n")
        except FileNotFoundError:
            continue  # taken or imported meanwhile
    return count


def pending() -> int:
    """How many spooled postbacks wait for import (no file at all in the common case)."""
    return _count_lines(_dir().glob("postbacks*.jsonl"))


def set_aside() -> int:
    """How many spooled postbacks the database refused, waiting for an operator."""
    return _count_lines([_dir() / SET_ASIDE_NAME])


def import_spool(*, wait: bool = False) -> int:
    """Move spooled postbacks into the database, keeping their ids. Idempotent.

    Steps:
    1. take the live file (renamed under the lock), so appends start a new one;
    2. for each taken file, oldest first, read its entries, fitted to the
       columns (an entry spooled by an older version may be longer);
    3. insert them in batches; a batch the database refuses is inserted one
       entry at a time, and an entry refused alone is set aside with the
       database's reason;
    4. a lost connection stops the import and keeps the file: the next sweep
       reads it again, and ids already stored are skipped;
    5. the file is removed once each of its entries is stored or set aside.
    One import at a time (a sweep, the command): another returns at once,
    unless it ``wait``s for the running one to finish (a claim must not
    overtake spooled postbacks still being imported). Returns how many
    entries were stored.
    """
    with _locked("import.lock", wait=wait) as alone:
        return _import() if alone else 0


def _import() -> int:
    directory = _dir()
    live = directory / SPOOL_NAME
    if live.exists():
        with _locked():
            if live.exists():
                live.rename(_taken_name())
    imported = 0
    for taken in sorted(directory.glob("postbacks.*.jsonl")):
        rows, refused = _read(taken)
        try:
            for start in range(0, len(rows), BATCH_SIZE):
                stored, refusals = _insert(rows[start : start + BATCH_SIZE])
                imported += stored
                refused += refusals
        except (OperationalError, InterfaceError):
            log.warning("database still unavailable; spool kept", exc_info=True)
            return imported
        if refused:
            _append_lines(directory / SET_ASIDE_NAME, refused)
        taken.unlink()
    return imported


def retry_set_aside() -> int:
    """Put the set-aside entries back in the spool and import it; returns how many were stored.

    Entries the database still refuses are set aside again.
    """
    aside = _dir() / SET_ASIDE_NAME
    # Both locks: no import is reading the set-aside file, no append is racing the rename.
    with _locked("import.lock"), _locked():
        if aside.exists():
            entries = []
            for line in aside.read_text().splitlines():
                try:
                    entries.append(json.dumps(json.loads(line)["entry"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping unreadable set-aside line")
            _append_lines(_taken_name(), entries)
            aside.unlink()
    return import_spool()


def _taken_name() -> Path:
    return _dir() / f"postbacks.{datetime.now().timestamp():.6f}.jsonl"


def _read(taken: Path) -> tuple[list[Postback], list[str]]:
    """The rows of a taken file, and the set-aside lines of entries that make no row."""
    rows, refused = [], []
    for line in taken.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            # A torn last line from a crash mid-write: that request was
            # never answered, so nothing promised is lost.
            log.warning("skipping unreadable spool line in %s", taken.name)
            continue
        try:
            received_at = datetime.fromisoformat(entry["received_at"])
            fields = {**entry, "received_at": received_at, **postback_columns(entry["params"])}
            rows.append(Postback(**fields))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.error("unreadable spool entry in %s; set aside", taken.name, exc_info=True)
            refused.append(_set_aside_line(entry, exc))
    return rows, refused


def _insert(rows: list[Postback]) -> tuple[int, list[str]]:
    """Insert ``rows`` (ids already stored are skipped); returns (stored, set-aside lines).

    Each attempt runs in its own savepoint, so a refusal leaves the
    connection usable for the next.
    """
    try:
        with transaction.atomic():
            # Same ids: a file imported twice (crash before unlink) adds nothing.
            Postback.objects.bulk_create(rows, ignore_conflicts=True)
        return len(rows), []
    except (OperationalError, InterfaceError):
        raise
    except DatabaseError:
        if len(rows) > 1:
            log.warning("spool batch refused; importing it one by one", exc_info=True)
    stored, refused = 0, []
    for row in rows:
        try:
            with transaction.atomic():
                Postback.objects.bulk_create([row], ignore_conflicts=True)
            stored += 1
        except (OperationalError, InterfaceError):
            raise
        except DatabaseError as exc:
            log.error("database refused spooled postback %s; set aside", row.id, exc_info=True)
            refused.append(_set_aside_line(_entry(row), exc))
    return stored, refused


def _set_aside_line(entry: dict, exc: Exception) -> str:
    reason = f"{exc.__class__.__name__}: {exc}".strip()
    return json.dumps({"reason": reason, "at": timezone.now().isoformat(), "entry": entry})
