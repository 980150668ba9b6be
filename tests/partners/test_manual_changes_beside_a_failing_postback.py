"""A manager's changes notify each partner postback once per change, beside one that fails.

DESIGN.md "Manual status changes": the partner postbacks of the new status fire
once per applied change. Here the offer's postback for declines answers, and a
global postback for declines answers 404 until it is disabled after repeated
failures: its failures, its disabling and the deliveries racing with them must
not take, double or hold back any of the working postback's deliveries.
"""

import random

import pytest
from django.apps import apps
from django.db import connection

from conversions.delivery.deliveries import attempt
from conversions.models import PostbackDelivery
from conversions.processing.statuses import change_status_by_manager
from partners.models import PartnerPostback

from ..conftest import run_concurrently, wait_for

ON_POSTGRES = connection.vendor == "postgresql"
DISABLE_AFTER = 3


@pytest.fixture
def two_postbacks(httpserver, make_postback, offer, settings):
    """(working, failing): the offer's postback for declines, a global one that 404s."""
    settings.PARTNER_POSTBACK_DISABLE_AFTER = DISABLE_AFTER
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/gone").respond_with_data("no such tracker", status=404)
    working = make_postback(
        path="/ok", query="?c={clickid}&s={status}", offer=offer, statuses=["declined"]
    )
    failing = make_postback(path="/gone", query="?c={clickid}", statuses=["declined"])
    return working, failing


def send_pending() -> None:
    """Send what is pending in this thread (first attempts: a 404 is not retried)."""
    for pk in PostbackDelivery.objects.filter(state="pending").values_list("pk", flat=True):
        attempt(pk)


def manager_declines(conversion_id: int) -> list[tuple[str, int]]:
    """The history's manager changes into declined: (status, pgh_id), in order."""
    ConversionEvent = apps.get_model("conversions", "ConversionEvent")
    return list(
        ConversionEvent.objects.filter(
            pgh_obj_id=conversion_id, pgh_context__metadata__source="manager", status="declined"
        )
        .order_by("pgh_id")
        .values_list("status", "pgh_id")
    )


def requests_to(httpserver, path: str) -> list[dict]:
    return [r.args.to_dict() for r, _ in httpserver.log if r.path == path]


@pytest.mark.django_db
def test_each_decline_reaches_the_working_postback_once_while_the_other_is_disabled(
    httpserver, two_postbacks, make_conversion
):
    working, failing = two_postbacks
    conversion = make_conversion(status="approved")
    declines = 0
    for _ in range(2 * DISABLE_AFTER):
        for status in ("declined", "approved"):
            _, changed = change_status_by_manager(conversion.pk, status, notify=True)
            assert changed
            declines += status == "declined"
            send_pending()

    failing.refresh_from_db()
    assert failing.auto_disabled
    rows = PostbackDelivery.objects.filter(partner_postback=working).order_by("event")
    # One first attempt per change to declined, each its own event, each delivered once.
    assert [(r.status, r.attempt, r.state) for r in rows] == [
        ("declined", 1, "delivered")
    ] * declines
    assert len({r.event for r in rows}) == declines
    assert len(requests_to(httpserver, "/ok")) == declines
    if ON_POSTGRES:  # the history is written by PostgreSQL triggers
        assert len(manager_declines(conversion.pk)) == declines
    # The failing one was called until it was disabled, and not after.
    assert len(requests_to(httpserver, "/gone")) == DISABLE_AFTER
    assert PostbackDelivery.objects.filter(partner_postback=failing).count() == DISABLE_AFTER


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent sessions: PostgreSQL")
def test_concurrent_changes_delivered_by_the_worker_notify_once_per_decline(
    worker, httpserver, two_postbacks, make_conversion
):
    """Managers change the conversion at once while the worker delivers, fails and
    disables the global postback: the working one still gets one call per decline."""
    working, failing = two_postbacks
    conversion = make_conversion(status="approved")

    def manager(i: int) -> list[str]:
        rng, applied = random.Random(i), []
        for _ in range(12):
            status = rng.choice(["declined", "approved", "hold", "pending"])
            _, changed = change_status_by_manager(conversion.pk, status, notify=True)
            if changed:
                applied.append(status)
        return applied

    applied = [s for changes in run_concurrently(4, manager) for s in changes]
    declines = applied.count("declined")
    assert declines == len(manager_declines(conversion.pk)) > DISABLE_AFTER
    wait_for(
        lambda: not PostbackDelivery.objects.filter(state="pending").exists(),
        what="every delivery sent",
    )

    rows = PostbackDelivery.objects.filter(partner_postback=working)
    assert (
        sorted((r.status, r.attempt, r.state) for r in rows)
        == [("declined", 1, "delivered")] * declines
    )
    assert len({r.event for r in rows}) == declines
    assert len(requests_to(httpserver, "/ok")) == declines
    failing.refresh_from_db()
    assert failing.auto_disabled
    # Sent until disabled: the calls made are the failures counted; the rest not sent.
    gone = PostbackDelivery.objects.filter(partner_postback=failing)
    called = gone.exclude(error="Not sent: the partner postback is disabled")
    assert len(requests_to(httpserver, "/gone")) == called.count() >= DISABLE_AFTER
    assert gone.count() <= declines
    assert PartnerPostback.objects.get(pk=working.pk).enabled
