"""The click and accept paths' database access: one prepared statement, kept connections.

PostgreSQL only (CI): the embedded SQLite default has no connection to lose
and goes through the ORM.
"""

import time

import pytest
from django.db import connection

from conversions.models import Click, Postback

from ..conftest import another_session

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's connection handling"
)


def _from_another_session(sql: str, params=()) -> None:
    """Run ``sql`` on a connection of its own, as another process would."""
    with another_session(autocommit=True) as other:
        other.execute(sql, params)


def _kill_backend() -> None:
    """End this connection's server process from the outside, as a database restart does."""
    _from_another_session(
        "SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid]
    )


@pytest.fixture(autouse=True)
def _direct_clicks(settings):
    """These tests are about the statement a click runs when it is not buffered."""
    settings.CLICK_BUFFER = False


@pytest.fixture
def kept_connection(transactional_db):
    """A persistent connection, as the web and the workers keep them (CONN_MAX_AGE)."""
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = None
    connection.close()
    yield
    connection.settings_dict["CONN_MAX_AGE"] = saved
    connection.close()


def _prove_connection() -> None:
    """What the end of a request that used the connection without error does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close_if_unusable_or_obsolete()


@postgres_only
def test_a_proven_connection_is_not_checked_and_an_idle_one_is(kept_connection):
    _prove_connection()
    proven = connection.connection
    _kill_backend()
    # Within the grace period the check is skipped: the dead connection is kept.
    connection.close_if_health_check_failed()
    assert connection.connection is proven
    # Past it (no grace at all here) the check runs, finds it dead and drops it.
    connection.health_check_done = False
    connection.proven_at = time.monotonic() - connection.health_check_grace - 1
    connection.close_if_health_check_failed()
    assert connection.connection is None


@postgres_only
def test_a_click_on_a_connection_that_died_unchecked_still_records(
    client, offer, partner, kept_connection
):
    _prove_connection()
    _kill_backend()
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response.status_code == 302
    assert Click.objects.get().clickid in response["Location"]


@postgres_only
def test_a_postback_on_a_connection_that_died_unchecked_is_stored_not_spooled(
    client, kept_connection, settings
):
    _prove_connection()
    _kill_backend()
    response = client.get("/postback", {"clickid": "c" * 24, "action_id": "a1"})
    assert response.json()["status"] == 1
    stored = Postback.objects.get(pk=response.json()["id"])
    assert (stored.state, stored.action_id, stored.params) == (
        "received",
        "a1",
        {"clickid": "c" * 24, "action_id": "a1"},
    )
    assert not list(settings.POSTBACK_SPOOL_DIR.glob("*"))


@postgres_only
def test_a_clicks_relaxed_commit_does_not_reach_the_next_statement(
    client, offer, partner, transactional_db, settings
):
    settings.CLICK_SYNCHRONOUS_COMMIT = False
    assert client.get("/click", {"offer_id": offer.pk, "pid": partner.pk}).status_code == 302
    # The click's transaction ran with synchronous_commit off; the session did not.
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)
    response = client.get("/postback", {"clickid": "c" * 24, "action_id": "a2"})
    assert response.json()["status"] == 1


@postgres_only
def test_the_click_statement_is_prepared_once_per_connection(
    client, offer, partner, kept_connection
):
    for _ in range(3):
        assert client.get("/click", {"offer_id": offer.pk, "pid": partner.pk}).status_code == 302
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), sum(generic_plans + custom_plans) FROM pg_prepared_statements"
            " WHERE statement LIKE %s",
            ["%INSERT INTO conversions_click%"],
        )
        assert cursor.fetchone() == (1, 3)
    assert Click.objects.count() == 3


@postgres_only
def test_the_click_and_postback_tables_carry_no_like_indexes(db):
    # Every index is paid on every insert of the two hottest tables; lookups
    # by clickid, action_id and postback id are exact.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename IN (%s, %s)",
            [Click._meta.db_table, Postback._meta.db_table],
        )
        names = {name for (name,) in cursor.fetchall()}
    assert not [name for name in names if name.endswith("_like")]
    assert {"conversions_click_pkey", "postback_clickid_idx", "postback_action_id_idx"} <= names


@postgres_only
def test_a_longer_offer_url_column_does_not_break_the_prepared_click(
    client, offer, partner, kept_connection
):
    # A migration that widens the URL columns must not outdate the click
    # statement prepared on kept connections (its result columns are text).
    assert client.get("/click", {"offer_id": offer.pk, "pid": partner.pk}).status_code == 302
    backend = connection.connection.info.backend_pid
    # From another session, as a migration runs: psycopg forgets its prepared
    # statements after DDL on its own connection, not after anyone else's.
    _from_another_session("ALTER TABLE offers_offer ALTER COLUMN url TYPE varchar(4001)")
    try:
        response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
        assert response.status_code == 302
        # Served on the same connection: no failure, no retry on a new one.
        assert connection.connection.info.backend_pid == backend
    finally:
        _from_another_session(
            f"ALTER TABLE offers_offer ALTER COLUMN url TYPE varchar({_url_length()})"
        )
    assert Click.objects.count() == 2


def _url_length() -> int:
    from offers.models import Offer

    return Offer._meta.get_field("url").max_length


@postgres_only
def test_a_click_statement_run_again_after_its_commit_landed_stores_one_click(
    offer, partner, transactional_db
):
    from conversions.intake import clicks, statements

    params = {
        **clicks._STATUS_PARAMS,
        "offer_id": offer.pk,
        "pid": partner.pk,
        "partner_id": partner.pk,
        "clickid": "ab" * 12,
        "created_at": offer.created_at,
        "synchronous_commit": None,
        "ip": None,
        "user_agent": "",
        "referrer": "",
        "country": "",
        **{name: "" for name in clicks.SUB_FIELDS},
    }
    first = statements.fetch_one(clicks._record_sql(), params, prepare=True)
    again = statements.fetch_one(clicks._record_sql(), params, prepare=True)
    assert first[0] is True and again[0] is True
    assert list(Click.objects.values_list("clickid", flat=True)) == ["ab" * 12]


@postgres_only
def test_a_click_inside_a_transaction_leaves_its_commit_mode_alone(offer, partner, db, settings):
    from conversions.intake import clicks

    settings.CLICK_SYNCHRONOUS_COMMIT = False
    fields = {"ip": None, "user_agent": "", "referrer": "", "country": ""}
    fields.update({name: "" for name in clicks.SUB_FIELDS})
    target, clickid = clicks.record(offer.pk, partner.pk, **fields)  # db: inside a transaction
    assert target.may_run and clickid
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone() == ("on",)


def test_nul_bytes_in_a_click_are_replaced_not_refused(client, offer, partner, db):
    response = client.get(
        "/click",
        {"offer_id": offer.pk, "pid": partner.pk, "sub1": "a\x00b"},
        HTTP_USER_AGENT="bot\x00",
    )
    assert response.status_code == 302
    click = Click.objects.get()
    assert (click.sub1, click.user_agent) == ("a\ufffdb", "bot\ufffd")


@postgres_only
def test_a_prepared_statement_outdated_by_another_sessions_migration_is_run_afresh(
    offer, kept_connection
):
    from conversions.intake import statements

    sql = "SELECT url FROM offers_offer WHERE id = %(id)s"
    assert statements.fetch_one(sql, {"id": offer.pk}, prepare=True) == (offer.url,)
    _from_another_session("ALTER TABLE offers_offer ALTER COLUMN url TYPE varchar(4002)")
    try:
        # The old plan's result type no longer holds; a new connection prepares anew.
        assert statements.fetch_one(sql, {"id": offer.pk}, prepare=True) == (offer.url,)
    finally:
        _from_another_session(
            f"ALTER TABLE offers_offer ALTER COLUMN url TYPE varchar({_url_length()})"
        )
