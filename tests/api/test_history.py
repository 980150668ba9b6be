"""History (DESIGN.md "Manual status changes"): who changed what, when and why.

Written by PostgreSQL triggers (affise_proj/history.py): on SQLite there is none.
"""

import pytest
from django.core.management import call_command
from django.db import connection

from affise_proj.history import history_of
from conversions.processing import statuses
from offers.models import Cap, Offer
from partners.models import PartnerPostback

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="history is written by PostgreSQL triggers",
)


def history(api, conversion):
    response = api.get(f"/api/v1/conversions/{conversion.pk}/history/")
    assert response.status_code == 200
    return response.json()


def test_a_managers_change_is_in_the_history_with_who_and_why(manager_api, make_conversion):
    conversion = make_conversion(status="pending")
    manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/",
        {"status": "declined", "comment": "Advertiser reports fraud"},
        format="json",
    )
    created, declined = history(manager_api, conversion)
    assert created["source"] == "system"  # made directly here, outside any pipeline
    assert created["changes"]["status"] == [None, "pending"]
    assert declined["user"] == "manager"
    assert declined["source"] == "manager"
    assert declined["comment"] == "Advertiser reports fraud"
    assert declined["changes"] == {
        "status": ["pending", "declined"],
        "reason": ["", "Rejected by a manager"],
    }
    assert created["at"] <= declined["at"]


def test_the_system_releasing_a_hold_is_in_the_history_without_a_user(
    manager_api, make_conversion, time_machine
):
    time_machine.move_to("2026-11-01 12:00:00Z", tick=False)
    conversion = make_conversion(status="hold", hold_until="2026-11-02T00:00:00Z")
    time_machine.move_to("2026-11-03 00:00:00Z", tick=False)
    assert statuses.approve_holds() == 1
    released = history(manager_api, conversion)[-1]
    assert released["source"] == "system"
    assert released["user"] is None
    assert released["changes"]["status"] == ["hold", "approved"]


def test_history_is_oldest_first_and_a_repeated_status_adds_nothing(manager_api, make_conversion):
    conversion = make_conversion(status="pending")
    for status in ("approved", "approved", "hold", "declined"):
        statuses.change_status_by_manager(conversion.pk, status)
    entries = history(manager_api, conversion)
    assert [e["changes"]["status"][1] for e in entries] == [
        "pending",
        "approved",
        "hold",
        "declined",
    ]


def test_history_needs_the_view_permission(bare_staff_api, make_conversion):
    conversion = make_conversion()
    response = bare_staff_api.get(f"/api/v1/conversions/{conversion.pk}/history/")
    assert response.status_code == 403


def test_configuration_changes_through_the_api_are_in_their_history_by_user(
    admin_api, offer, partner
):
    response = admin_api.patch(f"/api/v1/offers/{offer.pk}/", {"title": "Renamed"}, format="json")
    assert response.status_code == 200
    last = history_of(Offer.objects.get(pk=offer.pk))[-1]
    assert (last["user"], last["source"]) == ("root", "manager")
    assert last["changes"] == {"title": ["Main offer", "Renamed"]}


def test_the_systems_failure_count_is_not_in_a_partner_postbacks_history(partner):
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example.com/?s={status}")
    PartnerPostback.objects.filter(pk=pp.pk).update(consecutive_failures=3)
    # The system's failure count is not a manager's change: only the creation is there.
    assert [e["source"] for e in history_of(pp)] == ["system"]


def test_cap_deletion_is_in_its_history(admin_api, offer):
    cap = Cap.objects.create(offer=offer, limit=5)
    assert admin_api.delete(f"/api/v1/caps/{cap.pk}/").status_code == 204
    gone = history_of(cap)[-1]
    assert gone["source"] == "manager"
    assert gone["changes"]["limit"] == ["5", None]


def test_admin_pages_show_the_change_history(admin_client, offer):
    call_command("check")
    admin_client.post(
        "/admin/offers/cap/add/",
        {
            "offer": offer.pk,
            "period": "day",
            "kind": "conversions",
            "limit": "3",
            "overcap_status": "declined",
        },
    )
    cap = Cap.objects.get(offer=offer)
    page = admin_client.get(f"/admin/offers/cap/{cap.pk}/change/").content.decode()
    assert "Change history" in page
    assert "manager" in page
