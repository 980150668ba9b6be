"""The panel on a manager's laptop (1366x768, the sidebar as it opens), in headless Chromium.

Support finds a rejected postback in the list, reads its check trail, fixes
the cause and re-queues it from its page; a manager tests a partner's
postback URL. Screenshots go to docs/screenshots/ with `make screenshots`.
"""

from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User

from conversions.models import Click, Conversion, Postback, PostbackDelivery
from offers.models import Goal, Offer, Payout
from partners.models import Partner, PartnerPostback

from ..conftest import wait_settled
from .conftest import CHROMIUM, PASSWORD, SCREENSHOTS

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    pytest.mark.django_db(transaction=True, reset_sequences=True),
]


@pytest.fixture
def page(laptop):
    return laptop


def shot(page, name: str, **options) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), **options)


def assert_columns_in_view(page, columns: list[str]) -> None:
    """Each column is whole in sight: inside the list's box, which does not scroll sideways,
    inside the window, which does not either."""
    width = page.evaluate("window.innerWidth")
    results = page.locator("#changelist-form .results")
    frame = results.bounding_box()
    assert frame["x"] + frame["width"] <= width, (frame, width)
    for column in columns:
        box = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert box is not None, column
        assert frame["x"] <= box["x"], (column, box, frame)
        assert box["x"] + box["width"] <= frame["x"] + frame["width"] + 0.5, (column, box, frame)
    overflow = results.evaluate("e => e.scrollWidth - e.clientWidth")
    assert overflow <= 0, f"the list scrolls sideways by {overflow} px"
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page scrolls sideways: {scroll} > {width}"


@pytest.fixture
def network(worker, advertiser, httpserver, settings):
    """An offer with a secure code, a partner whose tracker is a local receiver, some traffic."""
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = True
    offer = Offer.objects.create(
        advertiser=advertiser,
        title="Mobile game install (iOS, tier 1 countries)",
        url="https://land.example.com/?c={clickid}",
        secure="s3cret",
    )
    for value, title in (("1", "Install"), ("reg", "Registration")):
        goal = Goal.objects.create(offer=offer, value=value, title=title)
        Payout.objects.create(offer=offer, goal=goal, revenue=Decimal("3.5"), payout=Decimal(2))
    partner = Partner.objects.create(name="Alice Media Performance Network")
    httpserver.expect_request("/pb").respond_with_data("OK: conversion recorded")
    tracker = PartnerPostback.objects.create(
        partner=partner, url=httpserver.url_for("/pb") + "?click={clickid}&status={status}"
    )
    User.objects.create_superuser("manager", password=PASSWORD)
    return offer, partner, tracker


def log_in(page) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")


def test_support_reads_the_trail_and_requeues_from_the_page(page, live_server, network, httpserver):
    offer, partner, tracker = network
    accepted = Click.objects.create(offer=offer, partner=partner, sub1="banner-7")
    first = httpx.get(
        f"{live_server.url}/postback",
        params={"clickid": accepted.clickid, "secure": "s3cret", "sum": "12.5"},
    ).json()["id"]
    assert wait_settled(first).state == "accepted"
    click = Click.objects.create(offer=offer, partner=partner)
    # The advertiser's tracker still sends the code the offer had before.
    rejected = httpx.get(
        f"{live_server.url}/postback",
        params={"clickid": click.clickid, "secure": "old-code", "action_id": "late-1"},
    ).json()["id"]
    assert wait_settled(rejected).error == "Access denied"
    log_in(page)

    page.goto("/admin/conversions/postback/")
    page.wait_for_selector("#result_list")
    assert_columns_in_view(
        page, ["postback_id", "received_at", "clickid_text", "offer_name", "state_badge", "error"]
    )
    shot(page, "postbacks-list.png")

    page.goto("/admin/conversions/conversion/")
    page.wait_for_selector("#result_list")
    assert_columns_in_view(
        page,
        [
            "created_at",
            "offer_name",
            "partner_name",
            "goal",
            "status_badge",
            "reason",
            "revenue_amount",
            "payout_amount",
        ],
    )
    shot(page, "conversions-list.png")

    # The rejected postback's trail says which check said no.
    page.goto("/admin/conversions/postback/?state__exact=rejected")
    page.click(f"#result_list a[href*='/{rejected}/change/']")
    page.wait_for_selector(".check-trail")
    failed = page.locator(".check-trail li.check-failed")
    assert failed.count() == 1
    assert failed.inner_text() == "✗secure: Access denied"
    assert page.locator(".check-trail li.check-ok[data-check='click']").count() == 1
    assert page.locator("input[name=_save]").count() == 0
    shot(page, "postback-trail.png", full_page=True)

    # Fixed on the offer; re-queued from the postback's own page.
    Offer.objects.filter(pk=offer.pk).update(secure="old-code")
    page.click("#requeue-form button")
    page.wait_for_selector(".messagelist .success")
    assert f"Re-queued postback {rejected} for processing." in page.inner_text(".messagelist")
    assert wait_settled(rejected).state == "accepted"
    page.reload()
    assert "Re-queued" in page.inner_text(".field-attempts_and_requeues")
    assert "by manager" in page.inner_text(".field-attempts_and_requeues")
    assert page.locator(".check-trail li.check-failed").count() == 0
    assert Conversion.objects.filter(click=click).exists()

    # A manager tries the advertiser's integration from the offer page: nothing is kept.
    kept = (Postback.objects.count(), Conversion.objects.count(), Click.objects.count())
    sent_before = len(httpserver.log)
    page.goto(f"/admin/offers/offer/{offer.pk}/change/")
    assert "goal=reg&secure=old-code" in page.input_value("#postback-url-2")
    page.select_option("#test-goal", "reg")
    page.fill("#test-sum", "20")
    page.click("#test-postback-form input[type=submit]")
    page.wait_for_selector("#test-postback-result")
    assert page.inner_text(".test-outcome").lower() == "accepted"
    assert page.inner_text(".test-status") == "approved"
    assert page.locator("#test-postback-result .check-trail li.check-failed").count() == 0
    shot(page, "test-postback.png", full_page=True)
    assert (Postback.objects.count(), Conversion.objects.count(), Click.objects.count()) == kept
    assert len(httpserver.log) == sent_before

    # The partner's tracker, tested from its postback's page.
    sent_before = len(httpserver.log)
    deliveries = PostbackDelivery.objects.count()
    page.goto(f"/admin/partners/partnerpostback/{tracker.pk}/change/")
    page.click("#test-partner-postback")
    page.click("#partner-postback-test-form input[type=submit]")
    page.wait_for_selector("#partner-postback-test-result")
    assert page.inner_text(".test-status-code") == "200"
    assert "OK: conversion recorded" in page.inner_text(".test-response")
    assert len(httpserver.log) == sent_before + 1
    assert PostbackDelivery.objects.count() == deliveries
    shot(page, "partner-postback-test.png", full_page=True)
    assert Postback.objects.count() == 2
