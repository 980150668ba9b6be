"""The web server's settings, read by a plain ``gunicorn affise_proj.wsgi`` run from here.

``make run`` (Procfile.dev), the Docker image, docker-compose and the bench
all start gunicorn this way; what differs between them comes from the
environment:

- ``WEB_BIND``: the address(es) to listen on, comma separated
  (default ``127.0.0.1:$PORT``, ``PORT`` default 8000).
- ``WEB_CONCURRENCY``: worker processes (default 2).
- ``WEB_THREADS``: threads per worker (default 1); above 1, gunicorn's
  ``gthread`` workers (keep-alive, one request's commit overlapped with
  another's work).
- ``WEB_ACCESS_LOG``: ``-`` logs every request to stdout (default: none).
- ``WEB_LIMIT_REQUEST_LINE``: the longest request line in bytes (default and
  most 8190, gunicorn's own ceiling).

The request line (``GET /postback?<query> HTTP/1.1``) carries a GET's query
string, and gunicorn refuses a longer line with its own ``414 URI Too Long``
before the application sees it. Gunicorn caps the setting at 8190: a larger
value silently means 8190, and 0 lifts every bound, so neither is accepted
here. At 8190 a GET postback can carry a query string of up to 8167 bytes;
a POST body is the application's to judge (413 over 8 KB of parameters).
"""

import os

GUNICORN_MAX_REQUEST_LINE = 8190


def _limit_request_line() -> int:
    value = int(os.environ.get("WEB_LIMIT_REQUEST_LINE", GUNICORN_MAX_REQUEST_LINE))
    if not 0 < value <= GUNICORN_MAX_REQUEST_LINE:
        raise ValueError(
            f"WEB_LIMIT_REQUEST_LINE={value}: gunicorn takes 1 to "
            f"{GUNICORN_MAX_REQUEST_LINE} bytes (it reads more as {GUNICORN_MAX_REQUEST_LINE}, "
            "and 0 as no limit at all)"
        )
    return value


wsgi_app = "affise_proj.wsgi"
bind = os.environ.get("WEB_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}").split(",")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "1"))
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
limit_request_line = _limit_request_line()
# Gunicorn's defaults, named here because they are limits too: at most 100
# header fields of at most 8190 bytes each.
limit_request_fields = 100
limit_request_field_size = 8190


def child_exit(server, worker) -> None:
    """A web worker exited: drop its live gauges from the metrics folder (its counts stay)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")
    from django.conf import settings

    # Reading a setting loads the settings, which name the metrics folder.
    settings.PROMETHEUS_MULTIPROC_DIR  # noqa: B018
    from affise_proj import metrics

    metrics.process_dead(worker.pid)
