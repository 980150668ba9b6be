"""Exactly once in effect: races, duplicates and faults lose nothing and double nothing."""

from contextlib import contextmanager

import pytest
from django.db import connection
from django.utils import timezone

from affise_proj.celery import app
from conversions.intake import spool
from conversions.models import Conversion, Postback
from conversions.processing import dispatch, settlement
from conversions.processing.checks import CHECKS
from offers.models import Cap, CapCounter

from ..conftest import run_concurrently, wait_settled

pytestmark = pytest.mark.django_db(transaction=True)


def received(**params) -> str:
    return Postback.objects.create(method="GET", ip="203.0.113.7", params=params).id


def checked(ids: list[str]) -> list[dict]:
    batch = settlement.load_batch(ids)
    return [check(batch) for check in CHECKS.values()]


def test_fifty_concurrent_postbacks_never_overspend_a_cap_of_ten(make_click, offer):
    cap = Cap.objects.create(offer=offer, limit=10)
    ids = [received(clickid=make_click().clickid) for _ in range(50)]
    for pid in ids:
        assert Postback.objects.filter(pk=pid).claim()
    # Checks first (they all see an empty cap), then 50 callbacks racing.
    verdicts = {pid: checked([pid]) for pid in ids}
    run_concurrently(50, lambda i: settlement.settle(verdicts[ids[i]], [ids[i]]))
    statuses = list(Conversion.objects.values_list("status", flat=True))
    assert len(statuses) == 50
    assert statuses.count("approved") == 10
    assert Conversion.objects.filter(status="declined", reason="Cap is reached").count() == 40
    assert CapCounter.objects.get(cap=cap).used == 10


def test_same_postback_settled_twice_at_once_yields_one_conversion(click):
    pid = received(clickid=click.clickid)
    Postback.objects.filter(pk=pid).claim()
    results = checked([pid])
    outcomes = run_concurrently(8, lambda i: settlement.settle(results, [pid]))
    assert sorted(o[pid] for o in outcomes) == ["accepted"] + ["skipped"] * 7
    assert Conversion.objects.count() == 1


def test_different_postbacks_for_one_click_at_once_yield_one_conversion(click):
    ids = [received(clickid=click.clickid) for _ in range(10)]
    for pid in ids:
        Postback.objects.filter(pk=pid).claim()
    verdicts = {pid: checked([pid]) for pid in ids}
    run_concurrently(10, lambda i: settlement.settle(verdicts[ids[i]], [ids[i]]))
    assert Conversion.objects.count() == 1
    errors = sorted(Postback.objects.values_list("error", flat=True))
    assert errors == [""] + ["Conversion exists"] * 9


def test_running_the_callback_twice_changes_nothing(worker, send, click, partner):
    from partners.models import PartnerPostback

    PartnerPostback.objects.create(partner=partner, url="http://127.0.0.1:9/pb?c={clickid}")
    row = wait_settled(send(clickid=click.clickid))
    before = (
        list(Postback.objects.values()),
        list(Conversion.objects.values()),
        row.conversion.deliveries.count(),
    )
    settlement.settle(checked([row.id]), [row.id])
    after = (
        list(Postback.objects.values()),
        list(Conversion.objects.values()),
        row.conversion.deliveries.count(),
    )
    assert after == before


@contextmanager
def broker_down():
    """Publishing fails for real: Redis at a port nobody listens on, or a missing queue folder."""

    # The settings' own dict, changed in place: Celery before 5.7 reads the
    # CELERY_-prefixed Django setting before a value assigned to app.conf.
    options = app.conf.broker_transport_options

    def reconnect(url, folder):
        # Drop the cached publishing pools; the next publish connects anew.
        app.conf.broker_write_url = url
        if folder is not None:
            options["data_folder_out"] = folder
        app._pool = None
        app.amqp._producer_pool = None

    saved = (app.conf.broker_write_url, options.get("data_folder_out"))
    if app.conf.broker_url.startswith("filesystem"):
        reconnect(saved[0], "/nonexistent/broker-queue")
    else:
        reconnect("redis://127.0.0.1:9/0", None)
    try:
        yield
    finally:
        reconnect(*saved)
        dispatch._publish_blocked_until = 0.0


def test_broker_down_at_accept_still_answers_and_the_sweeper_delivers(
    worker, client, click, settings
):
    with broker_down():
        response = client.get("/postback", {"clickid": click.clickid})
        assert response.status_code == 200 and response.json()["status"] == 1
        pid = response.json()["id"]
        assert Postback.objects.get(pk=pid).state == "received"
        # A sweep while the broker is still down hands the batch back.
        settings.POSTBACK_SWEEP_AFTER = 0
        dispatch.sweep()
        assert Postback.objects.get(pk=pid).state == "received"
    dispatch.sweep()
    assert wait_settled(pid).state == "accepted"
    assert Conversion.objects.count() == 1


def test_healthz_is_503_while_the_broker_is_down(client):
    with broker_down():
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("error")
    assert client.get("/healthz").status_code == 200


def test_healthz_is_503_while_the_database_is_down(client):
    with database_down():
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"].startswith("error")


def test_postback_abandoned_by_a_dead_worker_is_picked_up_by_the_sweeper(worker, click, settings):
    pid = received(clickid=click.clickid)
    # Claimed, then the worker died before its chord was published or finished.
    assert dispatch.claim(10) == [pid]
    settings.POSTBACK_STALE_AFTER = 0
    assert dispatch.sweep()["stale"] == 1
    row = wait_settled(pid)
    assert (row.state, row.attempts) == ("accepted", 2)
    assert Conversion.objects.count() == 1


def test_postback_that_never_finishes_fails_after_its_attempts(click, settings):
    pid = received(clickid=click.clickid)
    settings.POSTBACK_STALE_AFTER = 0
    settings.POSTBACK_MAX_ATTEMPTS = 2
    Postback.objects.filter(pk=pid).update(
        state="processing", attempts=2, dispatched_at=timezone.now()
    )
    assert dispatch.sweep()["failed"] == 1
    row = Postback.objects.get(pk=pid)
    assert (row.state, row.error) == ("failed", "Processing did not finish after 2 attempts")


def test_failed_batch_goes_back_for_a_retry_then_fails_for_good(click, settings):
    settings.POSTBACK_MAX_ATTEMPTS = 2
    pid = received(clickid=click.clickid)
    Postback.objects.filter(pk=pid).claim()
    settlement.record_failure([pid], "OperationalError: server closed the connection")
    row = Postback.objects.get(pk=pid)
    assert (row.state, row.attempts) == ("received", 1)
    Postback.objects.filter(pk=pid).claim()
    settlement.record_failure([pid], "OperationalError: server closed the connection")
    row = Postback.objects.get(pk=pid)
    assert (row.state, row.error) == ("failed", "OperationalError: server closed the connection")


@contextmanager
def database_down():
    """This thread (the web request) loses its database: the next query fails to connect.

    Only this thread's connection is pointed elsewhere; the worker's threads
    keep theirs (they share the original settings dict).
    """
    saved = connection.settings_dict
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict = {**saved, "NAME": "/nonexistent-dir/db.sqlite3"}
    else:
        connection.settings_dict = {**saved, "PORT": "9"}
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict = saved


def test_database_down_at_accept_spools_then_imports_with_the_same_id(worker, client, click):
    with database_down():
        response = client.get("/postback", {"clickid": click.clickid, "action_id": "SP-1"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 1
    assert not Postback.objects.filter(pk=body["id"]).exists()
    assert spool.pending() == 1
    assert dispatch.sweep()["imported"] == 1
    assert spool.pending() == 0
    row = wait_settled(body["id"])
    assert (row.state, row.action_id) == ("accepted", "SP-1")
    assert Conversion.objects.get().action_id == "SP-1"


def test_importing_a_spool_twice_adds_nothing(click):
    from conversions.models import new_postback_id

    row = Postback(id=new_postback_id(), method="GET", params={"clickid": click.clickid})
    spool.append(row)
    assert spool.import_spool() == 1
    spool.append(row)  # e.g. a crash after the insert, before the file was removed
    spool.import_spool()
    assert Postback.objects.filter(pk=row.id).count() == 1


def test_requeue_processes_a_fixed_postback_again(worker, send, click, offer):
    offer.secure = "s"
    offer.save()
    row = wait_settled(send(clickid=click.clickid))
    assert row.error == "Access denied"
    offer.secure = ""
    offer.save()
    assert dispatch.requeue([row.id]) == 1
    row = wait_settled(row.id)
    assert (row.state, row.error, row.attempts) == ("accepted", "", 1)
    # Accepted postbacks are not re-queued.
    assert dispatch.requeue([row.id]) == 0
