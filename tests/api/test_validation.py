"""Every bad input is a 400 that names the field, never a 500."""

import pytest

from offers.models import Advertiser, Cap, Goal, Offer, Payout
from partners.models import OfferAccess, PartnerPostback


def test_bad_cidr_in_advertiser_allowed_ips(manager_api, db):
    response = manager_api.post(
        "/api/v1/advertisers/",
        {"name": "Bad", "allowed_ips": ["10.0.0.0/33"]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"allowed_ips": ["10.0.0.0/33 is not an IP address or CIDR network."]}
    assert not Advertiser.objects.filter(name="Bad").exists()


def test_bad_ip_in_offer_allowed_ips_on_update(manager_api, offer):
    response = manager_api.patch(
        f"/api/v1/offers/{offer.pk}/", {"allowed_ips": ["1.2.3.4", "not-an-ip"]}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"allowed_ips": ["not-an-ip is not an IP address or CIDR network."]}
    offer.refresh_from_db()
    assert offer.allowed_ips == []


def test_allowed_ips_must_be_a_list(manager_api, db):
    response = manager_api.post(
        "/api/v1/advertisers/", {"name": "Bad", "allowed_ips": "1.2.3.4"}, format="json"
    )
    assert response.status_code == 400
    assert "allowed_ips" in response.json()


@pytest.mark.parametrize("limit", ["-5", "0"])
def test_cap_limit_must_be_positive(manager_api, offer, limit):
    response = manager_api.post("/api/v1/caps/", {"offer": offer.pk, "limit": limit}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["limit"]
    assert not Cap.objects.exists()


def test_negative_payout_amount(manager_api, offer):
    goal = offer.goals.get()
    response = manager_api.post(
        "/api/v1/payouts/",
        {"offer": offer.pk, "goal": goal.pk, "country": "US", "revenue": "-1", "payout": "1"},
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()) == ["revenue"]


def test_percent_payout_over_100(manager_api, offer):
    goal = offer.goals.get()
    response = manager_api.post(
        "/api/v1/payouts/",
        {
            "offer": offer.pk,
            "goal": goal.pk,
            "country": "US",
            "type": "percent",
            "revenue": "50",
            "payout": "120",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"payout": ["A percent payout is at most 100 (got 120)."]}


def test_switching_a_payout_to_percent_checks_its_amounts(manager_api, offer):
    payout = Payout.objects.get()
    payout.revenue = 300
    payout.save()
    response = manager_api.patch(f"/api/v1/payouts/{payout.pk}/", {"type": "percent"})
    assert response.status_code == 400
    assert response.json() == {"revenue": ["A percent revenue is at most 100 (got 300)."]}
    payout.refresh_from_db()
    assert payout.type == "fixed"


def test_second_general_payout_for_the_same_goal_and_country(manager_api, offer):
    goal = offer.goals.get()
    response = manager_api.post(
        "/api/v1/payouts/",
        {"offer": offer.pk, "goal": goal.pk, "revenue": "1", "payout": "1"},
        format="json",
    )
    assert response.status_code == 400
    assert "non_field_errors" in response.json()


def test_payout_goal_of_another_offer(manager_api, offer, make_offer):
    other_goal = Goal.objects.create(offer=make_offer(), value="sale")
    response = manager_api.post(
        "/api/v1/payouts/",
        {"offer": offer.pk, "goal": other_goal.pk, "revenue": "1", "payout": "1"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "goal": [f"Goal {other_goal.pk} belongs to offer {other_goal.offer_id}, not {offer.pk}."]
    }


@pytest.mark.parametrize(
    ("resource", "field", "value"),
    [
        ("offers", "status", "archived"),
        ("offers", "privacy", "secret"),
        ("offers", "default_status", "declined"),
        ("partners", "status", "sleeping"),
        ("caps", "period", "week"),
        ("caps", "kind", "clicks"),
        ("caps", "overcap_status", "hold"),
        ("payouts", "type", "share"),
        ("partner-postbacks", "method", "PUT"),
    ],
)
def test_unknown_status_or_choice(manager_api, offer, partner, resource, field, value):
    ids = {
        "offers": offer.pk,
        "partners": partner.pk,
        "caps": Cap.objects.create(offer=offer, limit=1).pk,
        "payouts": Payout.objects.get().pk,
        "partner-postbacks": PartnerPostback.objects.create(
            partner=partner, url="https://t.example.com/"
        ).pk,
    }
    response = manager_api.patch(f"/api/v1/{resource}/{ids[resource]}/", {field: value})
    assert response.status_code == 400
    assert response.json() == {field: [f'"{value}" is not a valid choice.']}


def test_unknown_status_in_partner_postback_statuses(manager_api, partner):
    response = manager_api.post(
        "/api/v1/partner-postbacks/",
        {"partner": partner.pk, "url": "https://t.example.com/", "statuses": ["approved", "paid"]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"statuses": {"1": ['"paid" is not a valid choice.']}}


def test_unknown_macro_in_partner_postback_url(manager_api, partner):
    response = manager_api.post(
        "/api/v1/partner-postbacks/",
        {"partner": partner.pk, "url": "https://t.example.com/?c={clickid}&x={payout}"},
        format="json",
    )
    assert response.status_code == 400
    [message] = response.json()["url"]
    assert message.startswith("Unknown macro(s): {payout}. Known: ")
    assert not PartnerPostback.objects.exists()


def test_unknown_macro_in_offer_url(manager_api, advertiser):
    response = manager_api.post(
        "/api/v1/offers/",
        {
            "title": "T",
            "advertiser": advertiser.pk,
            "url": "https://land.example.com/?c={clickid}",
            "trafficback_url": "https://tb.example.com/?g={goal}",
        },
        format="json",
    )
    assert response.status_code == 400
    assert list(response.json()) == ["trafficback_url"]
    assert "{goal}" in response.json()["trafficback_url"][0]
    assert not Offer.objects.filter(title="T").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("currency", "usd"),
        ("hold_period", 1441),
        ("click_lifespan", -1),
        ("url", "not a url"),
        ("advertiser", 999999),
        ("title", ""),
    ],
)
def test_offer_field_errors(manager_api, offer, field, value):
    response = manager_api.patch(f"/api/v1/offers/{offer.pk}/", {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_goal_value_is_unique_per_offer_whatever_the_case(manager_api, offer):
    response = manager_api.post("/api/v1/goals/", {"offer": offer.pk, "value": "REG"})
    assert response.status_code == 201
    again = manager_api.post("/api/v1/goals/", {"offer": offer.pk, "value": "reg"})
    assert again.status_code == 400
    assert "non_field_errors" in again.json()
    assert offer.goals.count() == 2


def test_offer_access_granted_twice(manager_api, offer, partner):
    OfferAccess.objects.create(offer=offer, partner=partner)
    response = manager_api.post("/api/v1/offer-access/", {"offer": offer.pk, "partner": partner.pk})
    assert response.status_code == 400
    assert OfferAccess.objects.count() == 1


def test_partner_postback_goal_without_offer(manager_api, offer, partner):
    response = manager_api.post(
        "/api/v1/partner-postbacks/",
        {"partner": partner.pk, "goal": offer.goals.get().pk, "url": "https://t.example.com/"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"goal": ["A goal needs its offer: set offer too."]}


def test_null_byte_in_a_name(manager_api, db):
    response = manager_api.post("/api/v1/partners/", {"name": "a\x00b"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["name"]


def test_malformed_json_body(manager_api, db):
    response = manager_api.generic(
        "POST", "/api/v1/partners/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
