"""PostgreSQL, with the per-request health check skipped while a connection is proven.

Django's CONN_HEALTH_CHECKS sends ``SELECT 1`` before the first query of every
request or task that reuses a connection. On the accept and click paths that
is a third of all round trips. Here a connection that served the previous
request or task without an error, less than CONN_HEALTH_CHECK_GRACE seconds
ago, is used without the check; an idle one is still checked.

If the database restarts inside that window, the first query fails instead
of reconnecting: the click and accept statements run again once on a new
connection (conversions/intake/statements.py), anything else fails as after any error,
and Django closes the broken connection at the end of the request or task.

Why not Django's own pool (``DATABASES["default"]["OPTIONS"]["pool"]``,
psycopg_pool, Django 5.1+): measured on the accept path (gunicorn, 2 workers,
wrk at 16 connections, transactions counted in pg_stat_database), Django's
backend with health checks costs 1.95-1.98 transactions per accepted
postback, this one 0.94-1.01 and the pool 0.96-0.97: the pool saves the same
round trip by not checking at all. It then hands out a dead connection after
a database restart to every request until each pooled one has failed once
(its ``check`` option brings the ``SELECT 1`` back on every checkout), needs
CONN_MAX_AGE=0 and one more dependency. Here a connection idle longer than
the grace is still checked, and one that failed is replaced at once.
It overrides two methods of Django's PostgreSQL DatabaseWrapper that are not
documented API (close_if_health_check_failed, close_if_unusable_or_obsolete):
tests/conversions/test_hotpath.py and the fault tests (bench/faults.py) cover it on
upgrades.
"""

import time

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.proven_at = -float("inf")

    @property
    def health_check_grace(self) -> float:
        return float(self.settings_dict.get("CONN_HEALTH_CHECK_GRACE", 0))

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and not self.health_check_done
            and time.monotonic() - self.proven_at < self.health_check_grace
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def close_if_unusable_or_obsolete(self) -> None:
        # Called at the start and the end of each request (and around each
        # task): a connection used since the last call (health_check_done) with
        # no error has just proven that it works.
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self.proven_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def connect(self) -> None:
        super().connect()
        self.proven_at = time.monotonic()
