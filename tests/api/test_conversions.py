"""Conversions through the API: read, filter, status changes, resending partner postbacks."""

from datetime import UTC, datetime

import pytest

from conversions.models import Conversion, PostbackDelivery


def test_conversion_shows_clickid_and_goal_value(manager_api, make_conversion, click):
    conversion = make_conversion(goal="reg", action_id="order-1", status="approved")
    body = manager_api.get(f"/api/v1/conversions/{conversion.pk}/").json()
    assert body["click"] == click.clickid
    assert body["goal"] == "reg"
    assert (body["status"], body["action_id"], body["payout"]) == ("approved", "order-1", "2.0000")
    assert body["offer"] == click.offer_id
    assert body["partner"] == click.partner_id


def _ids(client, **params) -> list[int]:
    response = client.get("/api/v1/conversions/", params)
    assert response.status_code == 200, response.json()
    return sorted(row["id"] for row in response.json()["results"])


def test_conversions_filter_by_each_field(
    manager_api, make_conversion, make_click, make_offer, partner
):
    from partners.models import Partner

    other_offer = make_offer(title="Other")
    other_partner = Partner.objects.create(name="Other partner")
    a = make_conversion(status="approved", goal="1", action_id="A")
    b = make_conversion(status="declined", goal="sale", action_id="B", reason="Cap is reached")
    c = make_conversion(
        click=make_click(offer=other_offer, partner=other_partner),
        offer=other_offer,
        partner=other_partner,
        status="pending",
        goal="1",
    )
    assert _ids(manager_api, status="declined") == [b.pk]
    assert _ids(manager_api, offer=other_offer.pk) == [c.pk]
    assert _ids(manager_api, partner=partner.pk) == [a.pk, b.pk]
    assert _ids(manager_api, click=c.click) == [c.pk]
    assert _ids(manager_api, goal="SALE") == [b.pk]
    assert _ids(manager_api, action_id="A") == [a.pk]
    assert _ids(manager_api, status="approved", partner=other_partner.pk) == []


def test_conversions_filter_by_created_at_range(manager_api, make_conversion, make_click):
    old = make_conversion(action_id="old", created_at=datetime(2026, 1, 5, tzinfo=UTC))
    new = make_conversion(
        action_id="new", click=make_click(), created_at=datetime(2026, 3, 5, tzinfo=UTC)
    )
    assert _ids(manager_api, created_at_after="2026-02-01T00:00:00Z") == [new.pk]
    assert _ids(manager_api, created_at_before="2026-02-01T00:00:00Z") == [old.pk]
    assert _ids(
        manager_api,
        created_at_after="2026-01-01T00:00:00Z",
        created_at_before="2026-12-31T00:00:00Z",
    ) == [old.pk, new.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "paid"}, "status"),
        ({"created_at_after": "yesterday"}, "created_at"),
        ({"offer": "abc"}, "offer"),
    ],
)
def test_bad_conversion_filter_is_a_400(manager_api, db, params, field):
    response = manager_api.get("/api/v1/conversions/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_manager_approves_a_pending_conversion_and_partner_postback_fires(
    manager_api, make_conversion, partner_postback
):
    conversion = make_conversion(status="pending")
    response = manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"status": "approved"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["reason"]) == ("approved", "")
    [sent] = PostbackDelivery.objects.filter(conversion=conversion)
    assert sent.status == "approved"
    assert sent.url.endswith(f"c={conversion.click}&s=1")


def test_manager_decline_gets_the_manager_reason(manager_api, make_conversion, partner_postback):
    conversion = make_conversion(status="approved")
    response = manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/",
        {"status": "declined", "reason": "fraud, says the advertiser"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["reason"] == "Rejected by a manager"
    conversion.refresh_from_db()
    assert (conversion.status, conversion.reason) == ("declined", "Rejected by a manager")
    assert PostbackDelivery.objects.get(conversion=conversion).url.endswith("&s=3")


def test_every_status_change_fires_partner_postbacks(
    manager_api, make_conversion, partner_postback
):
    conversion = make_conversion(status="pending")
    for new_status in ("approved", "declined", "pending"):
        response = manager_api.patch(
            f"/api/v1/conversions/{conversion.pk}/", {"status": new_status}, format="json"
        )
        assert response.status_code == 200
    sent = PostbackDelivery.objects.filter(conversion=conversion).order_by("event")
    assert [row.status for row in sent] == ["approved", "declined", "pending"]


def test_approved_conversion_can_be_put_on_hold_by_a_manager(
    manager_api, make_conversion, partner_postback
):
    conversion = make_conversion(status="approved")
    response = manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"status": "hold"}, format="json"
    )
    assert response.status_code == 200
    conversion.refresh_from_db()
    assert conversion.status == "hold"
    assert conversion.hold_until is not None
    assert [row.status for row in PostbackDelivery.objects.filter(conversion=conversion)] == [
        "hold"
    ]


def test_unknown_conversion_status_is_a_400(manager_api, make_conversion):
    conversion = make_conversion()
    response = manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"status": "paid"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"status": ['"paid" is not a valid choice.']}


def test_reason_alone_is_a_note_and_fires_nothing(manager_api, make_conversion, partner_postback):
    conversion = make_conversion(status="pending")
    response = manager_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"reason": "Waiting for the advertiser"}
    )
    assert response.status_code == 200
    assert response.json()["reason"] == "Waiting for the advertiser"
    assert response.json()["status"] == "pending"
    assert not PostbackDelivery.objects.exists()


def test_empty_patch_is_a_400(manager_api, make_conversion):
    conversion = make_conversion()
    response = manager_api.patch(f"/api/v1/conversions/{conversion.pk}/", {}, format="json")
    assert response.status_code == 400


def test_other_conversion_fields_are_not_writable(manager_api, make_conversion):
    conversion = make_conversion()
    put = manager_api.put(f"/api/v1/conversions/{conversion.pk}/", {"status": "approved"})
    assert put.status_code == 405
    assert manager_api.post("/api/v1/conversions/", {}).status_code == 405
    assert manager_api.delete(f"/api/v1/conversions/{conversion.pk}/").status_code == 405
    assert Conversion.objects.filter(pk=conversion.pk, status="pending").exists()


def test_requeue_resends_the_latest_partner_postbacks(
    support_api, make_conversion, partner_postback
):
    conversion = make_conversion(status="pending")
    from conversions.processing.statuses import change_status_by_manager

    change_status_by_manager(conversion.pk, "approved")
    response = support_api.post(f"/api/v1/conversions/{conversion.pk}/requeue/")
    assert response.status_code == 202
    assert response.json() == {"requeued": 1}
    attempts = PostbackDelivery.objects.filter(conversion=conversion).order_by("attempt")
    assert [(row.status, row.attempt) for row in attempts] == [("approved", 1), ("approved", 2)]


def test_requeue_of_a_conversion_without_deliveries_queues_nothing(support_api, make_conversion):
    conversion = make_conversion()
    response = support_api.post(f"/api/v1/conversions/{conversion.pk}/requeue/")
    assert (response.status_code, response.json()) == (202, {"requeued": 0})


def test_postback_deliveries_filter_by_conversion(
    support_api, make_conversion, make_click, partner_postback
):
    from conversions.processing.statuses import change_status_by_manager

    first = make_conversion(status="pending")
    second = make_conversion(status="pending", click=make_click())
    change_status_by_manager(first.pk, "approved")
    change_status_by_manager(second.pk, "declined")
    response = support_api.get("/api/v1/postback-deliveries/", {"conversion": second.pk})
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["conversion"], row["status"], row["state"]) == (second.pk, "declined", "pending")
    assert row["partner_postback"] == partner_postback.pk
    detail = support_api.get(f"/api/v1/postback-deliveries/{row['id']}/").json()
    assert detail["url"] == row["url"]


def test_created_at_with_an_offset_postgresql_cannot_store_is_converted(
    manager_api, make_conversion
):
    conversion = make_conversion(created_at=datetime(2026, 3, 5, tzinfo=UTC))
    assert _ids(manager_api, created_at_after="2026-03-05T20:00:00+23:30") == [conversion.pk]


def test_created_at_out_of_range_after_conversion_is_a_400(manager_api, db):
    response = manager_api.get(
        "/api/v1/conversions/", {"created_at_before": "0001-01-01T00:00+05:00"}
    )
    assert response.status_code == 400
    assert "created_at" in response.json()
