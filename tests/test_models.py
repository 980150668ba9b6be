"""Integrity lives in the database: each constraint refuses what it should."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from conversions.models import Click, Conversion, Postback, PostbackDelivery
from offers.models import Advertiser, Cap, CapCounter, Goal, Offer, Payout
from partners.models import CONVERSION_STATUSES, OfferAccess, Partner, PartnerPostback

pytestmark = pytest.mark.django_db


def refused(make):
    with pytest.raises(IntegrityError), transaction.atomic():
        make()


def test_every_model_has_a_readable_str(offer, partner, click):
    goal = offer.goals.get()
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="approved"
    )
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example/?c={clickid}")
    objects = [
        offer.advertiser,
        offer,
        goal,
        Payout.objects.get(),
        Cap.objects.create(offer=offer, limit=10),
        partner,
        OfferAccess.objects.create(offer=offer, partner=partner),
        pp,
        click,
        Postback.objects.create(method="GET", params={}),
        conversion,
        PostbackDelivery.objects.create(conversion=conversion, partner_postback=pp, url="x"),
    ]
    for obj in objects:
        assert str(obj) and "object (" not in str(obj)


def test_offer_hold_period_is_at_most_1440_hours(offer):
    offer.hold_period = 1441
    with pytest.raises(ValidationError):
        offer.full_clean()
    refused(lambda: Offer.objects.filter(pk=offer.pk).update(hold_period=1441))


def test_offer_status_and_privacy_must_be_known(offer):
    refused(lambda: Offer.objects.filter(pk=offer.pk).update(status="archived"))
    refused(lambda: Offer.objects.filter(pk=offer.pk).update(privacy="secret"))
    refused(lambda: Offer.objects.filter(pk=offer.pk).update(default_status="declined"))


def test_offer_defaults_follow_the_design(advertiser):
    offer = Offer.objects.create(advertiser=advertiser, title="t", url="https://x.example/")
    assert (offer.currency, offer.click_lifespan, offer.min_click_lifespan) == ("USD", 720, 0)
    assert (offer.hold_period, offer.default_status, offer.status) == (0, "approved", "active")


def test_offer_url_refuses_unknown_macros(offer):
    offer.url = "https://x.example/?c={clickid}&bad={nope}"
    with pytest.raises(ValidationError, match="nope"):
        offer.full_clean()


def test_allowed_ips_must_be_ips_or_networks(offer):
    offer.allowed_ips = ["10.0.0.0/8", "2001:db8::1", "not-an-ip"]
    with pytest.raises(ValidationError, match="not-an-ip"):
        offer.full_clean()
    offer.allowed_ips = ["10.0.0.0/8", "2001:db8::1"]
    offer.full_clean()


def test_goal_value_is_unique_per_offer_ignoring_case(offer, make_offer):
    refused(lambda: Goal.objects.create(offer=offer, value="1"))
    Goal.objects.create(offer=offer, value="Reg")
    refused(lambda: Goal.objects.create(offer=offer, value="reg"))
    Goal.objects.create(offer=make_offer(), value="reg")


def test_payout_amounts_are_not_negative_and_percent_at_most_100(offer):
    goal = offer.goals.get()
    refused(
        lambda: Payout.objects.create(offer=offer, goal=goal, country="US", revenue=-1, payout=1)
    )
    refused(
        lambda: Payout.objects.create(
            offer=offer, goal=goal, country="DE", type="percent", revenue=101, payout=5
        )
    )
    Payout.objects.create(
        offer=offer, goal=goal, country="FR", type="percent", revenue=100, payout=50
    )


def test_one_payout_rule_per_goal_partner_and_country(offer, partner):
    goal = offer.goals.get()
    refused(lambda: Payout.objects.create(offer=offer, goal=goal, revenue=1, payout=1))
    Payout.objects.create(offer=offer, goal=goal, partner=partner, revenue=1, payout=1)
    refused(
        lambda: Payout.objects.create(offer=offer, goal=goal, partner=partner, revenue=2, payout=2)
    )


def test_payout_country_is_alpha2(offer):
    rule = Payout(offer=offer, goal=offer.goals.get(), country="usa", revenue=1, payout=1)
    with pytest.raises(ValidationError):
        rule.full_clean()


def test_cap_limit_must_be_positive(offer):
    refused(lambda: Cap.objects.create(offer=offer, limit=0))
    refused(lambda: Cap.objects.create(offer=offer, limit=5, period="week"))
    refused(lambda: Cap.objects.create(offer=offer, limit=5, kind="clicks"))
    refused(lambda: Cap.objects.create(offer=offer, limit=5, overcap_status="hold"))
    cap = Cap.objects.create(offer=offer, limit=Decimal("12.5"), kind="payout")
    assert cap.overcap_status == "declined"


def test_one_cap_counter_per_period(offer):
    cap = Cap.objects.create(offer=offer, limit=5)
    CapCounter.objects.create(cap=cap, period_key="2026-11-26")
    refused(lambda: CapCounter.objects.create(cap=cap, period_key="2026-11-26"))


def test_partner_status_must_be_known(partner):
    refused(lambda: Partner.objects.filter(pk=partner.pk).update(status="sleeping"))


def test_offer_access_is_unique(offer, partner):
    OfferAccess.objects.create(offer=offer, partner=partner)
    refused(lambda: OfferAccess.objects.create(offer=offer, partner=partner))


def test_partner_postback_url_refuses_unknown_macros(partner):
    pp = PartnerPostback(partner=partner, url="https://t.example/?c={clickid}&x={whatever}")
    with pytest.raises(ValidationError, match="whatever"):
        pp.full_clean()


def test_clickid_is_unique_and_24_lowercase_hex(click, offer, partner):
    refused(lambda: Click.objects.create(offer=offer, partner=partner, clickid=click.clickid))
    refused(lambda: Click.objects.create(offer=offer, partner=partner, clickid="ABCDEF" * 4))
    refused(lambda: Click.objects.create(offer=offer, partner=partner, clickid="abc"))


def test_postback_state_must_be_known():
    row = Postback.objects.create(method="GET", params={"a": "b"})
    refused(lambda: Postback.objects.filter(pk=row.pk).update(state="lost"))


def test_conversion_unique_per_action_id_and_per_click_and_goal(offer, partner, make_click):
    first, second = make_click(), make_click()

    def make(click, goal, action_id="", **fields):
        return Conversion.objects.create(
            offer=offer,
            partner=partner,
            click=click,
            goal=goal,
            action_id=action_id,
            status="approved",
            **fields,
        )

    make(first, "1", "A1")
    refused(lambda: make(second, "1", "A1"))
    # One conversion per click and goal, whatever the action_id; goals ignore case.
    refused(lambda: make(first, "1"))
    refused(lambda: make(first, "1", "A2"))
    make(first, "sale")
    refused(lambda: make(first, "SALE", "A3"))
    # ... unless made under a goal that allows several.
    make(first, "sale", "A4", multiple=True)
    make(second, "1", "A5")


def test_conversion_hold_needs_hold_until(offer, partner, click):
    refused(
        lambda: Conversion.objects.create(offer=offer, partner=partner, click=click, status="hold")
    )
    refused(
        lambda: Conversion.objects.create(offer=offer, partner=partner, click=click, status="won")
    )


def test_delivery_is_unique_per_event_and_attempt(offer, partner, click):
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="approved"
    )
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example/")
    PostbackDelivery.objects.create(conversion=conversion, partner_postback=pp, url="u", event=1)
    refused(
        lambda: PostbackDelivery.objects.create(
            conversion=conversion, partner_postback=pp, url="u", event=1
        )
    )
    PostbackDelivery.objects.create(
        conversion=conversion, partner_postback=pp, url="u", event=1, attempt=2
    )
    refused(lambda: PostbackDelivery.objects.filter(attempt=2).update(state="lost"))


def test_advertiser_defaults():
    adv = Advertiser.objects.create(name="A")
    assert (adv.secure, adv.allowed_ips) == ("", [])


def test_partner_postback_statuses_are_the_conversion_statuses():
    assert tuple(Conversion.Status.values) == CONVERSION_STATUSES
