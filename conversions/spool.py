"""A durable local spool for postbacks that arrive while the database is down.

Each postback is one JSON line, appended and fsynced before the answer goes
out. Appends and the importer's rename happen under one lock file, so a line
is never written to a file the importer has already taken.
"""

import fcntl
import json
import logging
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError

from .models import Postback

log = logging.getLogger(__name__)

SPOOL_NAME = "postbacks.jsonl"


def _dir() -> Path:
    path = Path(settings.POSTBACK_SPOOL_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _locked():
    fd = os.open(_dir() / "spool.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def append(row: Postback) -> None:
    line = json.dumps(
        {
            "id": row.id,
            "received_at": row.received_at.isoformat(),
            "ip": row.ip,
            "method": row.method,
            "params": row.params,
            "clickid": row.clickid,
            "action_id": row.action_id,
        }
    )
    with _locked():
        fd = os.open(_dir() / SPOOL_NAME, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


def pending() -> int:
    """How many spooled postbacks wait for import (files, not lines: cheap)."""
    return sum(1 for _ in _dir().glob("postbacks*.jsonl"))


def import_spool() -> int:
    """Move spooled postbacks into the database, keeping their ids. Idempotent."""
    directory = _dir()
    live = directory / SPOOL_NAME
    if live.exists():
        with _locked():
            if live.exists():
                live.rename(directory / f"postbacks.{datetime.now().timestamp():.6f}.jsonl")
    imported = 0
    for taken in sorted(directory.glob("postbacks.*.jsonl")):
        rows = []
        for line in taken.read_text().splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                # A torn last line from a crash mid-write: that request was
                # never answered, so nothing promised is lost.
                log.warning("skipping unreadable spool line in %s", taken.name)
                continue
            data["received_at"] = datetime.fromisoformat(data["received_at"])
            rows.append(Postback(**data))
        try:
            # Same ids: a file imported twice (crash before unlink) adds nothing.
            Postback.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        except DatabaseError:
            log.warning("database still unavailable; spool kept", exc_info=True)
            return imported
        taken.unlink()
        imported += len(rows)
    return imported
