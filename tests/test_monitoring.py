"""/metrics, /readyz, JSON logs, Sentry and the workers' heartbeat."""

import gzip
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from affise_proj import heartbeat, logs, metrics
from conversions.intake import spool
from conversions.models import Postback, new_postback_id

from .conftest import process_env
from .monitoring import TOKEN, delta, parse, scrape, value

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def test_metrics_is_not_found_while_no_token_is_set(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_refuses_a_scrape_without_the_token(client, db):
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")
    assert b"postbacks_accepted_total" not in wrong.content
    right = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert right.status_code == 200
    assert right["Content-Type"].startswith("text/plain; version=")
    assert b"postbacks_accepted_total" in right.content


def _waiting(age: timedelta, state: str = "received") -> Postback:
    return Postback.objects.create(
        id=new_postback_id(),
        received_at=timezone.now() - age,
        method="GET",
        params={},
        state=state,
    )


def test_waiting_gauges_are_read_from_the_table(client, db):
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        _waiting(timedelta(seconds=90))
        _waiting(timedelta(seconds=30))
        _waiting(timedelta(seconds=200), state="processing")
        _waiting(timedelta(seconds=500), state="accepted")
        values = scrape(client)
    assert value(values, "postbacks_waiting") == 3
    assert value(values, "postbacks_received") == 2
    assert value(values, "postbacks_processing") == 1
    assert value(values, "postbacks_oldest_waiting_seconds") == 200
    assert value(values, "monitoring_source_up", source="database") == 1


def test_oldest_waiting_is_zero_when_nothing_waits(client, db):
    values = scrape(client)
    assert value(values, "postbacks_waiting") == 0
    assert ("postbacks_oldest_waiting_seconds", ()) in values
    assert value(values, "postbacks_oldest_waiting_seconds") == 0


def test_spool_gauges_count_spooled_and_set_aside_postbacks(client, db):
    for _ in range(3):
        spool.append(
            Postback(id=new_postback_id(), received_at=timezone.now(), method="GET", params={})
        )
    values = scrape(client)
    assert value(values, "postbacks_spooled") == 3
    assert value(values, "postbacks_spool_set_aside") == 0

    (Path(settings.POSTBACK_SPOOL_DIR) / spool.SET_ASIDE_NAME).write_text('{"entry": {}}\n')
    values = scrape(client)
    # DESIGN.md: postbacks_spooled counts the set-aside entries too.
    assert value(values, "postbacks_spooled") == 4
    assert value(values, "postbacks_spool_set_aside") == 1


def test_metrics_answer_while_the_database_is_down(client, db, monkeypatch):
    from django.db import OperationalError

    from affise_proj import monitoring

    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setattr(monitoring, "waiting_postbacks", refuse)
    spool.append(Postback(id=new_postback_id(), received_at=timezone.now(), method="GET"))
    values = scrape(client)
    assert value(values, "monitoring_source_up", source="database") == 0
    assert ("postbacks_waiting", ()) not in values
    assert value(values, "postbacks_spooled") == 1


def test_counters_of_other_processes_add_up(client, db, tmp_path):
    """Each process writes its own file in the metrics folder; a scrape sums them."""
    before = scrape(client)
    script = (
        "import django; django.setup()\n"
        "from affise_proj import metrics\n"
        "for _ in range(3): metrics.postback_answered('POST')\n"
        "metrics.postbacks_failed(2)\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": settings.PROMETHEUS_MULTIPROC_DIR}
    env.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True)
    after = scrape(client)
    assert delta(before, after, "postbacks_accepted_total", method="POST") == 6
    assert delta(before, after, "postbacks_final_total", state="failed") == 4


def test_celery_workers_counts_live_heartbeats(client, db):
    before = value(scrape(client), "celery_workers")
    heartbeat.beat("test-a@host")
    heartbeat.beat("test-b@host")
    try:
        assert value(scrape(client), "celery_workers") == before + 2
    finally:
        heartbeat.gone("test-a@host")
    assert value(scrape(client), "celery_workers") == before + 1
    heartbeat.gone("test-b@host")
    assert value(scrape(client), "celery_workers") == before


def test_a_running_worker_is_counted(client, worker):
    assert value(scrape(client), "celery_workers") >= 1


def test_readyz_reports_each_dependency(client, db):
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["ready"] is True
    assert {"database", "broker", "spool", "workers"} <= set(body["checks"])
    assert all(check["ok"] for name, check in body["checks"].items() if name != "workers")
    assert body["checks"]["workers"]["required"] is False
    if settings.CLICK_BUFFER:
        assert body["checks"]["click_buffer"]["ok"] is True


def test_readyz_is_503_while_a_spooled_postback_is_set_aside(client, db):
    Path(settings.POSTBACK_SPOOL_DIR).mkdir(parents=True, exist_ok=True)
    (Path(settings.POSTBACK_SPOOL_DIR) / spool.SET_ASIDE_NAME).write_text('{"entry": {}}\n')
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["spool"] == {
        "ok": False,
        "error": "ValueError",
        "ms": answer.json()["checks"]["spool"]["ms"],
    }


# --- logs --------------------------------------------------------------------


class _Lines(logging.Handler):
    """The console handler as settings configure it for LOG_FORMAT=json, into a list."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict] = []
        self.addFilter(logs.ContextFilter())
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def json_lines():
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.lines
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_bound_fields_and_nothing_of_the_request_before(json_lines):
    log = logging.getLogger("conversions.test")
    token = logs._context.set(logs._context.get())
    try:
        logs.bind(postback_id="p1", clickid="c" * 24)
        log.info("one")
    finally:
        logs._context.reset(token)
    log.warning("two")
    one, two = json_lines
    assert one["message"] == "one"
    assert (one["postback_id"], one["clickid"], one["level"]) == ("p1", "c" * 24, "INFO")
    assert "postback_id" not in two and two["level"] == "WARNING"


def test_task_lines_carry_the_task_id_and_the_postbacks_of_the_batch(json_lines):
    class Task:
        name = "conversions.tasks.settle"

    logs.task_started(task_id="t-1", task=Task(), args=([{}, {}], ["a", "b"]))
    try:
        logging.getLogger("conversions.pipeline").info("settled")
    finally:
        logs.task_finished()
    logging.getLogger("conversions.pipeline").info("after")
    line, after = json_lines
    assert line["task_id"] == "t-1"
    assert line["task"] == "conversions.tasks.settle"
    assert line["postback_ids"] == ["a", "b"]
    assert "task_id" not in after


def test_log_format_json_writes_one_json_object_per_line(tmp_path):
    script = (
        "import django; django.setup()\n"
        "import logging\n"
        "from affise_proj import logs\n"
        "logs.bind(postback_id='p9', clickid='ab' * 12)\n"
        "logging.getLogger('conversions.views').warning('spooling postback %s', 'p9')\n"
    )
    env = process_env(tmp_path, LOG_FORMAT="json")
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stderr.splitlines() if text.strip()]
    assert line["message"] == "spooling postback p9"
    assert (line["level"], line["logger"]) == ("WARNING", "conversions.views")
    assert (line["postback_id"], line["clickid"]) == ("p9", "ab" * 12)
    assert "time" in line


def test_celery_worker_handlers_get_the_json_format(settings):
    settings.LOG_FORMAT = "json"
    logger = logging.Logger("celery-like")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    logs.celery_handlers(logger)
    assert isinstance(handler.formatter, logs.JsonFormatter)
    assert any(isinstance(f, logs.ContextFilter) for f in handler.filters)


# --- Sentry --------------------------------------------------------------------

_SENTRY_PROBE = (
    "import django; django.setup()\n"
    "import sentry_sdk\n"
    "client = sentry_sdk.get_client()\n"
    "print(client.is_active(), sorted(getattr(client, 'integrations', {})))\n"
    "try:\n"
    "    1 / 0\n"
    "except ZeroDivisionError:\n"
    "    sentry_sdk.capture_exception()\n"
    "sentry_sdk.flush(5)\n"
)


def _envelope(request) -> bytes:
    encoding = request.headers.get("Content-Encoding", "")
    if encoding == "gzip":
        return gzip.decompress(request.data)
    if encoding == "br":
        import brotli

        return brotli.decompress(request.data)
    return request.data


def test_sentry_reports_errors_only_when_a_dsn_is_set(tmp_path, httpserver):
    httpserver.expect_request("/api/1/envelope/", method="POST").respond_with_data("{}")
    dsn = f"http://publickey@127.0.0.1:{httpserver.port}/1"
    with_dsn = subprocess.run(
        [sys.executable, "-c", _SENTRY_PROBE],
        cwd=ROOT,
        env=process_env(tmp_path, SENTRY_DSN=dsn),
        capture_output=True,
        text=True,
    )
    assert with_dsn.returncode == 0, with_dsn.stderr
    active, integrations = with_dsn.stdout.split(" ", 1)
    assert active == "True"
    assert "'django'" in integrations and "'celery'" in integrations
    assert any(b"ZeroDivisionError" in _envelope(request) for request, _ in httpserver.log)

    httpserver.clear_log()
    without = subprocess.run(
        [sys.executable, "-c", _SENTRY_PROBE],
        cwd=ROOT,
        env={k: v for k, v in process_env(tmp_path).items() if not k.startswith("SENTRY_")},
        capture_output=True,
        text=True,
    )
    assert without.returncode == 0, without.stderr
    assert without.stdout.startswith("False")
    assert httpserver.log == []


def test_metric_labels_never_take_free_text():
    """A rejection or decline outside DESIGN.md's strings is counted as "other"."""
    assert metrics._reason_label("Cap is reached") == "Cap is reached"
    assert metrics._reason_label("a manager's rule text") == "other"
    assert metrics._reason_label("") == "none"


def test_parse_reads_what_render_writes(client, db):
    values = parse(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    for state in ("accepted", "rejected", "failed"):
        assert ("postbacks_final_total", (("state", state),)) in values


def test_gunicorn_workers_counts_add_up_and_outlive_a_worker(transactional_db, tmp_path):
    """Two gunicorn workers, one of them replaced: every answered postback stays counted."""
    import signal
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from .conftest import database_url, free_port, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(
        tmp_path,
        DATABASE_URL=database_url(),
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        METRICS_TOKEN=TOKEN,
    )
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    with open(tmp_path / "gunicorn.log", "wb") as out:
        server = subprocess.Popen(
            [gunicorn, "affise_proj.wsgi"], cwd=ROOT, env=env, stdout=out, stderr=out
        )

    def scraped() -> dict:
        answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        return parse(answer.text)

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        wait_for(lambda: server.poll() is not None or up(), 30, "gunicorn")
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda i: httpx.get(f"{url}/postback?clickid={'c' * 24}&action_id=g{i}"),
                    range(40),
                )
            )
        assert all(a.json()["status"] == 1 for a in answers)
        assert value(scraped(), "postbacks_accepted_total", method="GET") == 40
        workers = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(workers) == 2
        os.kill(int(workers[0]), signal.SIGTERM)
        wait_for(
            lambda: (
                len(
                    subprocess.run(
                        ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
                    ).stdout.split()
                )
                == 2
                and workers[0]
                not in subprocess.run(
                    ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
                ).stdout.split()
            ),
            30,
            "gunicorn to replace the worker",
        )
        # Counter files are per process (host and pid): the replaced worker's stays.
        gone = metrics.process_id(int(workers[0]))
        assert (tmp_path / "metrics" / f"counter_{gone}.db").exists()
        assert value(scraped(), "postbacks_accepted_total", method="GET") == 40
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
