import os

from celery import Celery, bootsteps
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
)

from affise_proj import heartbeat, logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")

app = Celery("affise_proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def recycle_database_connections(**kwargs) -> None:
    """Keep a worker's connection across tasks as Django keeps it across requests.

    Closes it only past CONN_MAX_AGE or once it has failed (a restarted
    database), and has the next use check it (CONN_HEALTH_CHECKS).
    """
    from django.db import close_old_connections

    close_old_connections()


# Every line a task logs carries its task id and the postbacks it works on.
task_prerun.connect(logs.task_started, weak=False)
task_postrun.connect(logs.task_finished, weak=False)
after_setup_logger.connect(logs.celery_handlers, weak=False)
after_setup_task_logger.connect(logs.celery_handlers, weak=False)


class Heartbeat(bootsteps.StartStopStep):
    """The worker's mark of life for /metrics' celery_workers (affise_proj/heartbeat.py)."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        heartbeat.beat(worker.hostname)
        self.tref = worker.timer.call_repeatedly(
            heartbeat.INTERVAL, heartbeat.beat, (worker.hostname,), priority=10
        )

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        heartbeat.gone(worker.hostname)


app.steps["worker"].add(Heartbeat)
