"""Write-behind clicks: answered from Redis, stored in batches, never lost or doubled.

Needs PostgreSQL and a Redis cache (CI); the embedded default stores each
click in its request.
"""

import contextlib
import json
import logging
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from conversions.intake import click_buffer, clicks
from conversions.intake.redis_connection import KeptConnection
from conversions.models import Click, Conversion
from conversions.processing import tasks
from offers.models import Offer

from ..conftest import another_session

pytestmark = pytest.mark.skipif(
    not settings.CLICK_BUFFER, reason="the click buffer needs PostgreSQL and a Redis cache"
)


def _click(client, offer, partner, **params):
    extra = {k: params.pop(k) for k in list(params) if k.isupper()}
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk, **params}, **extra)
    assert response.status_code == 302
    return parse_qs(urlsplit(response["Location"]).query)["c"][0]


def _stream_ids() -> list[str]:
    stream = click_buffer._stream()
    return [entry_id.decode() for entry_id, _ in stream.client.xrange(stream.key)]


@contextlib.contextmanager
def _database_away():
    """PostgreSQL is down for this connection: nothing listens where it connects."""
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = 1
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved


def test_a_click_is_answered_from_the_buffer_and_stored_by_the_flush(
    client, offer, partner, transactional_db
):
    before = timezone.now()
    clickid = _click(
        client,
        offer,
        partner,
        sub1="a b 😀 é",
        sub8="z",
        HTTP_USER_AGENT="Mozilla/5.0",
        REMOTE_ADDR="198.51.100.4",
        HTTP_CF_IPCOUNTRY="de",
    )
    # Answered without touching the table.
    assert not Click.objects.exists()
    assert click_buffer.pending() == 1
    assert tasks.flush_clicks() == 1
    click = Click.objects.get()
    assert (click.clickid, click.offer, click.partner) == (clickid, offer, partner)
    assert (click.sub1, click.sub8, click.ip, click.country) == (
        "a b 😀 é",
        "z",
        "198.51.100.4",
        "DE",
    )
    assert click.user_agent == "Mozilla/5.0"
    # The time of the click, not of the flush.
    assert before <= click.created_at <= before + timedelta(seconds=5)
    # Committed, so the entries are gone.
    assert click_buffer.pending() == 0


def test_entries_read_twice_are_stored_once(client, offer, partner, db):
    # db: the flush runs inside the test's transaction, so the entries are not
    # deleted (that waits for a commit) and the second flush reads them again,
    # as after a flush that died between its commit and the delete.
    ids = {_click(client, offer, partner) for _ in range(3)}
    assert click_buffer.flush() == 3
    assert click_buffer.flush() == 3
    assert set(Click.objects.values_list("clickid", flat=True)) == ids
    assert click_buffer.pending() == 3


def test_a_flush_that_failed_leaves_its_entries_for_the_next(
    client, offer, partner, transactional_db
):
    clickid = _click(client, offer, partner)
    with another_session() as other, connection.cursor() as cursor:
        # The flush's insert cannot get the table: its transaction fails.
        other.execute(f"LOCK TABLE {Click._meta.db_table} IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SET lock_timeout = '50ms'")
        with pytest.raises(OperationalError, match="lock timeout"):
            click_buffer.flush()
        cursor.execute("SET lock_timeout = 0")
        other.rollback()
    assert not Click.objects.exists()
    assert click_buffer.pending() == 1
    assert click_buffer.flush() == 1
    assert list(Click.objects.values_list("clickid", flat=True)) == [clickid]


def test_flushes_run_one_at_a_time_and_the_beat_does_not_wait(
    client, offer, partner, transactional_db
):
    _click(client, offer, partner)
    with another_session() as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", [click_buffer.LOCK_ID])
        # Another flush holds the lock: the beat's tick leaves the work to it.
        assert tasks.flush_clicks() == 0
        assert click_buffer.pending() == 1
        other.rollback()
    assert tasks.flush_clicks() == 1
    assert Click.objects.count() == 1


def test_more_than_a_batch_is_flushed_in_batches(offer, partner, transactional_db):
    now = timezone.now()
    fields = dict.fromkeys(click_buffer.FIELDS, "")
    fields["ip"] = None
    count = click_buffer.FLUSH_BATCH + 7
    for i in range(count):
        assert click_buffer.add(f"{i:024x}", offer.pk, partner.pk, now, fields)
    assert click_buffer.flush() == count
    assert Click.objects.count() == count
    assert click_buffer.pending() == 0


def test_a_click_whose_offer_is_gone_is_dropped_not_blocking(
    client, make_offer, offer, partner, transactional_db
):
    doomed = make_offer(title="Deleted before the flush")
    _click(client, doomed, partner)
    kept = _click(client, offer, partner)
    doomed.delete()
    assert click_buffer.flush() == 2
    assert list(Click.objects.values_list("clickid", flat=True)) == [kept]
    assert click_buffer.pending() == 0


@pytest.mark.parametrize(
    "entry",
    [
        json.dumps(["not", "a", "click"]),
        json.dumps(["x" * 24, 1, 1, "2026-01-01T00:00:00+00:00", *[""] * 12]),
        json.dumps(["a" * 24, "1; DROP", 1, "2026-01-01T00:00:00+00:00", *[""] * 12]),
        json.dumps(["a" * 24, 1, 1, "yesterday", *[""] * 12]),
        json.dumps(["a" * 24, 1, 1, "2026-01-01T00:00:00+00:00", 5, *[""] * 11]),
        "{not json",
    ],
)
def test_an_unreadable_entry_is_dropped_and_logged(client, offer, partner, transactional_db, entry):
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = logging.getLogger(click_buffer.__name__)
    logger.addHandler(handler)
    stream = click_buffer._stream()
    try:
        stream.client.xadd(stream.key, {"c": entry})
        kept = _click(client, offer, partner)
        assert click_buffer.flush() == 2
    finally:
        logger.removeHandler(handler)
    assert list(Click.objects.values_list("clickid", flat=True)) == [kept]
    assert [m for m in logged if "set aside" in m and "unreadable" in m]
    assert _stream_ids() == []
    # Kept, with the reason, for an operator.
    ((_, rejected),) = stream.client.xrange(click_buffer.REJECTED_KEY)
    assert rejected[b"error"].startswith(b"unreadable")


def test_a_row_the_table_refuses_is_set_aside_and_the_rest_stored(
    client, offer, partner, transactional_db
):
    now = timezone.now()
    fields = dict.fromkeys(click_buffer.FIELDS, "")
    before = _click(client, offer, partner)
    assert click_buffer.add("e" * 24, offer.pk, partner.pk, now, {**fields, "ip": "not an ip"})
    after = _click(client, offer, partner)
    assert click_buffer.flush() == 3
    assert set(Click.objects.values_list("clickid", flat=True)) == {before, after}
    assert click_buffer.pending() == 0
    stream = click_buffer._stream()
    ((_, rejected),) = stream.client.xrange(click_buffer.REJECTED_KEY)
    assert json.loads(rejected[b"c"])[0] == "e" * 24
    assert b"inet" in rejected[b"error"]


def test_the_beat_flushes_a_bounded_amount_a_waiting_flush_everything(
    offer, partner, transactional_db
):
    now = timezone.now()
    fields = {**dict.fromkeys(click_buffer.FIELDS, ""), "ip": None}
    count = 2 * click_buffer.FLUSH_BATCH + 5
    for i in range(count):
        assert click_buffer.add(f"{i:024x}", offer.pk, partner.pk, now, fields)
    assert (
        click_buffer.flush(wait=False, limit=click_buffer.FLUSH_BATCH) == click_buffer.FLUSH_BATCH
    )
    assert click_buffer.pending() == count - click_buffer.FLUSH_BATCH
    # A postback waiting for its click: everything appended so far, whatever the limit.
    assert click_buffer.flush(limit=1) == count - click_buffer.FLUSH_BATCH
    assert Click.objects.count() == count
    assert click_buffer.pending() == 0


def test_without_redis_a_click_is_stored_in_its_request(client, offer, partner, db, monkeypatch):
    # A client for a port nothing listens on: Redis is down.
    dead = redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
    monkeypatch.setattr(click_buffer._stream(), "_kept", KeptConnection(dead))
    first = _click(client, offer, partner)
    assert list(Click.objects.values_list("clickid", flat=True)) == [first]
    # Redis is back, but for a moment the clicks do not try it again: while it
    # is down, every click would wait for the connect timeout.
    monkeypatch.undo()
    second = _click(client, offer, partner)
    assert set(Click.objects.values_list("clickid", flat=True)) == {first, second}
    assert click_buffer.pending() == 0
    click_buffer._blocked_until = 0.0  # the moment has passed
    _click(client, offer, partner)
    assert click_buffer.pending() == 1


def test_a_connection_redis_dropped_is_replaced_in_the_same_click(client, offer, partner, db):
    stream = click_buffer._stream()
    first = _click(client, offer, partner)
    # Redis closes the click path's kept connection (a restart, an idle timeout).
    conn = stream._kept._local.conn
    conn.send_command("CLIENT", "ID")
    stream.client.execute_command("CLIENT", "KILL", "ID", conn.read_response())
    second = _click(client, offer, partner)
    # The click was appended on a new connection: buffered, no fallback, no backoff.
    assert click_buffer._blocked_until == 0.0
    assert not Click.objects.exists()
    assert len(_stream_ids()) == 2
    assert click_buffer.flush() == 2
    assert set(Click.objects.values_list("clickid", flat=True)) == {first, second}


def test_while_the_database_is_away_clicks_on_known_offers_are_still_taken(
    client, offer, partner, transactional_db, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    first = _click(client, offer, partner)
    time_machine.shift(settings.CLICK_TARGET_TTL + 1)  # the remembered answer is old
    with _database_away():
        second = _click(client, offer, partner)
    assert click_buffer.flush() == 2
    assert set(Click.objects.values_list("clickid", flat=True)) == {first, second}


def test_a_remembered_answer_older_than_the_stale_limit_is_not_used(
    client, offer, partner, transactional_db, time_machine, settings
):
    time_machine.move_to(timezone.now(), tick=False)
    _click(client, offer, partner)
    time_machine.shift(settings.CLICK_TARGET_STALE_MAX + 1)
    with _database_away(), pytest.raises(OperationalError):
        client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert click_buffer.pending() == 1


def test_a_postback_for_a_click_still_in_the_buffer_is_accepted(client, process, offer, partner):
    clickid = _click(client, offer, partner)
    assert not Click.objects.exists()
    # No beat runs here: the check finds the click by flushing the buffer.
    row = process(clickid=clickid, action_id="B-1")
    assert (row.state, row.error) == ("accepted", "")
    assert Conversion.objects.get().click == clickid


def test_an_unknown_clickid_is_still_not_found(process):
    row = process(clickid="d" * 24)
    assert (row.state, row.error) == ("rejected", "Click not found")


def test_a_change_saved_here_applies_to_the_next_click(client, offer, partner, db, settings):
    settings.CLICK_TARGET_TTL = 3600
    _click(client, offer, partner)
    offer.status = Offer.Status.PAUSED
    offer.trafficback_url = "https://tb.example.com/"
    offer.save()
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response["Location"] == "https://tb.example.com/"


def test_a_change_made_elsewhere_applies_within_the_ttl(
    client, offer, partner, db, settings, time_machine
):
    settings.CLICK_TARGET_TTL = 1.0
    time_machine.move_to(timezone.now(), tick=False)
    _click(client, offer, partner)
    # An update that sends no signal here stands for a change made by another process.
    Offer.objects.filter(pk=offer.pk).update(
        status=Offer.Status.PAUSED, trafficback_url="https://tb.example.com/"
    )
    time_machine.shift(0.9)
    # Within the TTL the remembered answer is used...
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response["Location"].startswith("https://land.example.com/")
    # ...and once it has passed the database is asked again.
    time_machine.shift(0.2)
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response["Location"] == "https://tb.example.com/"
    assert clicks.target(offer.pk, partner.pk).may_run is False
