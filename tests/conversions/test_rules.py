"""Every rejection and decline of DESIGN.md, in its order, through a real worker."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from conversions.models import Conversion
from conversions.processing import statuses
from offers.models import Cap, Goal, Payout
from partners.models import Partner


def test_valid_postback_creates_an_approved_conversion(process, click, offer, partner):
    row = process(clickid=click.clickid, action_id="T-1", sum="12.5", ip="198.51.100.1")
    assert (row.state, row.error) == ("accepted", "")
    conv = Conversion.objects.get()
    assert row.conversion == conv and row.offer_id == offer.pk and row.attempts == 1
    assert (conv.offer, conv.partner, conv.click, conv.goal) == (offer, partner, click.clickid, "1")
    assert (conv.status, conv.reason, conv.action_id) == ("approved", "", "T-1")
    assert (conv.revenue, conv.payout, conv.sum) == (Decimal(3), Decimal(2), Decimal("12.5"))
    assert (conv.currency, conv.ip) == ("USD", "198.51.100.1")


def test_click_id_alias_and_extra_fields_are_recorded(process, click):
    row = process(
        click_id=click.clickid, comment="first deposit", custom_field3="vip", currency="eur"
    )
    assert row.state == "accepted"
    conv = row.conversion
    assert (conv.comment, conv.custom_fields, conv.currency) == (
        "first deposit",
        {"custom_field3": "vip"},
        "EUR",
    )


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({}, "Missing mandatory parameter clickid"),
        ({"clickid": "", "status": "9"}, "Missing mandatory parameter clickid"),
        ({"clickid": "xyz", "status": "9"}, "Click_id: invalid format"),
        ({"clickid": "0" * 23}, "Click_id: invalid format"),
        ({"clickid": "g" * 24}, "Click_id: invalid format"),
        ({"clickid": "a" * 24, "status": "4"}, "Invalid parameter status"),
        ({"clickid": "a" * 24, "sum": "ten"}, "Invalid parameter sum"),
        ({"clickid": "a" * 24, "sum": "-1"}, "Invalid parameter sum"),
        ({"clickid": "a" * 24, "sum": "NaN"}, "Invalid parameter sum"),
        ({"clickid": "a" * 24}, "Click not found"),
    ],
)
def test_malformed_postbacks_are_rejected_with_their_reason(process, params, error):
    row = process(**params)
    assert (row.state, row.error) == ("rejected", error)
    assert not Conversion.objects.exists()


def test_status_and_sum_are_checked_before_the_click(process):
    row = process(clickid="b" * 24, status="7", sum="oops")
    assert row.error == "Invalid parameter status"


def test_disabled_offer_is_rejected_before_the_secure_code(process, click, offer):
    offer.status = "disabled"
    offer.secure = "s3cret"
    offer.save()
    assert process(clickid=click.clickid).error == "Offer disabled"


def test_paused_offer_still_converts(process, click, offer):
    offer.status = "paused"
    offer.save()
    assert process(clickid=click.clickid).state == "accepted"


@pytest.mark.parametrize("level", ["offer", "advertiser", "platform"])
def test_secure_code_is_required_at_each_level(process, make_click, offer, settings, level):
    if level == "offer":
        offer.secure = "code-o"
        offer.save()
    elif level == "advertiser":
        offer.advertiser.secure = "code-a"
        offer.advertiser.save()
    else:
        settings.POSTBACK_SECURE = "code-p"
    code = {"offer": "code-o", "advertiser": "code-a", "platform": "code-p"}[level]
    assert process(clickid=make_click().clickid).error == "Access denied"
    assert process(clickid=make_click().clickid, secure="wrong").error == "Access denied"
    assert process(clickid=make_click().clickid, secure=code).state == "accepted"


def test_any_configured_secure_code_matches(process, make_click, offer, settings):
    offer.secure = "code-o"
    offer.save()
    offer.advertiser.secure = "code-a"
    offer.advertiser.save()
    settings.POSTBACK_SECURE = "code-p"
    for code in ("code-o", "code-a", "code-p"):
        assert process(clickid=make_click().clickid, secure=code).state == "accepted"


def test_secure_is_checked_before_the_ip(process, click, offer):
    offer.secure = "s"
    offer.allowed_ips = ["10.0.0.0/8"]
    offer.save()
    assert process(clickid=click.clickid).error == "Access denied"


@pytest.mark.parametrize("where", ["offer", "advertiser"])
def test_sender_ip_outside_allowed_ips_is_denied(process, make_click, offer, where):
    owner = offer if where == "offer" else offer.advertiser
    owner.allowed_ips = ["192.0.2.0/24"]
    owner.save()
    assert process(clickid=make_click().clickid).error == "Current IP-address is denied"
    owner.allowed_ips = ["192.0.2.0/24", "203.0.113.7"]  # the test client's address
    owner.save()
    assert process(clickid=make_click().clickid).state == "accepted"


def test_ip_is_checked_before_duplicates(process, click, offer):
    assert process(clickid=click.clickid).state == "accepted"
    offer.allowed_ips = ["192.0.2.1"]
    offer.save()
    assert process(clickid=click.clickid).error == "Current IP-address is denied"


def test_status_update_of_a_pending_conversion(process, click):
    first = process(clickid=click.clickid, status="2")
    assert first.conversion.status == "pending"
    second = process(clickid=click.clickid, status="1")
    assert second.state == "accepted" and second.conversion_id == first.conversion_id
    conv = Conversion.objects.get()
    assert (conv.status, conv.version) == ("approved", 2)


def test_status_update_to_declined_by_the_advertiser(process, click):
    process(clickid=click.clickid, status="2")
    process(clickid=click.clickid, status="3")
    conv = Conversion.objects.get()
    assert (conv.status, conv.reason) == ("declined", "Declined via advertiser's postback")


def test_status_sent_for_a_conversion_that_is_not_pending(process, click):
    process(clickid=click.clickid, status="1")
    row = process(clickid=click.clickid, status="2")
    assert (row.state, row.error) == ("rejected", "Conversion status is not pending")
    assert Conversion.objects.get().status == "approved"


def test_no_status_for_an_existing_conversion(process, click):
    process(clickid=click.clickid, status="2")
    row = process(clickid=click.clickid)
    assert (row.state, row.error) == ("rejected", "Conversion exists")


def test_duplicate_by_clickid_is_rejected(process, click):
    assert process(clickid=click.clickid).state == "accepted"
    assert process(clickid=click.clickid).error == "Conversion exists"
    assert Conversion.objects.count() == 1


def test_duplicate_action_id_is_rejected_even_from_another_click(process, make_click):
    assert process(clickid=make_click().clickid, action_id="ORDER-9").state == "accepted"
    assert process(clickid=make_click().clickid, action_id="ORDER-9").error == "Conversion exists"
    assert process(clickid=make_click().clickid, action_id="ORDER-10").state == "accepted"
    assert Conversion.objects.count() == 2


def test_one_click_converts_once_per_goal_whatever_its_action_id(process, click, offer):
    Goal.objects.create(offer=offer, value="sale")
    assert process(clickid=click.clickid, action_id="A").state == "accepted"
    assert process(clickid=click.clickid, action_id="B").error == "Conversion exists"
    assert process(clickid=click.clickid, goal="sale").conversion.reason == "Payments not found"
    assert Conversion.objects.count() == 2


def test_goal_is_matched_case_insensitively(process, click, offer):
    goal = Goal.objects.create(offer=offer, value="Reg")
    Payout.objects.create(offer=offer, goal=goal, revenue=Decimal(9), payout=Decimal(7))
    row = process(clickid=click.clickid, goal="REG")
    assert row.state == "accepted"
    assert (row.conversion.goal, row.conversion.payout) == ("Reg", Decimal(7))
    assert process(clickid=click.clickid, goal="reg").error == "Conversion exists"


def test_personal_and_country_payouts_are_preferred(process, make_click, offer, partner):
    goal = offer.goals.get()  # general, any country: payout 2
    Payout.objects.create(offer=offer, goal=goal, country="US", revenue=5, payout=3)
    Payout.objects.create(offer=offer, goal=goal, partner=partner, revenue=8, payout=5)
    Payout.objects.create(
        offer=offer, goal=goal, partner=partner, country="US", revenue=9, payout=7
    )
    other = Partner.objects.create(name="Other")
    cases = [
        (make_click(country="US"), Decimal(7)),  # personal + country
        (make_click(country="DE"), Decimal(5)),  # personal beats general country
        (make_click(partner=other, country="US"), Decimal(3)),  # general, country-specific
        (make_click(partner=other, country="FR"), Decimal(2)),  # general, any country
    ]
    for click, expected in cases:
        row = process(clickid=click.clickid)
        assert row.conversion.payout == expected, click.country


def test_percent_payout_is_a_share_of_the_sum(process, click, offer):
    goal = Goal.objects.create(offer=offer, value="sale")
    Payout.objects.create(offer=offer, goal=goal, type="percent", revenue=10, payout=Decimal("7.5"))
    conv = process(clickid=click.clickid, goal="sale", sum="200").conversion
    assert (conv.revenue, conv.payout, conv.sum) == (Decimal(20), Decimal(15), Decimal(200))


@pytest.mark.parametrize("status", ["disabled", "banned"])
def test_inactive_partner_declines_the_conversion(process, click, partner, status):
    partner.status = status
    partner.save()
    row = process(clickid=click.clickid, status="3")  # partner comes before status 3
    assert row.state == "accepted"
    assert (row.conversion.status, row.conversion.reason) == (
        "declined",
        f"Partner is {status}",
    )


def test_partner_decline_comes_before_lifespan(process, make_click, offer, partner):
    partner.status = "disabled"
    partner.save()
    old = make_click(created_at=timezone.now() - timedelta(hours=721))
    assert process(clickid=old.clickid).conversion.reason == "Partner is disabled"


def test_expired_click_declines(process, make_click, offer):
    old = make_click(created_at=timezone.now() - timedelta(hours=721))
    conv = process(clickid=old.clickid, goal="unknown").conversion
    assert (conv.status, conv.reason) == ("declined", "Click session lifespan is expired")
    offer.click_lifespan = 1000
    offer.save()
    assert process(clickid=old.clickid).conversion.status == "approved"


def test_too_early_postback_declines(process, click, offer):
    offer.min_click_lifespan = 3600
    offer.save()
    conv = process(clickid=click.clickid, goal="nope").conversion
    assert (conv.status, conv.reason) == ("declined", "Min click session lifespan is not reached")


def test_unknown_goal_or_no_payout_rule_declines(process, make_click, offer, partner):
    conv = process(clickid=make_click().clickid, goal="Mystery", status="3").conversion
    assert (conv.status, conv.reason, conv.goal) == ("declined", "Payments not found", "mystery")
    Goal.objects.create(offer=offer, value="dep")
    Payout.objects.create(
        offer=offer, goal=Goal.objects.get(value="dep"), country="BR", revenue=1, payout=1
    )
    conv = process(clickid=make_click(country="US").clickid, goal="dep").conversion
    assert (conv.status, conv.reason, conv.payout) == ("declined", "Payments not found", 0)


def test_status_3_declines_via_advertiser_before_the_cap(process, make_click, offer):
    Cap.objects.create(offer=offer, limit=1)
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    conv = process(clickid=make_click().clickid, status="3").conversion
    assert (conv.status, conv.reason) == ("declined", "Declined via advertiser's postback")


def test_cap_declines_once_reached_and_declined_do_not_count(process, make_click, offer):
    Cap.objects.create(offer=offer, limit=2, period="day")
    process(clickid=make_click().clickid, status="3")  # declined: does not count
    statuses = [process(clickid=make_click().clickid).conversion for _ in range(3)]
    assert [(c.status, c.reason) for c in statuses] == [
        ("approved", ""),
        ("approved", ""),
        ("declined", "Cap is reached"),
    ]


def test_pending_and_hold_count_against_the_cap(process, make_click, offer):
    Cap.objects.create(offer=offer, limit=2)
    offer.hold_period = 24
    offer.save()
    assert process(clickid=make_click().clickid, status="2").conversion.status == "pending"
    assert process(clickid=make_click().clickid).conversion.status == "hold"
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"


def test_overcap_pending_cap_lets_conversions_through_as_pending(process, make_click, offer):
    Cap.objects.create(offer=offer, limit=1, overcap_status="pending")
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    conv = process(clickid=make_click().clickid).conversion
    assert (conv.status, conv.reason) == ("pending", "Cap is reached")


def test_payout_cap_counts_money(process, make_click, offer):
    Cap.objects.create(offer=offer, kind="payout", limit=Decimal(5))  # payout 2 each
    results = [process(clickid=make_click().clickid).conversion.status for _ in range(3)]
    assert results == ["approved", "approved", "declined"]


def test_partner_cap_counts_only_that_partner(process, make_click, offer, partner):
    Cap.objects.create(offer=offer, partner=partner, limit=1)
    other = Partner.objects.create(name="Other")
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"
    assert process(clickid=make_click(partner=other).clickid).conversion.status == "approved"


def test_goal_cap_counts_only_that_goal(process, make_click, offer):
    sale = Goal.objects.create(offer=offer, value="sale")
    Payout.objects.create(offer=offer, goal=sale, revenue=1, payout=1)
    Cap.objects.create(offer=offer, goal=sale, limit=1)
    assert process(clickid=make_click().clickid, goal="sale").conversion.status == "approved"
    assert process(clickid=make_click().clickid, goal="sale").conversion.reason == "Cap is reached"
    assert process(clickid=make_click().clickid).conversion.status == "approved"


def test_daily_cap_resets_the_next_day_in_cap_timezone(process, make_click, offer, settings):
    Cap.objects.create(offer=offer, limit=1, period="day")
    settings.CAP_TIMEZONE = "Asia/Tokyo"
    with time_machine.travel("2026-11-26 14:30 +00:00", tick=True):  # 23:30 in Tokyo
        assert process(clickid=make_click().clickid).conversion.status == "approved"
        assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"
    with time_machine.travel("2026-11-26 15:30 +00:00", tick=True):  # next day in Tokyo
        assert process(clickid=make_click().clickid).conversion.status == "approved"


def test_default_status_applies_when_none_is_sent(process, make_click, offer):
    offer.default_status = "pending"
    offer.save()
    assert process(clickid=make_click().clickid).conversion.status == "pending"
    assert process(clickid=make_click().clickid, status="1").conversion.status == "approved"


def test_hold_period_holds_then_approves_automatically(process, click, offer):
    offer.hold_period = 48
    offer.save()
    conv = process(clickid=click.clickid).conversion
    assert conv.status == "hold"
    assert conv.hold_until == conv.created_at + timedelta(hours=48)
    with time_machine.travel(conv.hold_until - timedelta(minutes=1)):
        assert statuses.approve_holds() == 0
    with time_machine.travel(conv.hold_until + timedelta(minutes=1)):
        assert statuses.approve_holds() == 1
    conv.refresh_from_db()
    assert (conv.status, conv.hold_until, conv.version) == ("approved", None, 2)


def test_status_5_puts_the_conversion_on_hold(process, click, offer):
    offer.hold_period = 2
    offer.save()
    conv = process(clickid=click.clickid, status="5").conversion
    assert conv.status == "hold" and conv.hold_until is not None


def test_pending_conversion_approved_later_goes_on_hold_if_the_offer_holds(process, click, offer):
    offer.hold_period = 24
    offer.save()
    process(clickid=click.clickid, status="2")
    process(clickid=click.clickid, status="1")
    assert Conversion.objects.get().status == "hold"


def test_advertiser_decline_of_pending_frees_the_cap(process, make_click, offer):
    Cap.objects.create(offer=offer, limit=1)
    first = make_click()
    process(clickid=first.clickid, status="2")
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"
    process(clickid=first.clickid, status="3")
    assert process(clickid=make_click().clickid).conversion.status == "approved"
