"""Manual status changes (DESIGN.md "Manual status changes"): any to any, a comment, notify or not."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from conversions.delivery import deliveries
from conversions.models import Conversion, PostbackDelivery
from conversions.processing import statuses
from offers.models import Cap, CapCounter
from partners.models import PartnerPostback

from ..conftest import run_concurrently, wait_for

STATUSES = ("approved", "pending", "declined", "hold")
ON_POSTGRES = connection.vendor == "postgresql"


def patch(api, conversion, **data):
    return api.patch(f"/api/v1/conversions/{conversion.pk}/", data, format="json")


@pytest.mark.parametrize("before", STATUSES)
@pytest.mark.parametrize("after", STATUSES)
def test_a_manager_changes_any_status_to_any_other(
    manager_api, make_conversion, partner_postback, before, after
):
    fields = {"hold_until": timezone.now()} if before == "hold" else {}
    conversion = make_conversion(status=before, **fields)
    response = patch(manager_api, conversion, status=after)
    assert response.status_code == 200, response.json()
    conversion.refresh_from_db()
    assert conversion.status == after
    if before != after:
        assert (conversion.reason == "Rejected by a manager") == (after == "declined")
    sent = list(
        PostbackDelivery.objects.filter(conversion=conversion).values_list("status", flat=True)
    )
    # The same status again is no change: no event, nothing sent.
    assert sent == ([] if before == after else [after])


def test_notify_partner_false_changes_the_status_and_sends_nothing(
    manager_api, make_conversion, partner_postback
):
    conversion = make_conversion(status="approved")
    response = patch(manager_api, conversion, status="declined", notify_partner=False)
    assert response.status_code == 200
    conversion.refresh_from_db()
    assert conversion.status == "declined"
    assert not PostbackDelivery.objects.exists()
    # A later change asked to notify fires for its own status.
    patch(manager_api, conversion, status="approved")
    assert list(PostbackDelivery.objects.values_list("status", flat=True)) == ["approved"]


def test_a_manual_approve_counts_against_a_full_cap_and_is_not_refused(
    manager_api, make_conversion, offer
):
    cap = Cap.objects.create(offer=offer, limit=Decimal(1))
    make_conversion(status="approved")  # fills the cap
    CapCounter.objects.update_or_create(
        cap=cap, period_key=timezone.now().date().isoformat(), defaults={"used": 1}
    )
    declined = make_conversion(status="declined", reason="Cap is reached", goal="2")
    response = patch(manager_api, declined, status="approved")
    assert response.status_code == 200
    declined.refresh_from_db()
    assert (declined.status, declined.reason) == ("approved", "")
    assert CapCounter.objects.get(cap=cap).used == 2


def test_a_bad_notify_partner_is_a_field_error(manager_api, make_conversion):
    conversion = make_conversion()
    response = patch(manager_api, conversion, status="approved", notify_partner="perhaps")
    assert response.status_code == 400
    assert "notify_partner" in response.json()
    conversion.refresh_from_db()
    assert conversion.status == "pending"


@pytest.fixture
def delivered_inline(partner, httpserver, settings):
    """Partner postbacks to a local receiver that answers 200. The test sends what is
    pending itself (``send_pending``), and waits for any a worker running elsewhere in
    the session took: nothing is left to write while the test's data is removed."""
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = True
    httpserver.expect_request("/pb").respond_with_data("ok")
    PartnerPostback.objects.create(partner=partner, url=httpserver.url_for("/pb") + "?s={status}")
    return httpserver


def send_pending() -> None:
    for pk in PostbackDelivery.objects.filter(state="pending").values_list("pk", flat=True):
        deliveries.attempt(pk)
    wait_for(lambda: not PostbackDelivery.objects.filter(state="pending").exists())


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent sessions: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_managers_approving_at_once_apply_one_change_and_notify_once(
    make_conversion, delivered_inline, django_user_model
):
    conversion = make_conversion(status="pending")
    users = [django_user_model.objects.create_user(f"manager{i}", is_staff=True) for i in (1, 2)]

    def change(i):
        return statuses.change_status_by_manager(
            conversion.pk, "approved", user=users[i], comment=f"by {i}"
        )[1]

    changed = run_concurrently(2, change)
    assert sorted(changed) == [False, True]
    # First attempts only: a worker running in this session may be retrying them.
    sent = PostbackDelivery.objects.filter(attempt=1).values_list("status", "event")
    assert list(sent) == [("approved", 2)]
    conversion.refresh_from_db()
    assert (conversion.status, conversion.version) == ("approved", 2)
    send_pending()
    assert [r.args["s"] for r, _ in delivered_inline.log] == ["1"]


@pytest.mark.skipif(not ON_POSTGRES, reason="row locks and concurrent sessions: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_different_changes_at_once_both_apply_in_turn_each_notified_once(
    make_conversion, delivered_inline
):
    conversion = make_conversion(status="approved")
    wanted = ["declined", "pending"]

    def change(i):
        with transaction.atomic():
            return statuses.change_status_by_manager(conversion.pk, wanted[i])[1]

    assert run_concurrently(2, change) == [True, True]
    conversion.refresh_from_db()
    sent = list(
        PostbackDelivery.objects.filter(attempt=1).order_by("event").values_list("status", "event")
    )
    # Each applied change is one event, sent once; the last applied is the status now.
    assert sorted(status for status, _ in sent) == sorted(wanted)
    assert [event for _, event in sent] == [2, 3]
    assert conversion.status == sent[-1][0]
    assert conversion.version == 3
    assert Conversion.objects.count() == 1
    # Each reached the partner once.
    send_pending()
    assert sorted(r.args["s"] for r, _ in delivered_inline.log) == ["2", "3"]
