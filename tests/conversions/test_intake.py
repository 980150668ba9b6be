"""Whatever an advertiser sends is stored within its columns and ends in a DESIGN.md outcome."""

import json

import pytest

from conversions.intake import spool
from conversions.models import Conversion, Postback
from conversions.processing import settlement

pytestmark = pytest.mark.django_db


def clickid_column() -> int:
    return Postback._meta.get_field("clickid").max_length


def accept(client, path: str = "/postback", data=None, *, method: str = "get", **extra) -> Postback:
    """Send a postback; it must be answered status 1 and stored in the table, not spooled."""
    response = getattr(client, method)(path, data, **extra)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == 1
    assert spool.pending() == 0
    return Postback.objects.get(pk=response.json()["id"])


def processed(row: Postback) -> Postback:
    """The same checks and callback as the worker's, run here."""
    settlement.process_inline(row.pk)
    row.refresh_from_db()
    return row


def test_a_clickid_longer_than_its_column_is_stored_and_rejected_as_invalid(client):
    clickid = "a" * 100
    row = accept(client, f"/postback?clickid={clickid}")
    assert row.clickid == clickid[: clickid_column()]
    assert row.params == {"clickid": clickid}
    row = processed(row)
    assert (row.state, row.error) == ("rejected", "Click_id: invalid format")


def test_an_action_id_longer_than_its_column_is_stored_cut_with_the_raw_value_kept(client, click):
    action_id = "é" * 300
    row = accept(
        client,
        "/postback",
        data=f"clickid={click.clickid}&action_id={action_id}",
        method="post",
        content_type="application/x-www-form-urlencoded",
    )
    width = Postback._meta.get_field("action_id").max_length
    assert row.action_id == action_id[:width]
    assert row.params["action_id"] == action_id
    row = processed(row)
    assert row.state == "accepted"
    assert (
        row.conversion.action_id == action_id[: Conversion._meta.get_field("action_id").max_length]
    )


def test_a_goal_that_grows_when_lowered_is_an_unknown_goal(client, click):
    goal = "İ" * 64  # "İ".lower() is two characters
    row = processed(accept(client, "/postback", data={"clickid": click.clickid, "goal": goal}))
    assert (row.state, row.error) == ("accepted", "")
    conversion = row.conversion
    assert (conversion.status, conversion.reason) == ("declined", "Payments not found")
    assert len(conversion.goal) <= Conversion._meta.get_field("goal").max_length
    assert row.params["goal"] == goal


def test_a_known_goal_is_matched_whatever_its_case(client, click):
    row = processed(accept(client, "/postback", data={"clickid": click.clickid, "goal": " 1 "}))
    assert (row.state, row.conversion.status, row.conversion.goal) == ("accepted", "approved", "1")


@pytest.mark.parametrize("currency", ["ßßß", "€€€", "ÄÖÜ", "US", "eurx", "1$ "])
def test_a_currency_that_is_not_three_ascii_letters_leaves_the_offers(client, click, currency):
    row = processed(
        accept(client, "/postback", data={"clickid": click.clickid, "currency": currency})
    )
    assert (row.state, row.error) == ("accepted", "")
    assert row.conversion.currency == click.offer.currency
    assert row.params["currency"] == currency


def test_a_currency_code_is_upper_cased(client, click):
    row = processed(accept(client, "/postback", data={"clickid": click.clickid, "currency": "eur"}))
    assert row.conversion.currency == "EUR"


def test_a_json_body_nested_too_deep_is_recorded_raw_and_rejected(client):
    body = "[" * 1000 + "]" * 1000
    row = accept(client, method="post", data=body, content_type="application/json")
    assert row.params == {"_body": body}
    row = processed(row)
    assert (row.state, row.error) == ("rejected", "Missing mandatory parameter clickid")


def test_a_json_body_nested_too_deep_keeps_the_query_strings_clickid(client, click):
    body = '{"a": ' + "[" * 1000 + "]" * 1000 + "}"
    row = accept(
        client,
        f"/postback?clickid={click.clickid}",
        method="post",
        data=body,
        content_type="application/json",
    )
    assert row.params == {"clickid": click.clickid, "_body": body}
    assert processed(row).state == "accepted"


def test_json_values_nested_deep_but_parseable_are_recorded(client):
    value = "[" * 400 + "]" * 400
    row = accept(
        client,
        method="post",
        data=json.dumps({"x": json.loads(value)}),
        content_type="application/json",
    )
    assert json.loads(row.params["x"]) == json.loads(value)


@pytest.fixture
def whitelisted(click):
    click.offer.allowed_ips = ["203.0.113.50"]
    click.offer.save()
    return click


def test_forwarded_hops_written_by_the_client_cannot_pass_the_ip_whitelist(
    client, whitelisted, settings
):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    forged = "203.0.113.50, " * 40
    row = accept(
        client,
        f"/postback?clickid={whitelisted.clickid}",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=f"{forged}198.51.100.66, 10.0.0.2",
    )
    assert row.ip == "198.51.100.66"
    row = processed(row)
    assert (row.state, row.error) == ("rejected", "Current IP-address is denied")


def test_the_client_behind_a_chain_of_trusted_proxies_is_found(client, whitelisted, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxies = ", ".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(3000))
    row = accept(
        client,
        f"/postback?clickid={whitelisted.clickid}",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR=f"198.51.100.66, 203.0.113.50, {proxies}",
    )
    assert row.ip == "203.0.113.50"
    assert processed(row).state == "accepted"
