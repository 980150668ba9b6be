"""The OpenAPI schema, the docs page, and a property test: no request makes a 500."""

import os
from decimal import Decimal

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from affise_proj.wsgi import application
from conversions.models import Conversion, Postback, PostbackDelivery
from offers.models import Cap, ExchangeRate, Goal, PostbackRule
from partners.models import OfferAccess, PartnerPostback


def test_schema_is_served_and_names_every_resource(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for resource in (
        "advertisers",
        "offers",
        "goals",
        "payouts",
        "caps",
        "partners",
        "offer-access",
        "partner-postbacks",
        "clicks",
        "postbacks",
        "conversions",
        "postback-deliveries",
    ):
        assert f"/api/v1/{resource}/" in paths, resource
    assert "post" in paths["/api/v1/postbacks/{id}/requeue/"]
    assert "post" in paths["/api/v1/conversions/{id}/requeue/"]
    assert set(paths["/api/v1/conversions/{id}/"]) == {"get", "patch"}


def test_schema_generates_without_warnings(db):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_docs_page_is_served(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_browsable_api_renders_every_resource(client, superuser, seeded):
    client.force_login(superuser)
    for resource, pk in seeded.items():
        for url in (f"/api/v1/{resource}/", f"/api/v1/{resource}/{pk}/"):
            response = client.get(url, HTTP_ACCEPT="text/html")
            assert response.status_code == 200, url
            assert b"<html" in response.content


@pytest.fixture
def seeded(offer, partner, click):
    """One row of every resource, so generated requests on ``{id}`` can hit real rows."""
    from conversions.processing.statuses import change_status_by_manager

    goal = Goal.objects.get(offer=offer)
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example.com/?c={clickid}")
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="pending", payout=Decimal(2)
    )
    change_status_by_manager(conversion.pk, "approved")
    return {
        "advertisers": offer.advertiser_id,
        "offers": offer.pk,
        "goals": goal.pk,
        "payouts": offer.payouts.get().pk,
        "caps": Cap.objects.create(offer=offer, limit=10).pk,
        "rules": PostbackRule.objects.create(
            offer=offer, field="ctit", op="lt", value="15", reason="CTIT too short"
        ).pk,
        "exchange-rates": ExchangeRate.objects.create(
            base="EUR", quote="USD", rate=Decimal("1.08"), date="2026-11-30"
        ).pk,
        "partners": partner.pk,
        "offer-access": OfferAccess.objects.create(offer=offer, partner=partner).pk,
        "partner-postbacks": pp.pk,
        "clicks": click.clickid,
        "postbacks": Postback.objects.create(method="GET", state="rejected", error="x").pk,
        "conversions": conversion.pk,
        "postback-deliveries": PostbackDelivery.objects.get().pk,
    }


@pytest.fixture
def wsgi_requests_keep_the_test_connection():
    """Requests through the raw WSGI app must not close the test's DB connection.

    Django's own test client does the same: outside it, the end of each request
    closes "old" connections, and a connection inside the test's transaction
    counts as old.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


# Bounded so the suite stays fast; API_FUZZ_EXAMPLES=200 API_FUZZ_COVERAGE=1 digs deeper
# (schemathesis' coverage phase adds every boundary case the schema defines, slowly).
FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "6"))
FUZZ_COVERAGE = os.environ.get("API_FUZZ_COVERAGE", "") == "1"

# Loaded once at collection through the WSGI app; serving the schema needs no database.
# The REST API only: /postback and /click, documented in the same schema, are
# the machine endpoints, exercised by the tests in tests/conversions/.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json",
    application,
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": FUZZ_COVERAGE}}}),
).include(path_regex="^/api/")


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_a_server_error(
    case, seeded, superuser, wsgi_requests_keep_the_test_connection
):
    """Whatever the body, query or path, the API answers 2xx/4xx, never 5xx.

    Each generated request is sent twice when it names a row: once as
    generated (almost always a 404) and once aimed at a real row, so updates
    and deletes meet real data.
    """
    token, _ = Token.objects.get_or_create(user=superuser)
    headers = {"Authorization": f"Token {token.key}"}
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
    resource = case.path.split("/")[3]
    for name in ("id", "clickid"):
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = str(seeded[resource])
            case.call_and_validate(headers=headers, checks=[not_a_server_error])
