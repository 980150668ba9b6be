"""The accept path: everything is recorded and answered, nothing is a 500."""

import json

import pytest

from conversions.models import Postback

pytestmark = pytest.mark.django_db


def test_postback_is_recorded_and_answered_before_any_check(client):
    response = client.get(
        "/postback", {"clickid": "nonsense", "goal": "reg"}, REMOTE_ADDR="192.0.2.5"
    )
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == 1 and body["message"] == "Postback accepted"
    row = Postback.objects.get(pk=body["id"])
    assert (row.state, row.ip, row.method) == ("received", "192.0.2.5", "GET")
    assert row.params == {"clickid": "nonsense", "goal": "reg"}
    assert row.clickid == "nonsense"


def test_post_form_body_and_query_string_are_both_recorded(client):
    response = client.post(
        "/postback?goal=sale", {"clickid": "c" * 24, "sum": "5"}, REMOTE_ADDR="192.0.2.5"
    )
    row = Postback.objects.get(pk=response.json()["id"])
    assert row.method == "POST"
    assert row.params == {"goal": "sale", "clickid": "c" * 24, "sum": "5"}


def test_json_body_is_recorded(client):
    response = client.post(
        "/postback", json.dumps({"clickid": "d" * 24, "sum": 7.5}), content_type="application/json"
    )
    assert Postback.objects.get(pk=response.json()["id"]).params == {
        "clickid": "d" * 24,
        "sum": "7.5",
    }


def test_repeated_parameters_are_kept_as_sent(client):
    response = client.get("/postback?clickid=a&clickid=b&goal=1")
    row = Postback.objects.get(pk=response.json()["id"])
    assert row.params == {"clickid": ["a", "b"], "goal": "1"}
    assert row.clickid == "a"


@pytest.mark.parametrize(
    "query",
    [
        "clickid=%ff%fe%00&goal=%",
        "clickid=\x00\x01&sum=1e999999",
        "=&&&==&clickid",
        "%E2%82&status=%C0%AF",
        "a=" + "%" * 100,
    ],
)
def test_garbage_is_recorded_not_refused(client, query):
    response = client.generic("GET", f"/postback?{query}")
    assert response.status_code == 200
    assert Postback.objects.filter(pk=response.json()["id"]).exists()


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2]"),
        ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
        ("application/x-www-form-urlencoded", b"\xff\xfe\x00clickid=\xc3"),
        ("text/plain", b"\x00\x00\x00"),
    ],
)
def test_odd_bodies_are_recorded_not_refused(client, content_type, body):
    response = client.generic("POST", "/postback", body, content_type=content_type)
    assert response.status_code == 200, response.content
    assert Postback.objects.filter(pk=response.json()["id"]).exists()


def test_over_8kb_of_parameters_is_413_and_not_recorded(client):
    response = client.get("/postback", {"clickid": "a" * 24, "comment": "x" * 8200})
    assert response.status_code == 413
    assert response.json()["status"] == 2
    response = client.post("/postback", {"comment": "x" * 9000})
    assert response.status_code == 413
    assert not Postback.objects.exists()


def test_just_under_the_limit_is_accepted(client):
    response = client.get("/postback", {"comment": "x" * 8000})
    assert response.status_code == 200


def test_other_methods_are_refused_cleanly(client):
    assert client.put("/postback").status_code == 405
    assert client.delete("/postback").status_code == 405


def test_sync_mode_answers_with_the_outcome(client, settings, click):
    settings.POSTBACK_PROCESSING = "sync"
    assert client.get("/postback", {"clickid": click.clickid}).json() == {"status": 1}
    assert client.get("/postback", {"clickid": click.clickid}).json() == {
        "status": 2,
        "message": "Conversion exists",
    }
    assert client.get("/postback", {"clickid": "zz"}).json() == {
        "status": 2,
        "message": "Click_id: invalid format",
    }
    states = sorted(Postback.objects.values_list("state", flat=True))
    assert states == ["accepted", "rejected", "rejected"]


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "broker": "ok",
        "spool": "ok",
        "spooled": 0,
        "set_aside": 0,
    }
