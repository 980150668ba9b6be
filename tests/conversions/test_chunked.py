"""Request bodies sent chunked (no Content-Length) are read, or refused; never dropped."""

import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import wsgiref.util
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection

from conversions.models import Postback

from ..conftest import wait_for

pytestmark = pytest.mark.django_db


def call_wsgi(body: bytes, *, terminated: bool = True, content_type: str = "") -> tuple[int, bytes]:
    """POST ``body`` to /postback through the WSGI application, as a server that de-chunks does."""
    from affise_proj.wsgi import application

    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD="POST",
        PATH_INFO="/postback",
        CONTENT_TYPE=content_type or "application/x-www-form-urlencoded",
        HTTP_TRANSFER_ENCODING="chunked",
        REMOTE_ADDR="203.0.113.7",
    )
    environ["wsgi.input"] = io.BytesIO(body)
    if terminated:
        environ["wsgi.input_terminated"] = True
    started = []
    # As Django's test client does: the test's transaction holds the connection open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, lambda status, headers, exc=None: started.append(status))
        content = b"".join(response)
        getattr(response, "close", lambda: None)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return int(started[0].split()[0]), content


def test_a_chunked_body_is_read_when_the_server_ends_the_input():
    status, content = call_wsgi(
        b'{"clickid": "ab", "goal": "sale"}', content_type="application/json"
    )
    assert status == 200, content
    row = Postback.objects.get()
    assert row.params == {"clickid": "ab", "goal": "sale"}


def test_a_chunked_body_the_server_does_not_end_is_411_and_not_accepted():
    status, content = call_wsgi(b"clickid=ab", terminated=False)
    assert (status, content) == (411, b"A Content-Length is required")
    assert not Postback.objects.exists()


def test_a_chunked_body_over_8kb_is_413_and_not_recorded():
    status, _ = call_wsgi(b"comment=" + b"x" * 9000)
    assert status == 413
    assert not Postback.objects.exists()


def test_a_chunked_body_over_djangos_memory_limit_is_413_without_reading_it_all(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    status, content = call_wsgi(b"x" * 5_000_000)
    assert (status, content) == (413, b"Request body exceeds 100000 bytes")


def _database_url() -> str:
    """The test database, as a URL for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = quote(db["USER"] or "")
    password = quote(db["PASSWORD"] or "")
    return f"postgres://{user}:{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, django_db_blocker, tmp_path_factory):
    """The web process as deployed, gunicorn on a free port, serving the test database."""
    port = _free_port()
    var = tmp_path_factory.mktemp("gunicorn-var")
    with django_db_blocker.unblock():
        database_url = _database_url()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(var),
        # Its own embedded broker and cache: nothing it queues reaches this run's worker.
        "CELERY_BROKER_URL": "filesystem://",
        "CACHE_URL": "locmemcache://",
        "CLICK_BUFFER": "0",
        "CONN_MAX_AGE": "0",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "affise_proj.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--log-level",
            "warning",
        ],
        cwd=settings.BASE_DIR,
        env=env,
    )
    try:
        wait_for(lambda: server.poll() is not None or _listening(port), timeout=60, what="gunicorn")
        assert server.poll() is None, "gunicorn exited"
        yield port
    finally:
        server.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        server.wait(timeout=30)


def post_chunked(port: int, parts: list[bytes]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/postback",
            body=iter(parts),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)  # rows another process writes and reads
def test_a_chunked_postback_through_gunicorn_is_recorded_with_its_body(gunicorn):
    status, content = post_chunked(gunicorn, [b"clickid=", b"c" * 24, b"&goal=sale&sum=5"])
    assert status == 200, content
    row = Postback.objects.get()
    assert row.params == {"clickid": "c" * 24, "goal": "sale", "sum": "5"}
    assert row.clickid == "c" * 24


@pytest.mark.django_db(transaction=True)
def test_a_chunked_postback_over_8kb_through_gunicorn_is_413(gunicorn):
    status, _ = post_chunked(gunicorn, [b"comment="] + [b"x" * 1000] * 9)
    assert status == 413
    assert not Postback.objects.exists()
