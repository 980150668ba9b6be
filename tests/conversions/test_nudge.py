"""The accept path's nudge: one dispatch task per pending dispatch, across every web process.

Web processes here are real processes started by the test, configured as the
README's production example is: a Redis broker and no CACHE_URL (so Django's
cache is each process's own memory). They use a Redis of the test's own, so
no worker takes the dispatch tasks they queue before they are counted.
"""

import subprocess
import sys
from pathlib import Path

from conversions.models import Postback

from ..conftest import database_url, process_env

ROOT = Path(__file__).resolve().parents[2]

# A web process: Django's test client on the real URLconf and settings. It
# waits for a line on stdin, so that the test releases all of them at once.
WEB_PROCESS = """
import sys

import django

django.setup()
from django.test import Client

client = Client()
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[2])):
    answer = client.get("/postback", {"clickid": "c" * 24, "action_id": f"{sys.argv[1]}-{i}"})
    assert answer.json()["status"] == 1, answer.content
"""


def test_postbacks_in_two_web_processes_queue_one_dispatch_without_a_redis_cache(
    private_redis, transactional_db, tmp_path
):
    env = process_env(tmp_path, DATABASE_URL=database_url(), CELERY_BROKER_URL=private_redis.url(0))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WEB_PROCESS, f"web{n}", "20"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in (1, 2)
    ]
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        assert process.wait(timeout=60) == 0

    assert Postback.objects.filter(action_id__startswith="web").count() == 40
    # Nothing consumed the queue: every dispatch task published is still there.
    # One, for 40 postbacks in two processes (the flag lives 2 s, longer than this takes).
    assert private_redis.client(0).llen("celery") == 1
