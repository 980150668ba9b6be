"""The second round's pipeline (DESIGN.md): status maps, repeat events, rules, currencies,
fraud signals, and the decline order with rules and rates in it.

Settled in process (the synchronous mode runs the same checks and callback);
tests/conversions/test_rules.py covers the same path through a worker.
"""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from affise_proj.history import history_of
from conversions.models import Click, Conversion, Postback, PostbackDelivery
from offers.models import Cap, ExchangeRate, Goal, Payout, PostbackRule
from partners.models import Partner, PartnerPostback

pytestmark = pytest.mark.django_db


@pytest.fixture
def settle(client, settings):
    """Send a postback and settle it at once; returns its row."""
    settings.POSTBACK_PROCESSING = "sync"

    def settle_(**params) -> Postback:
        response = client.get("/postback", params, REMOTE_ADDR="203.0.113.7")
        assert response.status_code == 200, response.content
        return Postback.objects.order_by("-received_at").first()

    return settle_


def rule(offer, field, op, value, action="pending", reason="Review", goal=None):
    return PostbackRule.objects.create(
        offer=offer, goal=goal, field=field, op=op, value=value, action=action, reason=reason
    )


# Status maps


def test_an_advertisers_status_word_is_mapped_and_kept(settle, click, offer):
    offer.advertiser.status_map = {"Sale": "approved", "Chargeback": "declined", "lead": "pending"}
    offer.advertiser.save()
    row = settle(clickid=click.clickid, status="LEAD")
    assert (row.state, row.error) == ("accepted", "")
    conversion = row.conversion
    assert (conversion.status, conversion.advertiser_status) == ("pending", "LEAD")
    row = settle(clickid=click.clickid, status="sale")
    conversion.refresh_from_db()
    assert (conversion.status, conversion.advertiser_status) == ("approved", "sale")


def test_the_offers_map_wins_over_its_advertisers(settle, click, offer):
    offer.advertiser.status_map = {"ok": "declined"}
    offer.advertiser.save()
    offer.status_map = {"ok": "approved"}
    offer.save()
    assert settle(clickid=click.clickid, status="ok").conversion.status == "approved"


def test_an_unmapped_word_is_an_invalid_status_and_codes_always_work(
    settle, click, make_click, offer
):
    offer.status_map = {"sale": "approved"}
    offer.save()
    row = settle(clickid=click.clickid, status="refund")
    assert (row.state, row.error) == ("rejected", "Invalid parameter status")
    assert not Conversion.objects.exists()
    # A word is the offer's: with no click to name the offer, no word maps.
    row = settle(clickid="a" * 24, status="sale")
    assert (row.state, row.error) == ("rejected", "Invalid parameter status")
    row = settle(clickid=click.clickid, status="2")
    assert (row.conversion.status, row.conversion.advertiser_status) == ("pending", "2")
    other = make_click()
    assert settle(clickid=other.clickid, status="5").conversion.status == "hold"


# Repeat events


def test_a_goal_that_allows_multiple_makes_a_conversion_per_action_id(settle, click, offer):
    goal = offer.goals.get()
    goal.allow_multiple = True
    goal.save()
    Cap.objects.create(offer=offer, limit=Decimal(2))
    rows = [settle(clickid=click.clickid, action_id=f"rebill-{i}") for i in range(3)]
    assert [r.state for r in rows] == ["accepted"] * 3
    conversions = list(Conversion.objects.order_by("pk"))
    assert [c.action_id for c in conversions] == ["rebill-0", "rebill-1", "rebill-2"]
    # Each is priced and counted: the cap of two declines the third.
    assert [c.payout for c in conversions] == [Decimal(2)] * 3
    assert [c.status for c in conversions] == ["approved", "approved", "declined"]
    assert conversions[2].reason == "Cap is reached"
    # The same action_id again, and no action_id a second time, are duplicates as usual.
    assert settle(clickid=click.clickid, action_id="rebill-0").error == "Conversion exists"
    assert settle(clickid=click.clickid).state == "accepted"
    assert settle(clickid=click.clickid).error == "Conversion exists"


def test_without_allow_multiple_a_click_converts_once_per_goal(settle, click):
    assert settle(clickid=click.clickid, action_id="a").state == "accepted"
    assert settle(clickid=click.clickid, action_id="b").error == "Conversion exists"
    assert Conversion.objects.count() == 1


# Rules


def test_a_pending_rule_on_ctit_holds_a_quick_conversion_for_review(settle, make_click, offer):
    rule(offer, "ctit", "lt", "15", reason="CTIT too short")
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        quick = make_click()
        traveller.shift(timedelta(seconds=5))
        row = settle(clickid=quick.clickid)
        slow = make_click()
        traveller.shift(timedelta(seconds=60))
        later = settle(clickid=slow.clickid)
    assert (row.conversion.status, row.conversion.reason, row.conversion.ctit) == (
        "pending",
        "CTIT too short",
        5,
    )
    assert (later.conversion.status, later.conversion.ctit) == ("approved", 60)


def test_a_declined_rule_wins_over_a_pending_rule(settle, click, offer):
    rule(offer, "sum", "gt", "100", reason="Big sale")
    rule(offer, "param:country", "eq", "xx", action="declined", reason="Blocked country")
    conversion = settle(clickid=click.clickid, sum="500", country="XX").conversion
    assert (conversion.status, conversion.reason) == ("declined", "Blocked country")


def test_a_rule_on_a_parameter_not_sent_does_not_match(settle, click, make_click, offer):
    rule(offer, "param:sub9", "ne", "good", action="declined", reason="Bad source")
    rule(offer, "param:source", "contains", "bot", action="declined", reason="Bot")
    assert settle(clickid=click.clickid).conversion.status == "approved"
    other = make_click()
    conversion = settle(clickid=other.clickid, source="SuperBot-3").conversion
    assert (conversion.status, conversion.reason) == ("declined", "Bot")


def test_a_rule_for_one_goal_leaves_the_others_alone(settle, click, make_click, offer):
    reg = Goal.objects.create(offer=offer, value="reg")
    Payout.objects.create(offer=offer, goal=reg, revenue=Decimal(1), payout=Decimal(1))
    rule(offer, "sum", "gte", "0", action="declined", reason="No regs", goal=reg)
    assert settle(clickid=click.clickid).conversion.status == "approved"
    assert settle(clickid=make_click().clickid, goal="REG").conversion.reason == "No regs"


def test_caps_count_after_rules(settle, make_click, offer):
    Cap.objects.create(offer=offer, limit=Decimal(1))
    rule(offer, "param:tier", "eq", "junk", action="declined", reason="Junk")
    assert settle(clickid=make_click().clickid, tier="junk").conversion.reason == "Junk"
    # The rule's decline did not use the cap: the next conversion still fits.
    assert settle(clickid=make_click().clickid).conversion.status == "approved"
    assert settle(clickid=make_click().clickid).conversion.reason == "Cap is reached"


# Currencies


def test_a_foreign_sum_is_converted_and_the_original_kept(settle, click, offer):
    goal = offer.goals.get()
    Payout.objects.filter(goal=goal).update(type="percent", revenue=10, payout=5)
    ExchangeRate.objects.create(base="EUR", quote="USD", rate=Decimal("1.1"), date=date(2020, 1, 1))
    ExchangeRate.objects.create(
        base="EUR", quote="USD", rate=Decimal("1.2"), date=timezone.now().date()
    )
    ExchangeRate.objects.create(
        base="EUR", quote="USD", rate=Decimal("9"), date=timezone.now().date() + timedelta(days=1)
    )
    conversion = settle(clickid=click.clickid, sum="100", currency="eur").conversion
    assert (conversion.sum, conversion.currency) == (Decimal(120), "USD")
    assert (conversion.original_sum, conversion.original_currency) == (Decimal(100), "EUR")
    assert conversion.exchange_rate == Decimal("1.2")
    # Percent payouts are of the converted sum.
    assert (conversion.revenue, conversion.payout) == (Decimal(12), Decimal(6))


def test_the_reverse_pairs_rate_converts_too(settle, click):
    ExchangeRate.objects.create(base="USD", quote="GBP", rate=Decimal("0.8"), date=date(2026, 1, 1))
    conversion = settle(clickid=click.clickid, sum="8", currency="GBP").conversion
    assert (conversion.sum, conversion.exchange_rate) == (Decimal(10), Decimal("1.25"))


def test_no_rate_declines_the_conversion(settle, click, offer):
    row = settle(clickid=click.clickid, sum="5", currency="JPY")
    assert (row.state, row.conversion.status) == ("accepted", "declined")
    assert row.conversion.reason == "Exchange rate not found"


def test_the_offers_own_currency_needs_no_rate(settle, click):
    conversion = settle(clickid=click.clickid, sum="5", currency="usd").conversion
    assert (conversion.status, conversion.exchange_rate, conversion.original_sum) == (
        "approved",
        None,
        None,
    )


# Fraud signals


def test_ip_mismatch_and_ctit_are_recorded(settle, make_click):
    first = make_click(ip="198.51.100.1")
    conversion = settle(clickid=first.clickid, ip="203.0.113.50").conversion
    assert conversion.ip_mismatch is True
    assert conversion.ctit is not None and conversion.ctit >= 0
    same = make_click(ip="198.51.100.1")
    assert settle(clickid=same.clickid, ip="198.51.100.1").conversion.ip_mismatch is False
    unknown = make_click(ip="198.51.100.1")
    assert settle(clickid=unknown.clickid).conversion.ip_mismatch is False


def test_fraud_signals_filter_the_api(admin_client, settle, make_click):
    settle(clickid=make_click(ip="198.51.100.1").clickid, ip="203.0.113.50")
    settle(clickid=make_click(ip="198.51.100.1").clickid)
    response = admin_client.get("/api/v1/conversions/", {"ip_mismatch": "true"})
    [found] = response.json()["results"]
    assert found["ip_mismatch"] is True and "ctit" in found
    assert admin_client.get("/api/v1/conversions/", {"ctit_max": "3600"}).json()["count"] == 2


# The decline order, with rates and rules in it


def test_the_decline_order_with_rates_and_rules(settle, make_click, offer, partner):
    rule(offer, "sum", "gte", "0", action="declined", reason="Rule says no")
    Cap.objects.create(offer=offer, limit=Decimal(1000))

    def reason(**params):
        return settle(clickid=make_click().clickid, **params).conversion.reason

    # Payments not found comes before a missing rate ...
    assert reason(goal="nope", currency="JPY", status="3") == "Payments not found"
    # ... a missing rate before the advertiser's decline ...
    assert reason(currency="JPY", status="3") == "Exchange rate not found"
    # ... the advertiser's decline before a rule ...
    assert reason(status="3") == "Declined via advertiser's postback"
    # ... and a rule before caps.
    assert reason() == "Rule says no"
    Partner.objects.filter(pk=partner.pk).update(status="banned")
    assert reason(currency="JPY") == "Partner is banned"


# History of what postbacks do


@pytest.mark.skipif(connection.vendor != "postgresql", reason="history: PostgreSQL triggers")
def test_postback_changes_are_in_the_history_as_the_postbacks(settle, click):
    conversion = settle(clickid=click.clickid, status="2").conversion
    settle(clickid=click.clickid, status="1")
    entries = history_of(conversion)
    assert [(e["source"], e["user"], e["changes"]["status"]) for e in entries] == [
        ("postback", None, [None, "pending"]),
        ("postback", None, ["pending", "approved"]),
    ]


def test_a_status_update_by_a_word_fires_partner_postbacks_once(settle, click, offer, partner):
    PartnerPostback.objects.create(
        partner=partner, url="https://t.example.com/?s={status}&w={advertiser_status}"
    )
    offer.status_map = {"sale": "approved", "reg": "pending"}
    offer.save()
    settle(clickid=click.clickid, status="reg")
    settle(clickid=click.clickid, status="sale")
    sent = (
        PostbackDelivery.objects.filter(attempt=1).order_by("event").values_list("url", flat=True)
    )
    assert [url.split("?")[1] for url in sent] == ["s=2&w=reg", "s=1&w=sale"]


def test_the_check_trail_shows_the_conversion_and_the_rule(settle, click, offer):
    ExchangeRate.objects.create(base="EUR", quote="USD", rate=Decimal("1.1"), date=date(2026, 1, 1))
    rule(offer, "sum", "gt", "50", reason="Big sale")
    postback = settle(clickid=click.clickid, sum="100", currency="EUR")
    assert postback.checks["currency"] == {"ok": True, "detail": "100.00 EUR at 1.1 = 110.00"}
    assert postback.checks["rules"] == {"ok": True, "detail": "pending for review: Big sale"}
    postback = settle(clickid="a" * 24)
    rule(offer, "param:sub9", "eq", "bot", action="declined", reason="Bot")
    other = settle(
        clickid=Click.objects.create(offer=offer, partner=click.partner).clickid, sub9="bot"
    )
    assert other.checks["rules"] == {"ok": False, "detail": "Bot"}
