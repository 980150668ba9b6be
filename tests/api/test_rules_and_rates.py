"""Rules, exchange rates and status maps through the API; load_rates (DESIGN.md, second round)."""

import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from offers.models import ExchangeRate, Goal, PostbackRule


def test_a_manager_creates_reads_changes_and_deletes_a_rule(manager_api, offer):
    goal = offer.goals.get()
    created = manager_api.post(
        "/api/v1/rules/",
        {
            "offer": offer.pk,
            "goal": goal.pk,
            "field": "ctit",
            "op": "lt",
            "value": "15",
            "action": "pending",
            "reason": "CTIT too short",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert rule["field"] == "ctit" and rule["reason"] == "CTIT too short"
    url = f"/api/v1/rules/{rule['id']}/"
    assert manager_api.get(url).json() == rule
    changed = manager_api.patch(url, {"action": "declined"}, format="json")
    assert changed.json()["action"] == "declined"
    assert manager_api.delete(url).status_code == 204
    assert not PostbackRule.objects.exists()


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"field": "amount", "op": "lt", "value": "1"}, "field"),
        ({"field": "param:", "op": "eq", "value": "x"}, "field"),
        ({"field": "sum", "op": "between", "value": "1"}, "op"),
        ({"field": "sum", "op": "contains", "value": "1"}, "op"),
        ({"field": "sum", "op": "gt", "value": "lots"}, "value"),
        ({"field": "param:country", "op": "gte", "value": "DE"}, "value"),
        ({"field": "param:country", "op": "eq", "value": ""}, "value"),
        ({"field": "ctit", "op": "lt", "value": "15", "action": "approved"}, "action"),
        ({"field": "ctit", "op": "lt", "value": "15", "reason": ""}, "reason"),
    ],
)
def test_a_malformed_rule_is_a_field_error_and_is_not_stored(manager_api, offer, rule, field):
    body = {"offer": offer.pk, "action": "declined", "reason": "No", **rule}
    response = manager_api.post("/api/v1/rules/", body, format="json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert not PostbackRule.objects.exists()


def test_a_rule_on_another_offers_goal_is_refused(manager_api, offer, make_offer):
    other = make_offer(title="Other")
    goal = Goal.objects.create(offer=other, value="sale")
    response = manager_api.post(
        "/api/v1/rules/",
        {
            "offer": offer.pk,
            "goal": goal.pk,
            "field": "sum",
            "op": "gt",
            "value": "1000",
            "action": "pending",
            "reason": "Big sale",
        },
        format="json",
    )
    assert response.status_code == 400
    assert "goal" in response.json()


def test_exchange_rates_crud_and_a_rate_at_or_below_zero_is_refused(manager_api):
    body = {"base": "EUR", "quote": "USD", "rate": "1.0850", "date": "2026-11-30"}
    created = manager_api.post("/api/v1/exchange-rates/", body, format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/v1/exchange-rates/{created.json()['id']}/"
    assert manager_api.patch(url, {"rate": "1.09"}, format="json").json()["rate"] == "1.0900000000"
    for rate in ("0", "-1"):
        bad = manager_api.post("/api/v1/exchange-rates/", {**body, "rate": rate}, format="json")
        assert bad.status_code == 400
        assert "rate" in bad.json()
    twice = manager_api.post("/api/v1/exchange-rates/", body, format="json")
    assert twice.status_code == 400
    bad_code = manager_api.post(
        "/api/v1/exchange-rates/", {**body, "base": "euro", "date": "2026-11-29"}, format="json"
    )
    assert bad_code.status_code == 400 and "base" in bad_code.json()
    assert manager_api.delete(url).status_code == 204
    assert not ExchangeRate.objects.exists()


def test_support_reads_rules_and_rates_but_does_not_change_them(support_api, offer):
    assert support_api.get("/api/v1/rules/").status_code == 200
    assert support_api.get("/api/v1/exchange-rates/").status_code == 200
    body = {"base": "EUR", "quote": "USD", "rate": "1.1", "date": "2026-11-30"}
    assert support_api.post("/api/v1/exchange-rates/", body, format="json").status_code == 403


def test_status_maps_and_allow_multiple_are_read_and_written_through_their_resources(
    manager_api, offer
):
    advertiser = offer.advertiser
    mapped = {"Sale": "approved", "chargeback": "declined"}
    response = manager_api.patch(
        f"/api/v1/advertisers/{advertiser.pk}/", {"status_map": mapped}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["status_map"] == mapped
    response = manager_api.patch(
        f"/api/v1/offers/{offer.pk}/", {"status_map": {"reg": "pending"}}, format="json"
    )
    assert response.json()["status_map"] == {"reg": "pending"}
    goal = offer.goals.get()
    response = manager_api.patch(f"/api/v1/goals/{goal.pk}/", {"allow_multiple": True})
    assert response.json()["allow_multiple"] is True


@pytest.mark.parametrize(
    "status_map",
    [
        ["sale"],
        {"sale": "paid"},
        {"": "approved"},
        {"1": "declined"},
        {"Sale": "approved", "SALE": "declined"},
        {"x" * 65: "approved"},
    ],
)
def test_a_malformed_status_map_is_a_field_error_and_is_not_stored(manager_api, offer, status_map):
    response = manager_api.patch(
        f"/api/v1/offers/{offer.pk}/", {"status_map": status_map}, format="json"
    )
    assert response.status_code == 400
    assert "status_map" in response.json()
    offer.refresh_from_db()
    assert offer.status_map == {}


def test_load_rates_reads_a_daily_csv_and_replaces_a_days_rate(db, tmp_path):
    path = tmp_path / "rates.csv"
    path.write_text("base,quote,rate,date\nEUR,USD,1.08,2026-11-30\nusd,eur,0.92,2026-11-30\n")
    out = io.StringIO()
    call_command("load_rates", str(path), stdout=out)
    assert "Loaded 2 exchange rates." in out.getvalue()
    path.write_text("base,quote,rate\nEUR,USD,1.09\n")
    call_command("load_rates", str(path), "--date", "2026-11-30", stdout=io.StringIO())
    assert {(r.base, r.quote, r.rate, r.date) for r in ExchangeRate.objects.all()} == {
        ("EUR", "USD", Decimal("1.09"), date(2026, 11, 30)),
        ("USD", "EUR", Decimal("0.92"), date(2026, 11, 30)),
    }


def test_load_rates_from_standard_input(db, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("base,quote,rate,date\nGBP,USD,1.27,2026-11-29\n"))
    call_command("load_rates", "-", stdout=io.StringIO())
    assert ExchangeRate.objects.get().rate == Decimal("1.27")


@pytest.mark.parametrize(
    "body",
    [
        "base,quote,rate,date\nEUR,USD,0,2026-11-30\n",
        "base,quote,rate,date\nEUR,USD,-1,2026-11-30\n",
        "base,quote,rate,date\nEUR,USD,NaN,2026-11-30\n",
        "base,quote,rate,date\nEURO,USD,1,2026-11-30\n",
        "base,quote,rate,date\nEUR,USD,1,30.11.2026\n",
        "base,quote,date\nEUR,USD,2026-11-30\n",
    ],
)
def test_load_rates_refuses_a_bad_file_whole(db, tmp_path, body):
    path = tmp_path / "rates.csv"
    path.write_text("base,quote,rate,date\nGBP,USD,1.27,2026-11-29\n" + body.split("\n", 1)[1])
    if "rate" not in body.split("\n", 1)[0]:
        path.write_text(body)
    with pytest.raises(CommandError):
        call_command("load_rates", str(path), stdout=io.StringIO())
    assert not ExchangeRate.objects.exists()
