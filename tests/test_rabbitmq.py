"""The whole pipeline with RabbitMQ as the broker (``CELERY_BROKER_URL=amqp://…``).

A real gunicorn and a real Celery worker run against the suite's database and
a RabbitMQ virtual host of the suite's own (``RABBITMQ_TEST_URL``; ``.ci/run``
creates it with rabbitmqctl): clicks, postbacks, the chord of checks and its
callback go through RabbitMQ. Twice: with a Redis beside it (``REDIS_URL``:
chords counted and results kept in Redis, the click buffer, the dispatch flag)
and with RabbitMQ alone (chords counted in the database, clicks inserted in
the request).
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django_celery_results.models import TaskResult
from kombu import Connection

from conversions.models import Click, Conversion, Postback

from .conftest import FINAL, database_url, free_port, process_env, wait_for

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RABBITMQ_URL = os.environ.get("RABBITMQ_TEST_URL", "")

pytestmark = pytest.mark.skipif(
    not RABBITMQ_URL,
    reason="RABBITMQ_TEST_URL is not set: a RabbitMQ virtual host for these tests "
    "(.ci/run creates one with rabbitmqctl when RabbitMQ runs on this machine)",
)


@pytest.fixture
def rabbitmq() -> str:
    """The suite's virtual host, its queue emptied of anything an earlier run left."""
    try:
        with Connection(RABBITMQ_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            channel.queue_declare("celery", durable=True, auto_delete=False)
            channel.queue_purge("celery")
    except Exception as exc:
        pytest.skip(f"RabbitMQ at {RABBITMQ_URL.split('@')[-1]} does not answer: {exc!r}")
    return RABBITMQ_URL


def _spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/noop", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(params=["redis beside", "rabbitmq alone"])
def amqp_stack(request, rabbitmq, transactional_db, tmp_path):
    """gunicorn and a worker on RabbitMQ; yields (web url, the Redis beside it or None)."""
    redis_server = (
        request.getfixturevalue("private_redis") if request.param == "redis beside" else None
    )
    port = free_port()
    env = process_env(
        tmp_path,
        DATABASE_URL=database_url(),
        CELERY_BROKER_URL=rabbitmq,
        REDIS_URL=redis_server.url(0) if redis_server else "",
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="1",
        DEBUG="0",
        LOG_LEVEL="WARNING",
    )
    procs = [
        _spawn([str(BIN / "gunicorn"), "affise_proj.wsgi"], env, tmp_path / "web.log"),
        _spawn(
            [
                *(str(BIN / "celery"), "-A", "affise_proj", "worker", "--loglevel", "WARNING"),
                *("--pool", "threads", "--concurrency", "4", "--hostname", f"amqp-{port}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env,
            tmp_path / "worker.log",
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: procs[0].poll() is not None or _up(url), 30, "gunicorn to answer")
        assert procs[0].poll() is None, (tmp_path / "web.log").read_text()[-4000:]
        yield url, redis_server
        assert procs[1].poll() is None, (tmp_path / "worker.log").read_text()[-4000:]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_postbacks_are_processed_end_to_end_over_rabbitmq(amqp_stack, offer, partner, make_click):
    url, redis_server = amqp_stack
    web = httpx.Client(base_url=url, timeout=10)
    # A click through the web (buffered in Redis when there is one), and stored ones.
    landing = web.get("/click", params={"offer_id": offer.pk, "pid": partner.pk})
    assert landing.status_code == 302
    clicked = parse_qs(urlsplit(landing.headers["location"]).query)["c"][0]
    clickids = [clicked] + [make_click().clickid for _ in range(11)]
    sent = [
        web.get("/postback", params={"clickid": clickid, "action_id": f"a{i}", "sum": "5"})
        for i, clickid in enumerate(clickids)
    ]
    unknown = web.get("/postback", params={"clickid": "f" * 24, "action_id": "nope"})
    ids = [answer.json()["id"] for answer in [*sent, unknown]]
    assert all(answer.json()["status"] == 1 for answer in [*sent, unknown])

    wait_for(
        lambda: Postback.objects.filter(pk__in=ids, state__in=FINAL).count() == len(ids),
        60,
        "every postback to settle over RabbitMQ",
    )
    states = dict(Postback.objects.filter(pk__in=ids).values_list("pk", "state"))
    assert [states[i] for i in ids[:-1]] == ["accepted"] * len(clickids)
    assert Postback.objects.get(pk=ids[-1]).error == "Click not found"
    assert Conversion.objects.filter(click__in=clickids).count() == len(clickids)
    assert Click.objects.filter(clickid=clicked).exists()

    health = web.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["broker"] == "ok"
    header_parts = TaskResult.objects.filter(task_name="conversions.tasks.check_click")
    if redis_server:
        # Chords are counted in the Redis beside RabbitMQ; the database keeps only
        # the callbacks' record.
        assert redis_server.client(0).keys("celery-task-meta-*")
        assert not header_parts.exists()
        assert TaskResult.objects.filter(task_name="conversions.tasks.settle").exists()
    else:
        # RabbitMQ alone: results, and the chord's counting, in the database.
        assert header_parts.exists()
