"""/postback and /click skip the middleware made for people (sessions, CSRF, auth...)."""

import json

import pytest

from conversions.models import Postback

pytestmark = pytest.mark.django_db


def test_postback_answers_without_the_browser_middleware(client):
    response = client.get("/postback", {"clickid": "a" * 24})
    assert response.status_code == 200
    # The clickjacking and security middleware add these to every other answer.
    assert "X-Frame-Options" not in response
    assert "X-Content-Type-Options" not in response
    assert "X-Frame-Options" in client.get("/healthz")


def test_accepted_answer_is_the_designed_json(client):
    response = client.get("/postback", {"clickid": "a" * 24})
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body == {"status": 1, "message": "Postback accepted", "id": body["id"]}
    assert Postback.objects.filter(pk=body["id"]).exists()


def test_a_host_not_allowed_is_still_refused(client):
    assert (
        client.get("/postback", {"clickid": "a" * 24}, HTTP_HOST="evil.example").status_code == 400
    )
    assert client.get("/click", {"offer_id": "1"}, HTTP_HOST="evil.example").status_code == 400
    assert not Postback.objects.exists()


def test_click_answers_without_the_browser_middleware(client, click):
    response = client.get("/click", {"offer_id": click.offer_id, "pid": click.partner_id})
    assert response.status_code == 302
    assert "X-Frame-Options" not in response
