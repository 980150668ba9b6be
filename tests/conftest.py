"""Shared fixtures: a real Celery worker in threads, and small data builders.

The suite runs against whatever the environment names: PostgreSQL and Redis
in CI (.ci/run), the embedded SQLite file and filesystem broker otherwise.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connections

from conversions.models import Click, Postback
from offers.models import Advertiser, Goal, Offer, Payout
from partners.models import Partner

_BROKER_TMP = None


def pytest_configure(config):
    """Give this run its own filesystem queue, so a running dev worker cannot take its tasks."""
    global _BROKER_TMP
    if settings.CELERY_BROKER_URL.startswith("filesystem"):
        _BROKER_TMP = Path(tempfile.mkdtemp(prefix="affise-test-broker-"))
        (_BROKER_TMP / "queue").mkdir()
        (_BROKER_TMP / "processed").mkdir()
        settings.CELERY_BROKER_TRANSPORT_OPTIONS.update(
            data_folder_in=str(_BROKER_TMP / "queue"),
            data_folder_out=str(_BROKER_TMP / "queue"),
            processed_folder=str(_BROKER_TMP / "processed"),
        )
    settings.POSTBACK_SPOOL_DIR = Path(tempfile.mkdtemp(prefix="affise-test-spool-"))


def pytest_unconfigure(config):
    if _BROKER_TMP:
        shutil.rmtree(_BROKER_TMP, ignore_errors=True)
    shutil.rmtree(settings.POSTBACK_SPOOL_DIR, ignore_errors=True)


def pytest_report_header(config):
    db = settings.DATABASES["default"]
    return (
        f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('HOST') or db['NAME']}; "
        f"broker: {settings.CELERY_BROKER_URL.split('@')[-1]}; "
        f"results: {settings.CELERY_RESULT_BACKEND}; cache: {settings.CACHES['default']['BACKEND']}"
    )


@pytest.fixture(scope="session")
def celery_session_worker(django_db_setup, django_db_blocker):
    """A real worker (thread pool) consuming the configured broker for the whole session."""
    from celery.contrib.testing.worker import start_worker

    from affise_proj.celery import app

    # The test database is new (its dispatch flag down): nothing queued before
    # may stand for a dispatch it needs.
    app.control.purge()
    with (
        django_db_blocker.unblock(),
        start_worker(
            app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"
        ) as worker,
    ):
        yield worker
        # Worker threads are gone but their connections are not: end them so the
        # test database can be dropped.
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _fresh_spool(settings, tmp_path):
    """Each test starts with an empty spool: nothing spooled or set aside by another."""
    settings.POSTBACK_SPOOL_DIR = tmp_path / "spool"


@pytest.fixture(autouse=True)
def _fresh_click_path():
    """Each test starts with an empty click buffer and nothing remembered of offers."""
    from conversions.intake import click_buffer, clicks

    clicks.forget_targets()
    click_buffer._blocked_until = 0.0
    if settings.CLICK_BUFFER:
        stream = click_buffer._stream()
        stream.client.delete(stream.key, click_buffer.REJECTED_KEY)
    yield
    clicks.forget_targets()


@pytest.fixture
def worker(celery_session_worker, transactional_db):
    """Tests that go through the queue: a running worker and committed data it can see."""
    return celery_session_worker


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; the worker runs in other threads."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def another_session(*, autocommit: bool = False):
    """A PostgreSQL connection of its own to the test database, as another process has."""
    import psycopg

    options = connections["default"].get_connection_params()
    options.pop("cursor_factory", None)
    options.pop("prepare_threshold", None)
    return psycopg.connect(**options, autocommit=autocommit)


def run_concurrently(count: int, target) -> list:
    """Run ``target(i)`` in ``count`` threads released at once; re-raise any error."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


FINAL = (Postback.State.ACCEPTED, Postback.State.REJECTED, Postback.State.FAILED)


def wait_settled(postback_id: str, timeout: float = 20.0) -> Postback:
    return wait_for(
        lambda: Postback.objects.filter(pk=postback_id, state__in=FINAL).first(),
        timeout,
        f"postback {postback_id} to settle",
    )


@pytest.fixture
def advertiser(db):
    return Advertiser.objects.create(name="Acme Ads")


@pytest.fixture
def make_offer(advertiser):
    def make(**fields) -> Offer:
        fields.setdefault("title", "Offer")
        fields.setdefault("url", "https://land.example.com/?c={clickid}&p={pid}&s={sub1}")
        offer = Offer.objects.create(advertiser=fields.pop("advertiser", advertiser), **fields)
        return offer

    return make


@pytest.fixture
def offer(make_offer):
    offer = make_offer(title="Main offer")
    goal = Goal.objects.create(offer=offer, value="1", title="Install")
    Payout.objects.create(offer=offer, goal=goal, revenue=Decimal(3), payout=Decimal(2))
    return offer


@pytest.fixture
def partner(db):
    return Partner.objects.create(name="Partner One")


@pytest.fixture
def make_click(offer, partner):
    def make(**fields) -> Click:
        fields.setdefault("offer", offer)
        fields.setdefault("partner", partner)
        return Click.objects.create(**fields)

    return make


@pytest.fixture
def click(make_click):
    return make_click()


@pytest.fixture
def send(client):
    """Send a postback through the real endpoint; returns the recorded id."""

    def send_(method: str = "get", **params) -> str:
        response = getattr(client, method)("/postback", params, REMOTE_ADDR="203.0.113.7")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == 1, body
        return body.get("id", "")

    return send_


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a free loopback port, stopped and started at will."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_connect_timeout=1, socket_timeout=5)

    def up(self) -> bool:
        try:
            return self.client().ping()
        except redis.ConnectionError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.dir)),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self.up, 10, "redis-server to answer")

    def stop(self) -> None:
        """SIGTERM, as a restart of the server sends: Redis closes every client's connection."""
        if self.proc is None:
            return
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path):
    """A Redis no other test or process uses (needs redis-server, as the bench does)."""
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def database_url() -> str:
    """The test database as a DATABASE_URL, for processes the test starts."""
    db = connections["default"].settings_dict
    if connections["default"].vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "") + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def process_env(var_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of an app process the test starts: only what the test names is set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DATABASE_", "CELERY_", "CACHE_", "DISPATCH_", "POSTBACK_", "PROMETHEUS_")
        )
    }
    env.update(
        DJANGO_SETTINGS_MODULE="affise_proj.settings",
        VAR_DIR=str(var_dir),
        CONN_MAX_AGE="0",
        PYTHONUNBUFFERED="1",
        **settings,
    )
    return env
