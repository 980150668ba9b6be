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
