"""API answers: JSON for every error, re-queue needs a filter, the schema documents all endpoints."""

import json
from datetime import timedelta

import pytest
from django.test import RequestFactory
from django.utils import timezone

from affise_proj import errors
from conversions.models import Postback

pytestmark = pytest.mark.django_db


def _postback(**fields) -> Postback:
    fields.setdefault("method", "GET")
    return Postback.objects.create(**fields)


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/postbacks/not-an-id/requeue/",
        "/api/v1/postbacks/0123456789abcdef0123456789abcdef01/requeue/",
        "/api/v1/conversions/abc/requeue/",
        "/api/v1/no-such-resource/",
        "/api/v1/postbacks/abc/requeue/extra/",
    ],
)
def test_an_unknown_api_url_or_id_is_a_json_404(support_api, url):
    response = support_api.post(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_id_on_requeue_is_a_json_404(support_api):
    for url in ("/api/v1/postbacks/abcdef/requeue/", "/api/v1/conversions/999999/requeue/"):
        response = support_api.post(url)
        assert response.status_code == 404
        assert "detail" in response.json()


def test_pages_outside_the_api_keep_their_html_404(client):
    response = client.get("/admin-nope/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("handler", "status"),
    [
        (errors.server_error, 500),
        (errors.bad_request, 400),
        (errors.permission_denied, 403),
    ],
)
def test_other_api_errors_are_json_too(handler, status):
    request = RequestFactory().get("/api/v1/postbacks/")
    response = handler(request) if handler is errors.server_error else handler(request, None)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert "detail" in json.loads(response.content)


def test_requeue_without_a_filter_is_refused_and_requeues_nothing(support_api):
    rejected = _postback(state="rejected", error="Offer disabled")

    for query in ("", "?page=2", "?clickid=", "?all=false", "?all=yes-please"):
        response = support_api.post(f"/api/v1/postbacks/requeue/{query}")
        assert response.status_code == 400, query
        assert "all=true" in response.json()["detail"]

    rejected.refresh_from_db()
    assert rejected.state == "rejected"


def test_requeue_all_must_be_asked_for(support_api):
    rejected = _postback(state="rejected", error="Offer disabled")
    failed = _postback(state="failed", error="boom")
    accepted = _postback(state="accepted")

    response = support_api.post("/api/v1/postbacks/requeue/?all=true")

    assert (response.status_code, response.json()) == (202, {"requeued": 2})
    states = dict(Postback.objects.values_list("pk", "state"))
    assert states == {rejected.pk: "received", failed.pk: "received", accepted.pk: "accepted"}


@pytest.mark.parametrize(
    ("code", "name"), [("1", "approved"), ("2", "pending"), ("3", "declined"), ("5", "hold")]
)
def test_conversions_status_filter_takes_the_postback_codes(
    manager_api, make_conversion, code, name
):
    wanted = make_conversion(
        status=name, action_id="w", hold_until=timezone.now() + timedelta(days=1)
    )
    # Another goal: a click has one conversion per goal.
    make_conversion(
        status="approved" if name != "approved" else "pending", action_id="x", goal="reg"
    )

    for value in (code, name):
        body = manager_api.get("/api/v1/conversions/", {"status": value}).json()
        assert [row["id"] for row in body["results"]] == [wanted.pk], value

    assert manager_api.get("/api/v1/conversions/", {"status": "4"}).status_code == 400


def test_schema_documents_the_postback_and_click_endpoints(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    postback = paths["/postback"]
    assert set(postback) >= {"get", "post"}
    names = {p["name"] for p in postback["get"]["parameters"]}
    assert {"clickid", "click_id", "action_id", "goal", "sum", "status", "secure"} <= names
    assert {"custom_field1", "custom_field7", "currency", "ip", "comment"} <= names
    assert set(postback["get"]["responses"]) >= {"200", "413"}
    assert postback["get"]["security"] == []

    click = paths["/click"]
    assert set(click) == {"get"}
    names = {p["name"] for p in click["get"]["parameters"]}
    assert {"offer_id", "pid", "sub1", "sub8"} <= names
    assert set(click["get"]["responses"]) >= {"302", "404"}


def test_each_resource_has_its_own_description(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    descriptions = {
        path: paths[path]["get"].get("description", "")
        for path in paths
        if path.startswith("/api/v1/") and path.count("/") == 4
    }
    for path, text in descriptions.items():
        assert "delete that other rows" not in text, path
        assert text, f"{path} has no description"
    assert "advertiser" in descriptions["/api/v1/advertisers/"].lower()
    assert len(set(descriptions.values())) == len(descriptions)
