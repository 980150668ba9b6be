"""One statement, one round trip: the database access of the click and accept paths.

These two endpoints take the whole traffic of a network. Each does a single
statement on PostgreSQL, run as a server-side prepared statement (Django binds
parameters on the client and never prepares; planning these statements cost
as much as running them), on the connection Django manages for the request.
"""

from django.db import InterfaceError, OperationalError, connection


def fetch_one(sql: str, params: dict, *, prepare: bool = False) -> tuple | None:
    """Run one statement and return its first row (None if it returned none).

    ``prepare`` (PostgreSQL only) runs it prepared, once per connection. The
    statement runs again, once, on a fresh connection if the kept one turned
    out dead: the web process skips the per-request health check while its
    connection is proven (affise_proj/postgres), so a database restart in
    between shows up here first. A statement whose commit had reached the
    database before the connection broke is not stored twice: its retry meets
    the unique key it wrote (a clickid, a postback id).
    """
    for attempt in (1, 2):
        try:
            if not prepare:
                with connection.cursor() as cursor:
                    cursor.execute(sql, params)
                    return cursor.fetchone() if cursor.description else None
            # What connection.cursor() does, without building a cursor of Django's.
            connection.close_if_health_check_failed()
            connection.ensure_connection()
            connection.validate_thread_sharing()
            with connection.wrap_database_errors, _server_cursor() as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchone() if cursor.description else None
        except (OperationalError, InterfaceError):
            if attempt == 2 or connection.in_atomic_block:
                raise
            connection.close()
    return None  # pragma: no cover


def _server_cursor():
    """A psycopg cursor with server-side binding on Django's own connection."""
    import psycopg

    return psycopg.Cursor(connection.connection)
