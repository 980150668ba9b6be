import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")

# filesystem:// (the embedded default) with atomic message writes; see fsbroker.
TRANSPORT_ALIASES["filesystem"] = "affise_proj.fsbroker:Transport"

app = Celery("affise_proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
