"""A Celery worker process lives through Redis restarts, as no supervisor may be there to restart it.

``make run`` (honcho) stops every process when one exits, so a worker that
exits on a broker restart takes the web server with it. The worker here is
the real command of Procfile.dev against a Redis of the test's own, which
the test restarts while the worker holds unacknowledged messages and waits
on the queue for more: the moment celery 5.7.0 exited with
``AttributeError: 'NoneType' object has no attribute 'hostname'``.
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from affise_proj.celery import app

from .conftest import process_env, wait_for

ROOT = Path(__file__).resolve().parents[1]
CELERY = str(Path(sys.executable).parent / "celery")
RESTARTS = 2


def _send(url: str, seconds: float, tag: str) -> None:
    # A connection of its own: the suite's app may be on the filesystem broker.
    with Connection(url) as connection:
        app.send_task("tests.hold", args=[seconds, tag], connection=connection, ignore_result=True)


def _reported(broker, key: str, tag: str) -> bool:
    return tag.encode() in broker.lrange(key, 0, -1)


@pytest.fixture
def worker(private_redis, tmp_path):
    """``celery -A affise_proj worker`` as Procfile.dev starts it, on the private Redis."""
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                *(
                    CELERY,
                    "-A",
                    "affise_proj",
                    "worker",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    "2",
                ),
                *(
                    "--include",
                    "tests.worker_tasks",
                    "--hostname",
                    f"restart-{private_redis.port}@%h",
                ),
            ],
            cwd=ROOT,
            env=process_env(tmp_path, CELERY_BROKER_URL=private_redis.url(0)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield process, log
    # The worker and its pool processes at once: nothing they hold matters any more.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_the_worker_keeps_running_and_processing_through_redis_restarts(private_redis, worker):
    process, log = worker
    broker = private_redis.client(0)
    url = private_redis.url(0)
    _send(url, 0, "ready")
    wait_for(lambda: _reported(broker, "tests:done", "ready"), 60, "the worker to start")

    for restart in range(RESTARTS):
        # Two tasks hold both pool processes: their messages are unacknowledged
        # while the worker waits on the queue (BRPOP) for more.
        held = [f"held-{restart}{part}" for part in "ab"]
        for tag in held:
            _send(url, 2, tag)
        for tag in held:
            wait_for(lambda tag=tag: _reported(broker, "tests:started", tag), 20, f"{tag} to start")
        private_redis.stop()
        private_redis.start()

        after = f"after-{restart}"
        _send(url, 0, after)
        wait_for(
            lambda after=after: (
                process.poll() is not None or _reported(broker, "tests:done", after)
            ),
            60,
            "a task sent after the restart to run",
        )
        assert process.poll() is None, log.read_text()[-4000:]
