"""One statement, one round trip: the database access of the click and accept paths.

These two endpoints take the whole traffic of a network. Each does a single
statement on PostgreSQL, run as a server-side prepared statement (Django binds
parameters on the client and never prepares; planning these statements cost
as much as running them), on the connection Django manages for the request.
"""

import psycopg
from django.db import InterfaceError, NotSupportedError, OperationalError, connection


def fetch_one(sql: str, params: dict, *, prepare: bool = False) -> tuple | None:
    """Run one statement and return its first row (None if it returned none).

    ``prepare`` (PostgreSQL only) runs it prepared, once per connection. The
    statement runs again, once, on a fresh connection if the kept one turned
    out dead: the web process skips the per-request health check while its
    connection is proven (affise_proj/postgres), so a database restart in
    between shows up here first. So does a prepared statement outdated by a
    migration. A statement whose commit had reached the database before the
    connection broke is not stored twice: its retry meets the unique key it
    wrote (a clickid, a postback id) and does nothing (ON CONFLICT).
    """
    for attempt in (1, 2):
        try:
            with connection.cursor() as cursor:
                if prepare:
                    with connection.wrap_database_errors, _server_cursor() as server:
                        server.execute(sql, params, prepare=True)
                        return server.fetchone() if server.description else None
                cursor.execute(sql, params)
                return cursor.fetchone() if cursor.description else None
        except (OperationalError, InterfaceError, NotSupportedError) as exc:
            if attempt == 2 or connection.in_atomic_block or not _worth_a_retry(exc):
                raise
            connection.close()
    return None  # pragma: no cover


def placeholders(columns) -> str:
    """Named placeholders for ``columns``, the inet column cast (a bare text would not do)."""
    return ", ".join(f"%({c})s::inet" if c == "ip" else f"%({c})s" for c in columns)


def _worth_a_retry(exc: Exception) -> bool:
    """A dead connection, or a prepared statement that a schema change outdated.

    PostgreSQL refuses to run a prepared statement whose result type a
    migration changed ("cached plan must not change result type", 0A000); a
    new connection prepares it afresh.
    """
    if not isinstance(exc, NotSupportedError):
        return True
    return getattr(exc.__cause__, "sqlstate", None) == "0A000"


def _server_cursor():
    """A psycopg cursor with server-side binding on Django's own connection."""
    return psycopg.Cursor(connection.connection)
