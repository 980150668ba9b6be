"""Retention and ``manage.py purge`` on whichever database runs the suite (SQLite or PostgreSQL)."""

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from conversions.lifecycle import partitions, retention
from conversions.models import Click, Conversion, Postback, new_clickid

pytestmark = pytest.mark.django_db


def click_at(offer, partner, at, **fields) -> Click:
    return Click.objects.create(
        clickid=new_clickid(at), offer=offer, partner=partner, created_at=at, **fields
    )


def postback_at(at, state="accepted") -> Postback:
    return Postback.objects.create(
        id=f"{int(at.timestamp() * 1000):012x}{secrets.token_hex(8)}",
        method="GET",
        params={},
        state=state,
        received_at=at,
    )


def test_retention_removes_clicks_and_final_postbacks_older_than_their_days(
    offer, partner, settings
):
    settings.CLICK_RETENTION_DAYS, settings.POSTBACK_RETENTION_DAYS = 30, 60
    now = datetime.now(UTC)
    old_click = click_at(offer, partner, now - timedelta(days=31), sub1="a", country="FR")
    kept_click = click_at(offer, partner, now - timedelta(days=29))
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=old_click, status="approved"
    )
    gone = postback_at(now - timedelta(days=61))
    waiting = postback_at(now - timedelta(days=61, seconds=1), state="processing")
    kept = postback_at(now - timedelta(days=59))

    retention.apply_retention(now=now)

    assert list(Click.objects.values_list("pk", flat=True)) == [kept_click.pk]
    assert set(Postback.objects.values_list("pk", flat=True)) == {waiting.pk, kept.pk}
    assert not Postback.objects.filter(pk=gone.pk).exists()
    conversion.refresh_from_db()
    assert (conversion.click, conversion.sub1, conversion.country) == (old_click.pk, "a", "FR")
    assert conversion.click_at == old_click.created_at


def test_the_beat_task_runs_the_lifecycle(settings):
    from conversions.lifecycle.tasks import data_lifecycle

    assert "partitions_made" in data_lifecycle()


@pytest.mark.parametrize("bad", ["2026-13-01", "01/02/2026", "yesterday", "2026-1-1", ""])
def test_purge_refuses_a_wrong_date_and_removes_nothing(offer, partner, bad):
    click_at(offer, partner, datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("purge", "--before", bad)
    assert Click.objects.count() == 1


def test_purge_refuses_a_day_in_the_future_and_removes_nothing(offer, partner):
    click_at(offer, partner, datetime(2020, 1, 1, tzinfo=UTC))
    postback_at(datetime(2020, 1, 1, tzinfo=UTC))
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    with pytest.raises(CommandError, match="future"):
        call_command("purge", "--before", tomorrow.isoformat())
    assert (Click.objects.count(), Postback.objects.count()) == (1, 1)


def test_purge_removes_every_click_and_final_postback_before_the_day(offer, partner, capsys):
    now = datetime.now(UTC)
    today = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    if connection.vendor == "postgresql":
        # A day partition wholly before the day: dropped as a whole.
        with connection.cursor() as cursor:
            partitions.create(cursor, partitions.CLICKS, partitions.today() - 3)
    before = [
        click_at(offer, partner, today - timedelta(days=3, hours=-1)),
        click_at(offer, partner, today - timedelta(seconds=1)),
    ]
    after = click_at(offer, partner, today + timedelta(seconds=1))
    unfinished = postback_at(today - timedelta(days=2), state="received")
    postback_at(today - timedelta(days=2), state="rejected")
    recent = postback_at(today + timedelta(seconds=1))

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The command runs in a transaction of its own: the inserts above are checked now.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    call_command("purge", "--before", today.date().isoformat())

    assert list(Click.objects.values_list("pk", flat=True)) == [after.pk]
    assert not Click.objects.filter(pk__in=[c.pk for c in before]).exists()
    assert set(Postback.objects.values_list("pk", flat=True)) == {unfinished.pk, recent.pk}
    out = capsys.readouterr().out
    assert "Removed before" in out
    if connection.vendor == "postgresql":
        assert "1 click partitions" in out
