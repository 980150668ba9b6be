"""Which partner postbacks fire for a conversion event, and what their URLs say."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from conversions.models import Conversion
from conversions.processing.statuses import set_status
from offers.models import Goal
from partners.models import PartnerPostback

from .conftest import deliveries

pytestmark = pytest.mark.django_db


def fired_to(conversion) -> set[int]:
    return {d.partner_postback_id for d in deliveries(conversion=conversion)}


def test_every_macro_is_filled_and_url_encoded(make_postback, make_click, make_conversion):
    pp = make_postback(
        query=(
            "?c={clickid}&cid={conversion_id}&t={transactionid}&o={offer_id}&p={pid}&g={goal}"
            "&s={status}&sum={sum}&rev={revenue}&cur={currency}&s1={sub1}&s8={sub8}&ip={ip}"
            "&d={date}&ts={timestamp}"
        )
    )
    click = make_click(sub1="a b&c=d/é", sub8="x?y#z")
    conversion = make_conversion(
        click=click, action_id="tx 1/2", payout=Decimal("2.5"), ip="203.0.113.9"
    )

    (row,) = deliveries(conversion=conversion)

    assert row.url == pp.url.split("?")[0] + (
        f"?c={click.clickid}&cid={conversion.pk}&t=tx%201%2F2&o={conversion.offer_id}"
        f"&p={conversion.partner_id}&g=1&s=1&sum=2.50&rev=3.00&cur=USD"
        "&s1=a%20b%26c%3Dd%2F%C3%A9&s8=x%3Fy%23z&ip=203.0.113.9"
        f"&d={conversion.created_at.date().isoformat()}&ts={int(conversion.created_at.timestamp())}"
    )
    assert (row.state, row.attempt, row.event, row.status) == ("pending", 1, 1, "approved")


def test_workflow_macros_carry_the_advertisers_status_original_sum_currency_and_ctit(
    make_postback, make_conversion
):
    make_postback(
        query="?as={advertiser_status}&os={original_sum}&oc={original_currency}&ct={ctit}"
    )
    converted = make_conversion(
        advertiser_status="Sale OK",
        sum=Decimal("108"),
        original_sum=Decimal("100"),
        original_currency="EUR",
        exchange_rate=Decimal("1.08"),
        ctit=42,
    )
    plain = make_conversion(sum=Decimal("7.5"))

    (row,) = deliveries(conversion=converted)
    assert row.url.endswith("?as=Sale%20OK&os=100.00&oc=EUR&ct=42")
    # Not converted: the sum as sent is the sum, in the conversion's currency; ctit unknown.
    (row,) = deliveries(conversion=plain)
    assert row.url.endswith("?as=&os=7.50&oc=USD&ct=")


def test_unknown_macro_is_refused_when_the_postback_is_saved(partner):
    with pytest.raises(ValidationError, match="nope"):
        PartnerPostback.objects.create(partner=partner, url="https://t.example/?x={nope}")
    assert not PartnerPostback.objects.exists()


def test_only_http_and_https_urls_can_be_saved(partner):
    with pytest.raises(ValidationError, match="http"):
        PartnerPostback.objects.create(partner=partner, url="ftp://t.example/{clickid}")


def test_status_filter_fires_only_for_listed_statuses(make_postback, make_conversion):
    approved_only = make_postback(statuses=["approved"])
    every_status = make_postback()

    pending = make_conversion(status="pending", action_id="a")
    approved = make_conversion(status="approved", action_id="b")

    assert fired_to(pending) == {every_status.pk}
    assert fired_to(approved) == {approved_only.pk, every_status.pk}


def test_status_change_fires_a_new_event_with_the_new_status(make_postback, make_conversion):
    make_postback(statuses=["approved", "declined"])
    conversion = make_conversion(status="pending")
    assert deliveries(conversion=conversion) == []

    with transaction.atomic():
        set_status(Conversion.objects.select_for_update().get(pk=conversion.pk), "declined", "x")

    (row,) = deliveries(conversion=conversion)
    assert (row.event, row.status) == (2, "declined")
    assert "status=3" in row.url


def test_goal_filter_matches_the_goal_value_case_insensitively(
    offer, make_postback, make_conversion
):
    reg = Goal.objects.create(offer=offer, value="Reg")
    install = offer.goals.get(value="1")
    for_reg = make_postback(offer=offer, goal=reg)
    for_install = make_postback(offer=offer, goal=install)

    conversion = make_conversion(goal="reg")

    assert fired_to(conversion) == {for_reg.pk}
    assert for_install.pk not in fired_to(make_conversion(goal="sale"))


def test_global_and_offer_postbacks_both_fire(offer, make_offer, make_postback, make_conversion):
    global_pp = make_postback()
    local_pp = make_postback(offer=offer)
    make_postback(offer=make_offer(title="Other offer"))

    assert fired_to(make_conversion()) == {global_pp.pk, local_pp.pk}


def test_offer_postback_replacing_global_silences_the_global_one(
    offer, make_postback, make_conversion
):
    make_postback()
    local_pp = make_postback(offer=offer, replaces_global=True)

    assert fired_to(make_conversion()) == {local_pp.pk}


def test_replacing_applies_only_when_the_offer_postback_matches_the_event(
    offer, make_postback, make_conversion
):
    global_pp = make_postback()
    make_postback(offer=offer, replaces_global=True, statuses=["declined"])

    assert fired_to(make_conversion(status="approved")) == {global_pp.pk}


def test_disabled_postbacks_and_other_partners_postbacks_do_not_fire(
    make_postback, make_conversion, partner
):
    from partners.models import Partner

    make_postback(enabled=False)
    make_postback(partner=Partner.objects.create(name="Someone else"))

    assert fired_to(make_conversion()) == set()


def test_firing_one_event_twice_records_it_once(make_postback, make_conversion):
    from conversions.delivery.deliveries import fire

    make_postback()
    conversion = make_conversion()
    with transaction.atomic():
        fire(conversion)

    assert len(deliveries(conversion=conversion)) == 1


def test_turning_a_disabled_postback_back_on_clears_its_failure_record(make_postback):
    pp = make_postback()
    PartnerPostback.objects.filter(pk=pp.pk).update(
        enabled=False, consecutive_failures=20, disabled_reason="Disabled after 20 failures"
    )
    pp.refresh_from_db()
    assert pp.auto_disabled
    assert pp.delivery_state == "Disabled after 20 failures"

    pp.enabled = True
    pp.save()

    pp.refresh_from_db()
    assert (pp.consecutive_failures, pp.disabled_reason, pp.auto_disabled) == (0, "", False)


def test_statuses_must_be_known_conversion_statuses(partner):
    pp = PartnerPostback(partner=partner, url="https://t.example/", statuses=["approved", "paid"])
    with pytest.raises(ValidationError, match="statuses"):
        pp.full_clean()
    pp.statuses = ["approved", "hold"]
    pp.full_clean()
