"""The operator panel in a real browser (headless Debian Chromium driven by Playwright).

A manager logs in, filters conversions, fixes an offer's secure code, re-queues
the postback that was rejected for it and sees it accepted by the real worker.
Screenshots of the conversions list and the dashboard go to docs/screenshots/.
"""

import random
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from conversions.models import Click, Conversion
from conversions.panel import dashboard
from offers.models import Cap, Goal, Offer, Payout
from partners.models import Partner

from ..conftest import wait_settled
from .conftest import CHROMIUM, PASSWORD, SCREENSHOTS

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    # Small ids in the screenshots.
    pytest.mark.django_db(transaction=True, reset_sequences=True),
]


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(
        viewport={"width": 1680, "height": 1000}, base_url=live_server.url
    )
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def month_of_conversions(offers: list[Offer], partners: list[Partner]) -> None:
    """A month of traffic, so the list and the chart look like a working day."""
    rng = random.Random(7)
    now = timezone.now()
    statuses = ["approved"] * 6 + ["pending"] * 2 + ["declined", "hold"]
    reasons = ["Cap is reached", "Payments not found", "Rejected by a manager"]
    clicks, rows = [], []
    for day in range(30):
        for _ in range(rng.randint(4, 14)):
            offer, partner = rng.choice(offers), rng.choice(partners)
            click = Click(offer=offer, partner=partner, sub1=f"sub{rng.randint(1, 99)}")
            status = rng.choice(statuses)
            at = now - timedelta(days=day, minutes=rng.randint(0, 23 * 60))
            clicks.append(click)
            rows.append(
                Conversion(
                    offer=offer,
                    partner=partner,
                    click=click,
                    goal="1",
                    action_id=f"ord-{len(rows) + 1000}",
                    status=status,
                    reason=rng.choice(reasons) if status == "declined" else "",
                    hold_until=at + timedelta(days=7) if status == "hold" else None,
                    revenue=Decimal("3.50"),
                    payout=Decimal("2.00"),
                    sum=Decimal(rng.randint(5, 120)),
                    ctit=rng.choice([rng.randint(2, 14), rng.randint(30, 40000)]),
                    ip_mismatch=rng.random() < 0.1,
                    created_at=at,
                )
            )
    Click.objects.bulk_create(clicks)
    for click, row in zip(clicks, rows, strict=True):
        row.click = click
    Conversion.objects.bulk_create(rows)


@pytest.fixture
def shop(worker, advertiser):
    """Offers, partners and a month of conversions; the main offer asks for a secure code."""
    offers = []
    for title in ("Mobile game install", "Casino registration", "Fintech app sale"):
        offer = Offer.objects.create(
            advertiser=advertiser,
            title=title,
            url="https://land.example.com/?c={clickid}",
            secure="s3cret",
        )
        goal = Goal.objects.create(offer=offer, value="1", title="Install")
        Payout.objects.create(offer=offer, goal=goal, revenue=Decimal("3.5"), payout=Decimal(2))
        offers.append(offer)
    Cap.objects.create(offer=offers[0], limit=10)
    partners = [
        Partner.objects.create(name=name) for name in ("Alice Media", "Bob Traffic", "Cleo Ads")
    ]
    month_of_conversions(offers, partners)
    User.objects.create_superuser("manager", password=PASSWORD)
    return offers, partners


def test_manager_filters_conversions_and_requeues_a_fixed_postback(page, live_server, shop):
    offers, partners = shop
    click = Click.objects.create(offer=offers[0], partner=partners[0])
    # The advertiser's tracker still sends the code the offer had before.
    response = httpx.get(
        f"{live_server.url}/postback",
        params={"clickid": click.clickid, "secure": "old-code", "action_id": "late-1"},
    )
    postback_id = response.json()["id"]
    assert wait_settled(postback_id).error == "Access denied"

    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard-link")
    # Fold the navigation sidebar away: the list gets the whole width.
    page.goto("/admin/conversions/conversion/")
    page.click("#toggle-nav-sidebar")

    page.goto("/admin/conversions/conversion/")
    page.wait_for_selector("#result_list")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "conversions.png"))

    page.click("#changelist-filter a[href*='status__exact=pending']")
    page.wait_for_url("**status__exact=pending**")
    badges = page.locator("#result_list .status-badge").all_inner_texts()
    assert badges
    assert {text.lower() for text in badges} == {"pending"}

    # The cause: the offer's secure code. Fix it on the offer page.
    page.goto(f"/admin/offers/offer/{offers[0].pk}/change/")
    assert "secure=s3cret" in page.input_value("#postback-url-1")
    page.fill("#id_secure", "old-code")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")

    page.goto("/admin/conversions/postback/")
    page.click("#changelist-filter a[href*='state__exact=rejected']")
    page.wait_for_url("**state__exact=rejected**")
    row = page.locator("#result_list tbody tr", has_text=click.clickid)
    row.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", "requeue")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist .success")
    assert "Re-queued 1 postback for processing." in page.inner_text(".messagelist")

    assert wait_settled(postback_id).state == "accepted"
    page.goto(f"/admin/conversions/postback/?q={click.clickid}")
    assert page.locator("#result_list .status-badge").inner_text() == "accepted"
    conversion = Conversion.objects.get(click=click)
    page.goto(f"/admin/conversions/conversion/?q={click.clickid}")
    assert page.locator("#result_list .status-badge").inner_text().lower() == "approved"
    assert f"/admin/conversions/conversion/{conversion.pk}/change/" in page.content()

    cache.delete(dashboard.stats_key(timezone.now()))
    page.goto("/admin/dashboard/")
    page.wait_for_selector("#conversions-chart svg rect")
    assert "keeping up" in page.inner_text("#queue-health")
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_manager_declines_conversions_in_bulk_with_a_comment(laptop, live_server, shop):
    """Conversion workflows: a bulk status change with a comment, seen in the history,
    on a manager's laptop (1366x768)."""
    page = laptop
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard-link")
    page.goto("/admin/conversions/conversion/?status__exact=approved")
    rows = page.locator("#result_list tbody tr")
    for i in range(2):
        rows.nth(i).locator("input[name=_selected_action]").check()
    chosen = [
        int(v)
        for v in page.locator("input[name=_selected_action]:checked").evaluate_all(
            "boxes => boxes.map(b => b.value)"
        )
    ]
    page.select_option("select[name=action]", "change_status")
    page.select_option("select[name=status]", "declined")
    page.fill("input[name=comment]", "Advertiser reports fraud (ticket 88)")
    # The comment reads back whole, and the bar stays inside the list at 1366 px.
    comment = page.locator("input[name=comment]")
    assert comment.evaluate("e => e.scrollWidth <= e.clientWidth"), "the comment is cut"
    bar = page.locator("#changelist-form .actions").bounding_box()
    go = page.locator("button[name=index]").bounding_box()
    assert go["x"] + go["width"] <= bar["x"] + bar["width"]
    page.select_option("select[name=notify_partner]", "1")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "workflows-bulk.png"))
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist .success")
    assert "2 conversions set declined; partner postbacks were fired." in page.inner_text(
        ".messagelist"
    )
    assert set(Conversion.objects.filter(pk__in=chosen).values_list("status", flat=True)) == {
        "declined"
    }
    page.goto(f"/admin/conversions/conversion/{chosen[0]}/change/")
    # The History section is on the page whatever the database; its rows are
    # PostgreSQL triggers' (the embedded SQLite default keeps none).
    history = page.locator(".field-change_history")
    if connection.vendor == "postgresql":
        assert "Advertiser reports fraud (ticket 88)" in history.inner_text()
    history.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "workflows-history.png"))
