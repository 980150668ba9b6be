import os
import threading

from celery import Celery, bootsteps
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
)
from django.db import close_old_connections

from affise_proj.heartbeat import INTERVAL as HEARTBEAT_INTERVAL
from affise_proj.heartbeat import beat, gone
from affise_proj.logs import celery_handlers, task_finished, task_started

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
    close_old_connections()


# Every line a task logs carries its task id and the postbacks it works on.
task_prerun.connect(task_started, weak=False)
task_postrun.connect(task_finished, weak=False)
after_setup_logger.connect(celery_handlers, weak=False)
after_setup_task_logger.connect(celery_handlers, weak=False)


class Heartbeat(bootsteps.StartStopStep):
    """The worker's mark of life for /metrics' celery_workers (affise_proj/heartbeat.py).

    A thread of its own, not the worker's timer: the timer's entries are
    dropped when the worker reconnects to a restarted broker.
    """

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.stopping = threading.Event()
        self.thread = None

    def start(self, worker):
        hostname = worker.hostname

        def loop():
            beat(hostname)
            while not self.stopping.wait(HEARTBEAT_INTERVAL):
                beat(hostname)

        self.thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
        self.thread.start()

    def stop(self, worker):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        gone(worker.hostname)


app.steps["worker"].add(Heartbeat)
