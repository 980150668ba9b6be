"""Celery task names are the strings messages already queued carry."""

from django.conf import settings

from affise_proj.celery import app
from conversions.processing.checks import CHECKS

NAMES = {
    *(f"conversions.tasks.check_{name}" for name in CHECKS),
    "conversions.tasks.settle",
    "conversions.tasks.dispatch_received",
    "conversions.tasks.sweep",
    "conversions.tasks.reconcile_caps",
    "conversions.tasks.flush_clicks",
    "conversions.tasks.merge_stats",
    "conversions.tasks.data_lifecycle",
    "partners.tasks.deliver",
    "partners.tasks.retry_due_deliveries",
}


def test_a_worker_registers_every_task_under_its_first_name():
    app.loader.import_default_modules()
    assert {name for name in app.tasks if not name.startswith("celery.")} == NAMES


def test_the_beat_schedules_only_registered_tasks():
    app.loader.import_default_modules()
    assert {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} <= NAMES
