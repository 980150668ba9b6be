"""Advertisers, offers, goals, payouts, caps, partners, offer access, partner postbacks."""

from decimal import Decimal

import time_machine

from offers.models import Advertiser, Cap, CapCounter, Goal, Offer, Payout
from partners.models import OfferAccess, Partner, PartnerPostback


def test_advertiser_create_read_update_delete(manager_api):
    created = manager_api.post(
        "/api/v1/advertisers/",
        {"name": "Globex", "secure": "s3cret", "allowed_ips": ["203.0.113.0/24", "198.51.100.7"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert manager_api.get(f"/api/v1/advertisers/{pk}/").json() == {
        "id": pk,
        "name": "Globex",
        "secure": "s3cret",
        "allowed_ips": ["203.0.113.0/24", "198.51.100.7"],
        "status_map": {},
    }
    updated = manager_api.patch(f"/api/v1/advertisers/{pk}/", {"allowed_ips": []}, format="json")
    assert updated.status_code == 200
    assert Advertiser.objects.get(pk=pk).allowed_ips == []
    assert manager_api.delete(f"/api/v1/advertisers/{pk}/").status_code == 204
    assert not Advertiser.objects.filter(pk=pk).exists()


def test_advertisers_filter_by_name(manager_api, advertiser):
    Advertiser.objects.create(name="Other")
    results = manager_api.get("/api/v1/advertisers/", {"name__icontains": "acme"}).json()
    assert [row["name"] for row in results["results"]] == ["Acme Ads"]


def test_deleting_an_advertiser_with_offers_is_a_conflict(manager_api, offer):
    response = manager_api.delete(f"/api/v1/advertisers/{offer.advertiser_id}/")
    assert response.status_code == 409
    assert "offers still refer to it" in response.json()["detail"]


def test_offer_create_with_defaults_then_pause(manager_api, advertiser):
    response = manager_api.post(
        "/api/v1/offers/",
        {
            "title": "Game install",
            "advertiser": advertiser.pk,
            "url": "https://land.example.com/?c={clickid}&p={pid}",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "active"
    assert body["privacy"] == "public"
    assert body["currency"] == "USD"
    assert body["click_lifespan"] == 720
    assert body["default_status"] == "approved"
    paused = manager_api.patch(f"/api/v1/offers/{body['id']}/", {"status": "paused"}, format="json")
    assert paused.json()["status"] == "paused"
    assert Offer.objects.get(pk=body["id"]).status == "paused"


def test_offer_full_update_with_put(manager_api, offer):
    body = manager_api.get(f"/api/v1/offers/{offer.pk}/").json()
    body.update(title="Renamed", hold_period=48)
    response = manager_api.put(f"/api/v1/offers/{offer.pk}/", body, format="json")
    assert response.status_code == 200, response.json()
    offer.refresh_from_db()
    assert (offer.title, offer.hold_period) == ("Renamed", 48)


def test_offers_filter_by_status_privacy_and_advertiser(manager_api, make_offer, advertiser):
    make_offer(title="Live")
    make_offer(title="Stopped", status="paused")
    make_offer(title="Closed", privacy="private")
    other = make_offer(title="Elsewhere", advertiser=Advertiser.objects.create(name="B"))

    def titles(**params) -> set[str]:
        return {r["title"] for r in manager_api.get("/api/v1/offers/", params).json()["results"]}

    assert titles(status="paused") == {"Stopped"}
    assert titles(privacy="private") == {"Closed"}
    assert titles(advertiser=other.advertiser_id) == {"Elsewhere"}
    assert titles(title="live") == {"Live"}


def test_goal_create_filter_and_rename(manager_api, offer, make_offer):
    response = manager_api.post(
        "/api/v1/goals/", {"offer": offer.pk, "value": "reg", "title": "Registration"}
    )
    assert response.status_code == 201, response.json()
    Goal.objects.create(offer=make_offer(), value="sale")
    listed = manager_api.get("/api/v1/goals/", {"offer": offer.pk}).json()
    assert sorted(row["value"] for row in listed["results"]) == ["1", "reg"]
    renamed = manager_api.patch(f"/api/v1/goals/{response.json()['id']}/", {"title": "Sign-up"})
    assert renamed.json()["title"] == "Sign-up"


def test_payout_create_read_filter(manager_api, offer, partner):
    goal = offer.goals.get()
    response = manager_api.post(
        "/api/v1/payouts/",
        {
            "offer": offer.pk,
            "goal": goal.pk,
            "partner": partner.pk,
            "country": "DE",
            "type": "percent",
            "revenue": "30",
            "payout": "20.5",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["payout"] == "20.5000"
    personal = manager_api.get("/api/v1/payouts/", {"partner": partner.pk}).json()
    assert [row["country"] for row in personal["results"]] == ["DE"]
    assert manager_api.get("/api/v1/payouts/", {"offer": offer.pk}).json()["count"] == 2


def test_cap_create_shows_usage_and_filters(manager_api, offer):
    response = manager_api.post(
        "/api/v1/caps/",
        {"offer": offer.pk, "period": "day", "kind": "conversions", "limit": "100"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["overcap_status"], body["used"]) == ("declined", "0.0000")
    Cap.objects.create(offer=offer, period="month", kind="payout", limit=Decimal(500))
    monthly = manager_api.get("/api/v1/caps/", {"period": "month"}).json()
    assert [row["kind"] for row in monthly["results"]] == ["payout"]
    raised = manager_api.patch(f"/api/v1/caps/{body['id']}/", {"limit": "150"}, format="json")
    assert raised.json()["limit"] == "150.0000"


def test_partner_create_ban_and_filter(manager_api):
    response = manager_api.post("/api/v1/partners/", {"name": "Traffic Co"})
    assert response.status_code == 201
    pk = response.json()["id"]
    Partner.objects.create(name="Another")
    manager_api.patch(f"/api/v1/partners/{pk}/", {"status": "banned"})
    banned = manager_api.get("/api/v1/partners/", {"status": "banned"}).json()
    assert [row["name"] for row in banned["results"]] == ["Traffic Co"]


def test_offer_access_grant_list_and_revoke(manager_api, make_offer, partner):
    private = make_offer(title="Private", privacy="private")
    response = manager_api.post(
        "/api/v1/offer-access/", {"offer": private.pk, "partner": partner.pk}
    )
    assert response.status_code == 201, response.json()
    listed = manager_api.get("/api/v1/offer-access/", {"partner": partner.pk}).json()
    assert [row["offer"] for row in listed["results"]] == [private.pk]
    assert manager_api.delete(f"/api/v1/offer-access/{response.json()['id']}/").status_code == 204
    assert not OfferAccess.objects.exists()


def test_partner_postback_create_filter_disable(manager_api, offer, partner):
    response = manager_api.post(
        "/api/v1/partner-postbacks/",
        {
            "partner": partner.pk,
            "offer": offer.pk,
            "url": "https://t.example.com/?c={clickid}&s={status}&p={sum}",
            "method": "POST",
            "statuses": ["approved", "declined"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["enabled"], body["consecutive_failures"]) == (True, 0)
    PartnerPostback.objects.create(partner=partner, url="https://global.example.com/")
    scoped = manager_api.get("/api/v1/partner-postbacks/", {"offer": offer.pk}).json()
    assert [row["id"] for row in scoped["results"]] == [body["id"]]
    manager_api.patch(f"/api/v1/partner-postbacks/{body['id']}/", {"enabled": False}, format="json")
    disabled = manager_api.get("/api/v1/partner-postbacks/", {"enabled": "false"}).json()
    assert [row["id"] for row in disabled["results"]] == [body["id"]]


def test_lists_are_paginated(manager_api, advertiser):
    Advertiser.objects.bulk_create(Advertiser(name=f"A{i:03}") for i in range(60))
    first = manager_api.get("/api/v1/advertisers/").json()
    assert set(first) == {"count", "next", "previous", "results"}
    assert (first["count"], len(first["results"]), first["previous"]) == (61, 50, None)
    second = manager_api.get(first["next"]).json()
    assert len(second["results"]) == 11
    assert second["next"] is None


def test_unknown_ids_are_404(manager_api, db):
    assert manager_api.get("/api/v1/offers/999999/").status_code == 404
    assert manager_api.get("/api/v1/payouts/99999999999999999999999/").status_code == 404
    assert Payout.objects.count() == 0


def test_caps_show_what_they_used_in_their_current_period(
    manager_api, offer, django_assert_max_num_queries
):
    daily = Cap.objects.create(offer=offer, period="day", limit=10)
    monthly = Cap.objects.create(offer=offer, period="month", kind="payout", limit=500)
    ever = Cap.objects.create(offer=offer, period="all", limit=1000)
    CapCounter.objects.create(cap=daily, period_key="2026-05-19", used=7)
    CapCounter.objects.create(cap=daily, period_key="2026-05-20", used=3)
    CapCounter.objects.create(cap=monthly, period_key="2026-05", used=Decimal("42.5"))
    CapCounter.objects.filter(cap=ever, period_key="all").update(used=99)
    with time_machine.travel("2026-05-20 12:00Z", tick=False):
        with django_assert_max_num_queries(6):
            listed = manager_api.get("/api/v1/caps/", {"offer": offer.pk}).json()
        used = {row["id"]: row["used"] for row in listed["results"]}
        assert used == {daily.pk: "3.0000", monthly.pk: "42.5000", ever.pk: "99.0000"}
        assert manager_api.get(f"/api/v1/caps/{daily.pk}/").json()["used"] == "3.0000"
        patched = manager_api.patch(f"/api/v1/caps/{daily.pk}/", {"limit": "20"}).json()
        assert patched["used"] == "3.0000"
