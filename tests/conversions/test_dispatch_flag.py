"""The pending-dispatch flag: one dispatch task per pending dispatch, raised by the accept itself.

On PostgreSQL the statement that stores a postback raises the flag too, before
its commit; the dispatcher lowers it only once every statement that saw it up
has committed, so the claim after it sees their postbacks.
"""

import threading

import pytest
from django.db import connection
from django.utils import timezone
from psycopg.types.json import Jsonb

from conversions.intake import views
from conversions.models import Postback, new_postback_id
from conversions.processing import dispatch

from ..conftest import another_session, wait_for

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the accept statement raises it on PostgreSQL"
)


def test_the_flag_coalesces_until_the_dispatcher_lowers_it(db):
    assert dispatch.raise_flag() is True
    assert dispatch.raise_flag() is False  # a dispatch is already queued: no second one
    dispatch.clear_flag()  # the dispatcher starts claiming
    assert dispatch.raise_flag() is True


def test_a_postback_raises_the_flag_once(client, db, time_machine):
    time_machine.move_to("2026-11-30 12:00:00", tick=False)
    first = client.get("/postback", {"clickid": "c" * 24, "action_id": "a1"})
    assert first.json()["status"] == 1
    assert dispatch.raise_flag() is False  # raised by the postback
    time_machine.shift(dispatch.NUDGE_TTL + 1)
    # A flag up longer than NUDGE_TTL stands for a dispatch task lost: raised again.
    assert dispatch.raise_flag() is True


def _accept_in(session, action_id: str) -> tuple[str, bool]:
    """Run the accept path's statement in ``session`` (left uncommitted); return id, raised."""
    postback_id = new_postback_id()
    params = {"clickid": "c" * 24, "action_id": action_id}
    row = {
        "id": postback_id,
        "received_at": timezone.now(),
        "ip": "192.0.2.1",
        "method": "GET",
        "params": Jsonb(params),
        "clickid": "c" * 24,
        "action_id": action_id,
        "state": "received",
        "error": "",
        "attempts": 0,
    }
    (raised,) = session.execute(views._insert_postback_sql(), row).fetchone()
    return postback_id, raised


@postgres_only
def test_the_dispatcher_waits_for_a_postback_that_saw_the_flag_up(transactional_db):
    assert dispatch.raise_flag() is True
    claimed = []

    with another_session() as web:
        postback_id, raised = _accept_in(web, "in-flight")
        assert raised is False  # the flag was up: this postback publishes nothing

        def dispatcher():
            dispatch.clear_flag()
            claimed.extend(dispatch.claim(10))
            connection.close()

        thread = threading.Thread(target=dispatcher)
        thread.start()
        # The dispatcher's lowering waits for the postback's commit (without
        # that wait it would lower the flag and claim an empty table now).
        wait_for(
            lambda: not thread.is_alive() or _waiting_for_a_lock(),
            what="the dispatcher to finish or to wait",
        )
        web.commit()
    thread.join(timeout=20)
    assert claimed == [postback_id]
    assert Postback.objects.get(pk=postback_id).state == "processing"


def _waiting_for_a_lock() -> bool:
    with another_session(autocommit=True) as other:
        (count,) = other.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return count > 0


@postgres_only
def test_a_postback_after_the_flag_was_lowered_raises_it_again(transactional_db):
    assert dispatch.raise_flag() is True
    dispatch.clear_flag()
    with another_session() as web:
        _, raised = _accept_in(web, "after")
        web.commit()
    assert raised is True
