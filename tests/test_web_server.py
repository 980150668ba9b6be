"""The web server as deployed: a plain ``gunicorn affise_proj.wsgi`` reading gunicorn.conf.py.

The size limits a postback meets are gunicorn's and the application's
together, so they are measured here against a real gunicorn on a free port.
"""

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from conversions.models import Postback

from .conftest import database_url, free_port, process_env, wait_for

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).parent / "gunicorn")
REQUEST_LINE_MAX = 8190
# "GET /postback?" before the query string and " HTTP/1.1" after it.
GET_OVERHEAD = len("GET /postback?") + len(" HTTP/1.1")


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def gunicorn(django_db_setup, tmp_path_factory):
    """gunicorn started as Procfile.dev, the Docker image and the bench start it."""
    directory = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    env = process_env(
        directory,
        DATABASE_URL=database_url(),
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
    )
    with open(directory / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(
            [GUNICORN, "affise_proj.wsgi"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.poll() is not None or _up(url), 30, "gunicorn to answer")
        assert server.poll() is None, (directory / "gunicorn.log").read_text()
        yield url
    finally:
        # SIGINT: gunicorn's quick shutdown (SIGTERM waits for its workers' graceful exit).
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


@pytest.fixture
def web_server(gunicorn, transactional_db):
    """The server's URL; what it stores is committed, seen here and removed after the test."""
    return gunicorn


def _query(length: int, tag: str) -> str:
    """A postback query string of exactly ``length`` bytes."""
    head = f"clickid={'c' * 24}&action_id={tag}&pad="
    return head + "x" * (length - len(head))


def test_a_get_postback_with_the_longest_request_line_gunicorn_reads_is_recorded(web_server):
    query = _query(REQUEST_LINE_MAX - GET_OVERHEAD, "longest")
    answer = httpx.get(f"{web_server}/postback?{query}", timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == 1
    assert Postback.objects.get(pk=answer.json()["id"]).action_id == "longest"


def test_a_get_postback_one_byte_longer_gets_gunicorns_414_and_is_not_recorded(web_server):
    query = _query(REQUEST_LINE_MAX - GET_OVERHEAD + 1, "too-long")
    answer = httpx.get(f"{web_server}/postback?{query}", timeout=10)
    assert answer.status_code == 414
    assert not Postback.objects.filter(action_id="too-long").exists()


def test_a_post_postback_up_to_8_kb_is_recorded_and_a_longer_one_gets_json_413(web_server):
    limit = settings.POSTBACK_MAX_PARAMS_BYTES
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = httpx.post(
        f"{web_server}/postback", content=_query(limit, "post-8k"), headers=form, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert Postback.objects.filter(action_id="post-8k").exists()

    answer = httpx.post(
        f"{web_server}/postback", content=_query(limit + 1, "post-over"), headers=form, timeout=10
    )
    assert answer.status_code == 413
    assert answer.json() == {"status": 2, "message": f"Postback parameters exceed {limit} bytes"}
    assert not Postback.objects.filter(action_id="post-over").exists()


@pytest.mark.parametrize("limit", ["16384", "0"])
def test_gunicorn_refuses_a_request_line_limit_it_would_not_keep(limit, tmp_path):
    # gunicorn reads more than 8190 as 8190 and 0 as unlimited: say so instead.
    checked = subprocess.run(
        [GUNICORN, "--check-config", "affise_proj.wsgi"],
        cwd=ROOT,
        env=process_env(tmp_path, WEB_LIMIT_REQUEST_LINE=limit),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode != 0
    assert f"WEB_LIMIT_REQUEST_LINE={limit}: gunicorn takes 1 to 8190 bytes" in (
        checked.stdout + checked.stderr
    )
