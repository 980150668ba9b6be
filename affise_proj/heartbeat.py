"""Live Celery workers, for /metrics' ``celery_workers`` and /readyz.

Each worker (its main process) renews a mark every INTERVAL seconds that
expires after TTL: a key in Redis (REDIS_URL's: the broker's Redis, or the one
beside RabbitMQ), or with no Redis at all (the embedded default) a file under
VAR_DIR/workers whose age is its expiry. A worker killed outright stops
renewing, and drops out of the count within TTL seconds; one that stops
cleanly removes its mark at once.
"""

import functools
import logging
import time
from pathlib import Path

import redis
from django.conf import settings

log = logging.getLogger(__name__)

KEY_PREFIX = "affise:workers:"
INTERVAL = 5.0
TTL = 15


@functools.cache
def _client() -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url:
        return None
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _folder() -> Path:
    path = Path(settings.VAR_DIR) / "workers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_name(hostname: str) -> str:
    return hostname.replace("/", "_")


def beat(hostname: str) -> None:
    """Renew this worker's mark; never raises (a Redis restart only skips a beat)."""
    try:
        client = _client()
        if client is None:
            (_folder() / _file_name(hostname)).touch()
        else:
            client.set(KEY_PREFIX + hostname, int(time.time()), ex=TTL)
    except Exception as exc:
        log.warning("worker heartbeat not renewed: %s", exc)


def gone(hostname: str) -> None:
    try:
        client = _client()
        if client is None:
            (_folder() / _file_name(hostname)).unlink(missing_ok=True)
        else:
            client.delete(KEY_PREFIX + hostname)
    except Exception as exc:
        log.warning("worker heartbeat not removed: %s", exc)


def live() -> int:
    """How many workers renewed their mark within TTL seconds (raises if Redis is away)."""
    client = _client()
    if client is None:
        cutoff = time.time() - TTL
        return sum(1 for path in _folder().iterdir() if path.stat().st_mtime >= cutoff)
    return sum(1 for _ in client.scan_iter(match=KEY_PREFIX + "*", count=1000))
