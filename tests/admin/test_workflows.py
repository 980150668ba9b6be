"""The panel's workflows: bulk status changes with a comment and a notify choice, fraud
signals, rules and exchange rates."""

from decimal import Decimal

import pytest
from django.db import connection

from affise_proj.history import history_of
from conversions.models import Conversion, PostbackDelivery
from offers.models import ExchangeRate, PostbackRule
from partners.models import PartnerPostback

from .test_conversions import URL, import_csv, messages_of, rows


@pytest.fixture
def partner_postback(partner):
    return PartnerPostback.objects.create(
        partner=partner, url="https://tracker.example.net/pb?c={clickid}&s={status}"
    )


def change(client, *conversions, **form):
    data = {"action": "change_status", "_selected_action": [c.pk for c in conversions], **form}
    return client.post(URL, data, follow=True)


def test_bulk_change_to_any_status_with_a_comment_fires_once_per_change(
    manager_client, make_conversion, partner_postback
):
    approved, declined = make_conversion(), make_conversion(status="declined")
    hold = make_conversion(status="pending")
    response = change(
        manager_client, approved, declined, hold, status="hold", comment="Waiting for the audit"
    )
    assert "3 conversions set hold; partner postbacks were fired." in messages_of(response)
    for conversion in (approved, declined, hold):
        conversion.refresh_from_db()
        assert conversion.status == "hold"
    sent = PostbackDelivery.objects.order_by("conversion_id")
    assert [(row.conversion_id, row.status) for row in sent] == [
        (approved.pk, "hold"),
        (declined.pk, "hold"),
        (hold.pk, "hold"),
    ]
    if connection.vendor == "postgresql":
        last = history_of(declined)[-1]
        assert (last["user"], last["source"], last["comment"]) == (
            "manager",
            "manager",
            "Waiting for the audit",
        )
        assert last["changes"]["status"] == ["declined", "hold"]


def test_bulk_change_without_notifying_sends_nothing(
    manager_client, make_conversion, partner_postback
):
    conversion = make_conversion()
    response = change(manager_client, conversion, status="declined", notify_partner="0")
    assert "1 conversion set declined; partners were not notified." in messages_of(response)
    conversion.refresh_from_db()
    assert (conversion.status, conversion.reason) == ("declined", "Rejected by a manager")
    assert not PostbackDelivery.objects.exists()


def test_bulk_change_without_a_status_changes_nothing(manager_client, make_conversion):
    conversion = make_conversion()
    response = change(manager_client, conversion, status="")
    assert "Choose the new status beside the action." in messages_of(response)
    conversion.refresh_from_db()
    assert conversion.status == "approved"


def test_fraud_signals_are_columns_and_filters(manager_client, make_conversion, make_click):
    make_conversion(ctit=3, ip_mismatch=True)
    make_conversion(ctit=4000, click=make_click())
    page = manager_client.get(URL).content.decode()
    assert "column-fraud_signals" in page and "3 s · IP ≠" in page
    assert rows(manager_client.get(URL + "?ctit=%3C15&all=")) == 1
    assert rows(manager_client.get(URL + "?ctit=%3E3600&all=")) == 1
    assert rows(manager_client.get(URL + "?ip_mismatch__exact=1&all=")) == 1
    assert rows(manager_client.get(URL + "?ip_mismatch__exact=0&all=")) == 1
    assert "IP mismatch" in page and "IP differs from the click&#x27;s" in page


def test_conversion_page_shows_the_sum_as_sent_and_the_fraud_signals(
    manager_client, make_conversion, make_click
):
    click = make_click(ip="198.51.100.4")
    converted = make_conversion(
        click=click,
        sum=Decimal("54"),
        currency="USD",
        original_sum=Decimal("50"),
        original_currency="EUR",
        exchange_rate=Decimal("1.08"),
        ip="203.0.113.9",
        ip_mismatch=True,
        ctit=4,
    )
    page = manager_client.get(f"{URL}{converted.pk}/change/").content.decode()
    for text in (
        "54.00 USD",
        "50.00 EUR",
        "1.08 (1 EUR = 1.08 USD)",
        "4 s",
        "≠ the click's 198.51.100.4",
    ):
        assert text in page, text
    plain = manager_client.get(f"{URL}{make_conversion().pk}/change/").content.decode()
    assert "10.00 USD (not converted)" in plain and "≠ the click" not in plain


def test_rules_are_edited_on_the_offer_page_and_a_malformed_one_is_a_form_error(
    manager_client, offer
):
    response = manager_client.post(
        "/admin/offers/postbackrule/add/",
        {
            "offer": offer.pk,
            "field": "sum",
            "op": "contains",
            "value": "x",
            "action": "declined",
            "reason": "No",
        },
    )
    assert response.status_code == 200
    assert "contains looks for text in a parameter" in response.content.decode()
    assert not PostbackRule.objects.exists()
    response = manager_client.post(
        "/admin/offers/postbackrule/add/",
        {
            "offer": offer.pk,
            "field": "ctit",
            "op": "lt",
            "value": "15",
            "action": "pending",
            "reason": "CTIT too short",
        },
    )
    assert response.status_code == 302
    assert (
        "CTIT too short"
        in manager_client.get(f"/admin/offers/offer/{offer.pk}/change/").content.decode()
    )


def test_exchange_rates_admin_refuses_a_rate_at_or_below_zero(manager_client):
    url = "/admin/offers/exchangerate/add/"
    body = {"base": "EUR", "quote": "USD", "date": "2026-11-30"}
    assert manager_client.post(url, {**body, "rate": "0"}).status_code == 200
    assert not ExchangeRate.objects.exists()
    assert manager_client.post(url, {**body, "rate": "1.08"}).status_code == 302
    assert "1.08" in manager_client.get("/admin/offers/exchangerate/").content.decode()


def test_a_malformed_status_map_is_a_form_error_in_the_admin(manager_client, advertiser):
    response = manager_client.post(
        f"/admin/offers/advertiser/{advertiser.pk}/change/",
        {
            "name": advertiser.name,
            "secure": "",
            "allowed_ips": "[]",
            "status_map": '{"sale": "paid"}',
        },
    )
    assert response.status_code == 200
    assert "maps to" in response.content.decode()
    advertiser.refresh_from_db()
    assert advertiser.status_map == {}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="history: PostgreSQL triggers")
def test_an_imported_conversion_is_the_imports_in_its_history(manager_client, offer, partner):
    text = (
        f"offer,partner,goal,action_id,clickid,sum,status\n{offer.pk},{partner.pk},1,imp-9,,5,2\n"
    )
    _, confirmed = import_csv(manager_client, text)
    assert confirmed.status_code == 200
    conversion = Conversion.objects.get(action_id="imp-9")
    [created] = history_of(conversion)
    assert (created["source"], created["user"]) == ("import", "manager")
    page = manager_client.get(f"{URL}{conversion.pk}/change/").content.decode()
    assert "Change history" in page and "import" in page
