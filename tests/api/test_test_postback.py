"""POST /api/v1/offers/{id}/test-postback/: the pipeline's own checks and rules, nothing kept."""

from decimal import Decimal

import pytest
from django.utils import timezone

from conversions.intake import click_buffer
from conversions.models import (
    Click,
    Conversion,
    OfferStat,
    Postback,
    PostbackDelivery,
    SubStat,
    TrafficStat,
)
from offers.models import Cap, CapCounter
from partners.models import Partner, PartnerPostback

pytestmark = pytest.mark.django_db

SENDER = "?sender_ip=203.0.113.9"


def url_of(offer) -> str:
    return f"/api/v1/offers/{offer.pk}/test-postback/{SENDER}"


def snapshot() -> dict:
    """Everything a test postback must leave as it was."""
    return {
        "postbacks": list(Postback.objects.values_list("pk", "state")),
        "conversions": list(Conversion.objects.values_list("pk", "status", "payout", "version")),
        "clicks": Click.objects.count(),
        "counters": list(CapCounter.objects.values_list("cap_id", "period_key", "used")),
        "deliveries": PostbackDelivery.objects.count(),
        # The statistics' counters (kept by triggers on PostgreSQL).
        "stats": [model.objects.count() for model in (OfferStat, TrafficStat, SubStat)],
    }


@pytest.fixture
def tracker(partner) -> PartnerPostback:
    return PartnerPostback.objects.create(partner=partner, url="https://t.example/?c={clickid}")


def test_an_accepted_test_answers_the_money_and_keeps_nothing(
    support_api, offer, click, tracker, django_capture_on_commit_callbacks
):
    Cap.objects.create(offer=offer, limit=10)
    before = snapshot()
    with django_capture_on_commit_callbacks() as published:
        response = support_api.post(
            url_of(offer),
            {"clickid": click.clickid, "sum": "12.5", "action_id": "t-1"},
            format="json",
        )
    assert response.status_code == 200, response.content
    body = response.json()
    assert {k: body[k] for k in ("outcome", "message", "status", "revenue", "payout")} == {
        "outcome": "accepted",
        "message": "",
        "status": "approved",
        "revenue": "3.00",
        "payout": "2.00",
    }
    assert isinstance(body["checks"], dict)
    assert snapshot() == before
    assert published == []


def test_a_declined_test_says_why(support_api, offer, click, partner, make_click):
    Conversion.objects.create(offer=offer, partner=partner, click=make_click(), status="approved")
    Cap.objects.create(offer=offer, limit=1)
    before = snapshot()
    body = support_api.post(url_of(offer), {"clickid": click.clickid}, format="json").json()
    assert (body["outcome"], body["message"], body["status"]) == (
        "declined",
        "Cap is reached",
        "declined",
    )
    assert snapshot() == before


def test_a_rejected_test_names_the_error(support_api, offer, click):
    offer.secure = "s3cret"
    offer.save()
    body = support_api.post(
        url_of(offer), {"clickid": click.clickid, "secure": "wrong"}, format="json"
    ).json()
    assert (body["outcome"], body["message"], body["status"]) == ("rejected", "Access denied", None)
    assert not Postback.objects.exists()


def test_a_test_status_update_of_a_pending_conversion_is_updated_and_undone(
    support_api, offer, click, partner
):
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="pending", payout=Decimal(2)
    )
    before = snapshot()
    body = support_api.post(
        url_of(offer), {"clickid": click.clickid, "status": "1"}, format="json"
    ).json()
    assert (body["outcome"], body["status"]) == ("updated", "approved")
    assert snapshot() == before
    conversion.refresh_from_db()
    assert conversion.status == "pending"


def test_without_a_clickid_a_sample_click_is_made_and_undone(support_api, offer, partner):
    before = snapshot()
    body = support_api.post(url_of(offer), {"goal": "1", "sum": "5"}, format="json").json()
    assert (body["outcome"], body["status"], body["payout"]) == ("accepted", "approved", "2.00")
    assert snapshot() == before


def test_the_sample_click_comes_from_the_partner_named(support_api, offer, partner):
    banned = Partner.objects.create(name="Banned", status="banned")
    body = support_api.post(
        f"/api/v1/offers/{offer.pk}/test-postback/?partner={banned.pk}", {}, format="json"
    ).json()
    assert (body["outcome"], body["message"]) == ("declined", "Partner is banned")


def test_the_sender_address_is_checked_against_allowed_ips(support_api, offer, click):
    offer.allowed_ips = ["198.51.100.0/24"]
    offer.save()
    denied = support_api.post(url_of(offer), {"clickid": click.clickid}, format="json").json()
    assert (denied["outcome"], denied["message"]) == ("rejected", "Current IP-address is denied")
    allowed = support_api.post(
        f"/api/v1/offers/{offer.pk}/test-postback/?sender_ip=198.51.100.7",
        {"clickid": click.clickid},
        format="json",
    ).json()
    assert allowed["outcome"] == "accepted"


def test_a_click_of_another_offer_or_bad_input_is_a_400(support_api, offer, make_offer, make_click):
    other = make_click(offer=make_offer(title="Other"))
    response = support_api.post(url_of(offer), {"clickid": other.clickid}, format="json")
    assert response.status_code == 400
    assert "belongs to offer" in response.json()["detail"]
    assert support_api.post(url_of(offer), [1, 2], format="json").status_code == 400
    assert support_api.post(url_of(offer), {"goal": {"a": 1}}, format="json").status_code == 400
    bad_ip = f"/api/v1/offers/{offer.pk}/test-postback/?sender_ip=nope"
    assert support_api.post(bad_ip, {}, format="json").status_code == 400
    assert support_api.post("/api/v1/offers/999999/test-postback/", {}).status_code == 404


def test_the_test_needs_staff_with_the_view_permission(bare_staff_api, offer):
    response = bare_staff_api.post(url_of(offer), {}, format="json")
    assert response.status_code == 403
    assert "offers.view_offer" in response.json()["detail"]


def test_a_click_still_in_the_buffer_stays_there(support_api, offer, partner, settings):
    if not click_buffer.enabled():
        pytest.skip("the click buffer needs PostgreSQL and a Redis broker")
    clickid = "ab" * 12
    fields = dict.fromkeys(click_buffer.FIELDS, "")
    fields["ip"] = None
    assert click_buffer.add(clickid, offer.pk, partner.pk, timezone.now(), fields)
    stream = click_buffer._stream()
    buffered = stream.client.xlen(stream.key)

    body = support_api.post(url_of(offer), {"clickid": clickid}, format="json").json()

    # Read from the table only: a flush inside the undone transaction would lose the click.
    assert (body["outcome"], body["message"]) == ("rejected", "Click not found")
    assert stream.client.xlen(stream.key) == buffered
    click_buffer.flush()
    assert Click.objects.filter(clickid=clickid).exists()


def test_the_offer_page_sends_a_test_postback_and_shows_the_trail(
    offer, click, partner, client, django_user_model
):
    from django.contrib.auth.models import Group

    offer.secure = "s3cret"
    offer.save()
    user = django_user_model.objects.create_user("mgr", is_staff=True)
    user.groups.add(Group.objects.get(name="Affiliate managers"))
    client.force_login(user)
    page = client.get(f"/admin/offers/offer/{offer.pk}/change/").content.decode()
    action = f"/admin/offers/offer/{offer.pk}/test-postback/"
    assert f'action="{action}"' in page
    assert 'id="test-secure" class="vTextField" value="s3cret"' in page
    before = snapshot()

    result = client.post(
        action, {"clickid": click.clickid, "goal": "1", "secure": "s3cret", "sum": "9"}
    ).content.decode()

    assert 'class="test-outcome">accepted<' in result
    assert 'class="test-status">approved<' in result
    assert snapshot() == before
    wrong = client.post(action, {"clickid": click.clickid, "goal": "1", "secure": "no"})
    assert 'class="test-message">Access denied<' in wrong.content.decode()


def test_support_tests_without_seeing_the_secure_code(offer, client, django_user_model):
    from django.contrib.auth.models import Group

    offer.secure = "s3cret"
    offer.save()
    user = django_user_model.objects.create_user("sup", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    client.force_login(user)
    page = client.get(f"/admin/offers/offer/{offer.pk}/change/").content.decode()
    assert "s3cret" not in page
    assert 'id="test-secure" class="vTextField" value=""' in page
    assert client.get(f"/admin/offers/offer/{offer.pk}/test-postback/").status_code == 200


def test_the_test_answers_the_same_trail_as_the_pipeline(support_api, offer, click, partner):
    partner.status = "disabled"
    partner.save()
    body = support_api.post(url_of(offer), {"clickid": click.clickid}, format="json").json()
    assert (body["outcome"], body["message"]) == ("declined", "Partner is disabled")
    assert {name for name, v in body["checks"].items() if not v["ok"]} == {"partner"}
    assert body["checks"]["partner"] == {"ok": False, "detail": "Partner is disabled"}
    assert body["checks"]["ip"] == {"ok": True, "detail": "203.0.113.9 allowed"}


def test_odd_characters_are_answered_not_refused(support_api, offer, click):
    # A NUL and a lone surrogate, escaped in the JSON as a client may send them.
    raw = '{"clickid": "CLICK", "comment": "a\\u0000b\\ud800", "x\\u0000": "1", "sum": 5}'
    raw = raw.replace("CLICK", click.clickid)
    body = support_api.post(url_of(offer), raw, content_type="application/json")
    assert body.status_code == 200, body.content
    assert body.json()["outcome"] == "accepted"
