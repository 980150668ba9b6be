"""Offers (integration links, inlines, cap usage), partners, the dashboard and the two roles."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from conversions.intake import spool
from conversions.models import Postback
from offers.models import Cap, CapCounter, Goal, Offer
from partners.models import OfferAccess, PartnerPostback

pytestmark = pytest.mark.django_db

OFFER_URL = "/admin/offers/offer/{}/change/"


def test_offer_page_shows_ready_to_copy_postback_and_click_urls(manager_client, offer, settings):
    settings.ALLOWED_HOSTS = ["track.example.com"]
    offer.advertiser.secure = "adv-code"
    offer.advertiser.save()
    Goal.objects.create(offer=offer, value="sale")
    page = manager_client.get(OFFER_URL.format(offer.pk), HTTP_HOST="track.example.com")
    html = page.content.decode()
    for goal in ("1", "sale"):
        assert (
            f"http://track.example.com/postback?clickid={{clickid}}&amp;goal={goal}"
            "&amp;secure=adv-code&amp;action_id={action_id}&amp;sum={sum}&amp;status={status}"
        ) in html
    assert (
        f"http://track.example.com/click?offer_id={offer.pk}&amp;pid={{pid}}&amp;sub1={{sub1}}"
        in html
    )


def test_offer_secure_code_wins_over_the_advertisers(manager_client, offer):
    offer.secure = "offer-code"
    offer.save()
    html = manager_client.get(OFFER_URL.format(offer.pk)).content.decode()
    assert "secure=offer-code" in html


def test_offer_page_has_goals_payouts_caps_and_access_inline(manager_client, offer, partner):
    offer.privacy = Offer.Privacy.PRIVATE
    offer.save()
    OfferAccess.objects.create(offer=offer, partner=partner)
    cap = Cap.objects.create(offer=offer, limit=10)
    CapCounter.objects.filter(cap=cap, period_key=timezone.now().date().isoformat()).update(used=7)
    Cap.objects.create(offer=offer, limit=500, period=Cap.Period.MONTH, kind=Cap.Kind.PAYOUT)
    html = manager_client.get(OFFER_URL.format(offer.pk)).content.decode()
    for prefix in ("goals-", "payouts-", "caps-", "accesses-"):
        assert f'id="{prefix}group"' in html
    assert "7 / 10 today" in html
    assert "0 / 500 this month" in html


def test_cap_list_shows_current_usage(manager_client, offer):
    cap = Cap.objects.create(offer=offer, limit=3, period=Cap.Period.ALL)
    CapCounter.objects.filter(cap=cap, period_key="all").update(used=2)
    assert "2 / 3 in total" in manager_client.get("/admin/offers/cap/").content.decode()


def test_manager_edits_an_offer_and_its_goals(manager_client, offer):
    goal = offer.goals.get()
    payout = offer.payouts.get()
    data = {
        "title": "Renamed offer",
        "advertiser": offer.advertiser_id,
        "status": "active",
        "privacy": "public",
        "url": offer.url,
        "trafficback_url": "",
        "currency": "USD",
        "secure": "",
        "allowed_ips": "",
        "click_lifespan": 720,
        "min_click_lifespan": 0,
        "hold_period": 0,
        "default_status": "approved",
        "goals-TOTAL_FORMS": 2,
        "goals-INITIAL_FORMS": 1,
        "goals-0-id": goal.pk,
        "goals-0-offer": offer.pk,
        "goals-0-value": "1",
        "goals-0-title": "Install",
        "goals-1-offer": offer.pk,
        "goals-1-value": "reg",
        "goals-1-title": "Registration",
        "payouts-TOTAL_FORMS": 1,
        "payouts-INITIAL_FORMS": 1,
        "payouts-0-id": payout.pk,
        "payouts-0-offer": offer.pk,
        "payouts-0-goal": goal.pk,
        "payouts-0-type": "fixed",
        "payouts-0-revenue": "3",
        "payouts-0-payout": "2",
        "caps-TOTAL_FORMS": 0,
        "caps-INITIAL_FORMS": 0,
        "rules-TOTAL_FORMS": 0,
        "rules-INITIAL_FORMS": 0,
        "accesses-TOTAL_FORMS": 0,
        "accesses-INITIAL_FORMS": 0,
    }
    response = manager_client.post(OFFER_URL.format(offer.pk), data)
    assert response.status_code == 302, response.context["errors"]
    offer.refresh_from_db()
    assert offer.title == "Renamed offer"
    assert sorted(offer.goals.values_list("value", flat=True)) == ["1", "reg"]


def test_support_cannot_change_an_offer(support_client, offer):
    page = support_client.get(OFFER_URL.format(offer.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    response = support_client.post(OFFER_URL.format(offer.pk), {"title": "Hijacked"})
    assert response.status_code == 403
    offer.refresh_from_db()
    assert offer.title == "Main offer"
    assert support_client.get("/admin/offers/offer/add/").status_code == 403


@pytest.mark.parametrize(
    "url",
    [
        "/admin/offers/advertiser/",
        "/admin/offers/offer/",
        "/admin/offers/payout/",
        "/admin/offers/cap/",
        "/admin/partners/partner/",
        "/admin/partners/offeraccess/",
        "/admin/partners/partnerpostback/",
        "/admin/conversions/click/",
        "/admin/conversions/conversion/",
        "/admin/conversions/postback/",
        "/admin/conversions/postbackdelivery/",
        "/admin/django_celery_results/taskresult/",
        "/admin/dashboard/",
    ],
)
def test_both_roles_read_every_list(manager_client, support_client, url, offer, click):
    assert manager_client.get(url).status_code == 200
    assert support_client.get(url).status_code == 200


def test_partner_page_has_offer_access_and_postbacks(manager_client, offer, partner):
    OfferAccess.objects.create(offer=offer, partner=partner)
    PartnerPostback.objects.create(partner=partner, url="https://t.example/pb?c={clickid}")
    html = manager_client.get(f"/admin/partners/partner/{partner.pk}/change/").content.decode()
    assert 'id="accesses-group"' in html
    assert 'id="postbacks-group"' in html
    assert "https://t.example/pb?c={clickid}" in html


def test_dashboard_shows_chart_top_lists_and_queue_health(
    manager_client, many_conversions, make_postback, offer, django_assert_max_num_queries
):
    make_postback(received_at=timezone.now() - timedelta(minutes=5))
    make_postback(state="processing")
    make_postback(state="failed", error="Processing did not finish after 5 attempts")
    with django_assert_max_num_queries(15):
        response = manager_client.get("/admin/dashboard/")
    html = response.content.decode()
    assert '<svg viewBox="0 0 900 220"' in html
    assert html.count("<rect ") >= 30
    assert 'id="q-received">1<' in html
    assert 'id="q-processing">1<' in html
    assert 'id="q-failed">1<' in html
    assert "behind: oldest waiting" in html
    assert f"#{offer.pk} Main offer" in html
    assert "Partner Two" in html
    # A chart bar says what it counts.
    today = timezone.now().date()
    assert f"{today:%Y-%m-%d}: " in html


def test_dashboard_says_keeping_up_when_nothing_waits(manager_client):
    Postback.objects.create(method="GET", params={}, state="accepted")
    html = manager_client.get("/admin/dashboard/").content.decode()
    assert "keeping up" in html
    assert "No conversions yet." in html


def test_dashboard_shows_the_spool_and_what_it_set_aside(manager_client, settings):
    spool_dir = Path(settings.POSTBACK_SPOOL_DIR)
    spool_dir.mkdir(parents=True, exist_ok=True)
    entry = {"id": "x", "received_at": "2026-01-01T00:00:00+00:00", "method": "GET", "params": {}}
    (spool_dir / "postbacks.jsonl").write_text(json.dumps(entry) + "\n" + json.dumps(entry) + "\n")
    (spool_dir / spool.SET_ASIDE_NAME).write_text(
        json.dumps({"reason": "DataError: value too long", "entry": entry}) + "\n"
    )
    html = manager_client.get("/admin/dashboard/").content.decode()
    assert 'id="q-spooled">2<' in html
    assert 'id="q-set-aside" class="dash-behind">1<' in html
    assert "import_spool --retry-set-aside" in html


def test_admin_index_links_the_dashboard(support_client):
    assert 'href="/admin/dashboard/"' in support_client.get("/admin/").content.decode()


def test_dashboard_needs_a_login(client):
    response = client.get("/admin/dashboard/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
