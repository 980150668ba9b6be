import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import close_old_connections

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
