"""Testing a partner postback: one real request through the address guard, nothing written."""

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversions.models import PostbackDelivery

from .conftest import deliveries

pytestmark = pytest.mark.django_db


def api_as(group: str | None) -> APIClient:
    user, made = User.objects.get_or_create(username=f"user-{group}", defaults={"is_staff": True})
    if group and made:
        user.groups.add(Group.objects.get(name=group))
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def url_of(pp) -> str:
    return f"/api/v1/partner-postbacks/{pp.pk}/test/"


def test_test_with_sample_values_reaches_the_partner(httpserver, make_postback, partner):
    httpserver.expect_request("/pb", method="GET").respond_with_data("got it", status=200)
    pp = make_postback(query="?click={clickid}&status={status}&sub2={sub2}&pid={pid}")

    response = api_as("Support").post(url_of(pp), {}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"url", "method", "status_code", "response", "error", "duration_ms"}
    assert body["method"] == "GET"
    assert body["status_code"] == 200
    assert body["response"] == "got it"
    assert body["error"] == ""
    assert body["duration_ms"] >= 0
    (request,) = [request for request, _ in httpserver.log]
    assert request.args.to_dict() == {
        "click": "0123456789abcdef01234567",
        "status": "1",
        "sub2": "test-sub2",
        "pid": str(partner.pk),
    }
    assert body["url"] == httpserver.url_for("/pb") + "?" + request.query_string.decode()
    pp.refresh_from_db()
    assert pp.consecutive_failures == 0
    assert not PostbackDelivery.objects.exists()


def test_test_with_a_conversion_fills_its_values_and_writes_no_delivery(
    httpserver, make_postback, make_conversion, click
):
    httpserver.expect_request("/pb").respond_with_data("nope", status=500)
    pp = make_postback(query="?click={clickid}&sum={sum}", enabled=False)
    conversion = make_conversion()
    before = deliveries()

    body = api_as("Affiliate managers").post(url_of(pp), {"conversion": conversion.pk}).json()

    assert body["url"].endswith(f"?click={click.clickid}&sum=2.00")
    assert (body["status_code"], body["error"], body["response"]) == (500, "HTTP 500", "nope")
    assert deliveries() == before
    pp.refresh_from_db()
    assert pp.consecutive_failures == 0


def test_test_goes_through_the_address_guard(httpserver, make_postback, settings):
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = False
    httpserver.expect_request("/pb").respond_with_data("ok")
    pp = make_postback()

    body = api_as("Support").post(url_of(pp)).json()

    assert body["status_code"] is None
    assert body["error"].startswith("Refused:")
    assert httpserver.log == []


def test_test_needs_the_resend_permission_and_an_existing_conversion(make_postback):
    pp = make_postback()
    response = api_as(None).post(url_of(pp))
    assert response.status_code == 403
    assert "conversions.resend_postbackdelivery" in response.json()["detail"]
    response = api_as("Support").post(url_of(pp), {"conversion": 999999}, format="json")
    assert response.status_code == 400
    assert "conversion" in response.json()
    assert api_as("Support").post("/api/v1/partner-postbacks/999999/test/").status_code == 404


def test_admin_test_button_sends_and_shows_the_answer(httpserver, make_postback, client):
    httpserver.expect_request("/pb").respond_with_data("thanks", status=200)
    pp = make_postback(query="?click={clickid}")
    user = User.objects.create_user("support-user", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    client.force_login(user)

    page = client.get(f"/admin/partners/partnerpostback/{pp.pk}/change/").content.decode()
    test_url = f"/admin/partners/partnerpostback/{pp.pk}/test/"
    assert f'href="{test_url}"' in page
    assert client.get(test_url).status_code == 200
    assert httpserver.log == []

    result = client.post(test_url, {"conversion": ""}).content.decode()

    assert 'class="test-status-code">200<' in result
    assert "click=0123456789abcdef01234567" in result
    assert "thanks" in result
    assert len(httpserver.log) == 1
    assert not PostbackDelivery.objects.exists()


def test_admin_test_page_needs_the_resend_permission(make_postback, client):
    pp = make_postback()
    client.force_login(User.objects.create_user("intern", is_staff=True))
    assert client.get(f"/admin/partners/partnerpostback/{pp.pk}/test/").status_code == 403
