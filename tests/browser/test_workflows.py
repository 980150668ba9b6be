"""The conversion workflows' screens at a manager's laptop size (1366x768), in headless Chromium.

A manager sets an advertiser's status words, a goal for repeat events, a rule
and an exchange rate in the panel, and finds suspicious conversions by their
fraud signals; postbacks go through the real endpoint and worker. Screenshots
go to docs/screenshots/workflows-*.png with `make screenshots`.
"""

from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from conversions.models import Click, Conversion, Postback
from offers.models import Advertiser, ExchangeRate, Goal, Offer, Payout, PostbackRule
from partners.models import Partner

from ..conftest import wait_settled
from .conftest import CHROMIUM, PASSWORD, SCREENSHOTS
from .test_operator_panel import month_of_conversions
from .test_panel_tools import assert_columns_in_view

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    pytest.mark.django_db(transaction=True, reset_sequences=True),
]


def shot(page, name: str, **options) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), **options)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher takes a good part of a second per login: these tests only need one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def desk(worker, advertiser, laptop):
    """An offer priced per deposit, a partner, and a manager logged in at 1366x768."""
    offer = Offer.objects.create(
        advertiser=advertiser,
        title="Casino deposits (DE, AT)",
        url="https://land.example.com/?c={clickid}",
    )
    goal = Goal.objects.create(offer=offer, value="dep", title="Deposit")
    Payout.objects.create(
        offer=offer, goal=goal, type="percent", revenue=Decimal(30), payout=Decimal(20)
    )
    partner = Partner.objects.create(name="Alice Media")
    User.objects.create_superuser("manager", password=PASSWORD)
    page = laptop
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")
    return page, offer, partner


def postback(live_server, **params) -> str:
    """An advertiser's postback through the real endpoint; settled by the worker."""
    response = httpx.get(f"{live_server.url}/postback", params=params)
    assert response.json()["status"] == 1
    return wait_settled(response.json()["id"]).pk


def shown(page, name: str) -> str:
    """A read-only field's text on a change page, alone on its line or beside others."""
    beside = page.locator(f".fieldBox.field-{name} .readonly")
    return (
        beside if beside.count() else page.locator(f".form-row.field-{name} .readonly")
    ).inner_text()


def save_and_continue(page) -> None:
    page.click("input[name=_continue]")
    page.wait_for_load_state()


def test_status_words_a_malformed_map_is_refused_a_valid_one_used(desk, live_server):
    page, offer, partner = desk
    advertiser = offer.advertiser
    page.goto(f"/admin/offers/advertiser/{advertiser.pk}/change/")
    page.fill("#id_status_map", '{\n  "sale": "approved",\n  "chargeback": "paid back"\n}')
    save_and_continue(page)
    error = page.locator(".field-status_map .errorlist")
    assert "chargeback maps to 'paid back'" in error.inner_text()
    assert "approved, pending, declined, hold" in error.inner_text()
    assert Advertiser.objects.get(pk=advertiser.pk).status_map == {}
    page.locator(".field-status_map").scroll_into_view_if_needed()
    shot(page, "workflows-status-map.png")

    page.fill("#id_status_map", '{"sale": "approved", "Chargeback": "declined"}')
    save_and_continue(page)
    page.wait_for_selector(".messagelist .success")
    assert Advertiser.objects.get(pk=advertiser.pk).status_map == {
        "sale": "approved",
        "Chargeback": "declined",
    }

    # The advertiser's tracker sends its own words; the worker reads them through the map.
    sale, chargeback = (Click.objects.create(offer=offer, partner=partner) for _ in range(2))
    postback(live_server, clickid=sale.clickid, goal="dep", sum="40", status="SALE")
    postback(live_server, clickid=chargeback.clickid, goal="dep", sum="40", status="chargeback")
    refused = postback(live_server, clickid=sale.clickid, goal="dep", status="refund")
    assert Postback.objects.get(pk=refused).error == "Invalid parameter status"
    converted = Conversion.objects.get(click=sale)
    assert (converted.status, converted.advertiser_status) == ("approved", "SALE")
    assert Conversion.objects.get(click=chargeback).status == "declined"
    page.goto(f"/admin/conversions/conversion/{converted.pk}/change/")
    assert shown(page, "advertiser_status") == "SALE"


def test_repeat_events_a_goal_allowing_several_makes_one_conversion_per_action_id(
    desk, live_server
):
    page, offer, partner = desk
    page.goto(f"/admin/offers/offer/{offer.pk}/change/")
    page.check("#id_goals-0-allow_multiple")
    save_and_continue(page)
    page.wait_for_selector(".messagelist .success")
    assert Goal.objects.get(offer=offer).allow_multiple
    assert page.is_checked("#id_goals-0-allow_multiple")

    click = Click.objects.create(offer=offer, partner=partner)
    for action_id, amount in (("dep-1001", "50"), ("dep-1002", "120")):
        postback(live_server, clickid=click.clickid, goal="dep", action_id=action_id, sum=amount)
    # The same deposit again is no new conversion.
    again = postback(live_server, clickid=click.clickid, goal="dep", action_id="dep-1001", sum="50")
    assert Postback.objects.get(pk=again).error == "Conversion exists"

    page.goto(f"/admin/conversions/conversion/?q={click.clickid}")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    payouts = page.locator("#result_list td.field-payout_amount").all_inner_texts()
    # 20% of each deposit.
    assert sorted(payouts) == ["10.00", "24.00"]
    assert set(page.locator("#result_list td.field-goal").all_inner_texts()) == {"dep"}
    shot(page, "workflows-repeat.png")


def test_rules_a_bad_rule_is_a_field_error_a_good_one_shows_in_the_trail(desk, live_server):
    page, offer, partner = desk
    page.goto(f"/admin/offers/offer/{offer.pk}/change/")
    page.click("#rules-group .add-row a")
    page.fill("#id_rules-0-field", "ctit")
    page.select_option("#id_rules-0-op", "lt")
    page.fill("#id_rules-0-value", "15 seconds")
    page.select_option("#id_rules-0-action", "pending")
    page.fill("#id_rules-0-reason", "CTIT too short")
    save_and_continue(page)
    assert "This comparison needs a number." in page.inner_text("#rules-group .errorlist")
    assert not PostbackRule.objects.exists()

    page.fill("#id_rules-0-value", "15")
    save_and_continue(page)
    page.wait_for_selector(".messagelist .success")
    rule = PostbackRule.objects.get(offer=offer)
    assert (rule.field, rule.op, rule.value, rule.action, rule.reason) == (
        "ctit",
        "lt",
        "15",
        "pending",
        "CTIT too short",
    )
    # The rule's row, like the payouts', inside the window: nothing to scroll sideways to.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1366, f"the offer page scrolls sideways: {width} px"
    for column in ("reason", "DELETE"):
        box = page.locator(f"#id_rules-0-{column}").bounding_box()
        assert box["x"] + box["width"] <= 1366, column
    page.locator("#rules-group").scroll_into_view_if_needed()
    shot(page, "workflows-rules.png")

    # A conversion seconds after its click: held for review by the rule, named in the trail.
    click = Click.objects.create(offer=offer, partner=partner)
    postback_id = postback(live_server, clickid=click.clickid, goal="dep", sum="30")
    conversion = Conversion.objects.get(click=click)
    assert (conversion.status, conversion.reason) == ("pending", "CTIT too short")
    page.goto(f"/admin/conversions/postback/{postback_id}/change/")
    rules = page.locator(".check-trail li[data-check='rules']")
    assert rules.inner_text() == "✓rules: pending for review: CTIT too short"
    assert page.locator(".check-trail li.check-failed").count() == 0


def test_currencies_a_rate_at_zero_is_refused_a_conversion_shows_the_sum_as_sent(desk, live_server):
    page, offer, partner = desk
    day = (timezone.now() - timedelta(days=1)).date().isoformat()
    page.goto("/admin/offers/exchangerate/add/")
    page.fill("#id_base", "EUR")
    page.fill("#id_quote", "USD")
    page.fill("#id_rate", "0")
    page.fill("#id_date", day)
    page.click("input[name=_save]")
    assert page.inner_text(".field-rate .errorlist") == "A rate is above 0."
    assert not ExchangeRate.objects.exists()
    page.fill("#id_rate", "1.08")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert "1 EUR = 1.08 USD" in page.inner_text(".messagelist")
    assert ExchangeRate.objects.get().rate == Decimal("1.08")

    # The advertiser pays in euros; the offer counts in dollars.
    click = Click.objects.create(offer=offer, partner=partner)
    postback(live_server, clickid=click.clickid, goal="dep", sum="50", currency="EUR")
    conversion = Conversion.objects.get(click=click)
    assert (conversion.sum, conversion.original_sum, conversion.original_currency) == (
        Decimal("54"),
        Decimal("50"),
        "EUR",
    )
    page.goto(f"/admin/conversions/conversion/{conversion.pk}/change/")
    assert shown(page, "sum_amount") == "54.00 USD"
    assert shown(page, "sent_sum") == "50.00 EUR"
    assert shown(page, "rate_used") == "1.08 (1 EUR = 1.08 USD)"
    # 30% and 20% of the converted sum.
    assert shown(page, "revenue_amount") == "16.20"
    assert shown(page, "payout_amount") == "10.80"
    money = page.locator(".fieldBox.field-sent_sum").bounding_box()
    assert money["y"] + money["height"] <= 768, "the sum as sent is below the fold"
    shot(page, "workflows-currencies.png")


def test_fraud_signals_filters_and_columns_at_laptop_width(desk, live_server, advertiser):
    page, offer, partner = desk
    others = [
        Offer.objects.create(advertiser=advertiser, title=t, url="https://land.example.com/")
        for t in ("Mobile game install", "Fintech app sale")
    ]
    month_of_conversions(others, [partner, Partner.objects.create(name="Bob Traffic")])
    # A bot: converts the second it clicks, from another address than the click's.
    click = Click.objects.create(offer=offer, partner=partner, ip="198.51.100.4")
    postback(live_server, clickid=click.clickid, goal="dep", sum="30", ip="203.0.113.9")
    bot = Conversion.objects.get(click=click)
    assert bot.ip_mismatch and bot.ctit is not None and bot.ctit < 15

    page.goto("/admin/conversions/conversion/")
    page.click("#changelist-filter a[href*='ip_mismatch__exact=1']")
    page.wait_for_url("**ip_mismatch__exact=1**")
    page.click("#changelist-filter a[href*='ctit=%3C15']")
    page.wait_for_url("**ctit=%3C15**")
    suspects = Conversion.objects.filter(ip_mismatch=True, ctit__lt=15)
    signals = page.locator("#result_list td.field-fraud_signals").all_inner_texts()
    assert len(signals) == suspects.count() > 1
    for text in signals:
        seconds, ip = text.split(" · ")
        assert int(seconds.removesuffix(" s")) < 15 and ip == "IP ≠", text
    assert f"/admin/conversions/conversion/{bot.pk}/change/" in page.content()
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
            "fraud_signals",
        ],
    )
    # Both filters in sight beside the list, without scrolling.
    for title in ("By click to conversion", "By IP mismatch"):
        box = page.locator("#changelist-filter summary", has_text=title).bounding_box()
        assert box["y"] + box["height"] <= 768, title
    shot(page, "workflows-fraud.png")

    page.goto(f"/admin/conversions/conversion/{bot.pk}/change/")
    assert shown(page, "ctit_seconds").endswith(" s")
    assert "≠ the click's 198.51.100.4" in shown(page, "ip_compared")
