"""Inbound postbacks and clicks through the API: read, filter, re-queue."""

from datetime import timedelta

from django.utils import timezone

from conversions.models import Conversion, Postback
from offers.models import Offer

from ..conftest import wait_settled


def _postback(**fields) -> Postback:
    fields.setdefault("method", "GET")
    return Postback.objects.create(**fields)


def test_postbacks_filter_by_state_and_clickid(support_api, db):
    rejected = _postback(state="rejected", error="Click not found", clickid="a" * 24)
    _postback(state="accepted", clickid="b" * 24)
    failed = _postback(state="failed", clickid="a" * 24)
    by_state = support_api.get("/api/v1/postbacks/", {"state": "rejected"}).json()
    assert [row["id"] for row in by_state["results"]] == [rejected.pk]
    assert by_state["results"][0]["error"] == "Click not found"
    by_click = support_api.get("/api/v1/postbacks/", {"clickid": "a" * 24}).json()
    assert {row["id"] for row in by_click["results"]} == {rejected.pk, failed.pk}


def test_postback_detail_shows_raw_params(support_api, db):
    row = _postback(state="rejected", params={"clickid": "x", "sum": "abc"}, error="x")
    body = support_api.get(f"/api/v1/postbacks/{row.pk}/").json()
    assert body["params"] == {"clickid": "x", "sum": "abc"}
    assert support_api.get("/api/v1/postbacks/zzz/").status_code == 404


def test_requeue_of_an_accepted_postback_is_refused(support_api, db):
    row = _postback(state="accepted")
    response = support_api.post(f"/api/v1/postbacks/{row.pk}/requeue/")
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Postback {row.pk} is accepted: only rejected or failed postbacks can be re-queued."
    }


def test_bulk_requeue_by_filter(support_api, db):
    target = _postback(state="rejected", error="Offer disabled", clickid="c" * 24)
    other_click = _postback(state="rejected", error="Offer disabled", clickid="d" * 24)
    accepted = _postback(state="accepted", clickid="c" * 24)
    response = support_api.post(f"/api/v1/postbacks/requeue/?clickid={'c' * 24}")
    assert (response.status_code, response.json()) == (202, {"requeued": 1})
    states = dict(Postback.objects.values_list("pk", "state"))
    assert states == {target.pk: "received", other_click.pk: "rejected", accepted.pk: "accepted"}


def test_requeued_postback_is_processed_again_after_the_cause_is_fixed(
    worker, admin_api, click, send
):
    Offer.objects.filter(pk=click.offer_id).update(status="disabled")
    pid = send(clickid=click.clickid)
    assert wait_settled(pid).error == "Offer disabled"

    admin_api.patch(f"/api/v1/offers/{click.offer_id}/", {"status": "active"}, format="json")
    response = admin_api.post(f"/api/v1/postbacks/{pid}/requeue/")
    assert response.status_code == 202

    row = wait_settled(pid)
    assert row.state == "accepted", row.error
    conversion = Conversion.objects.get()
    listed = admin_api.get("/api/v1/conversions/", {"click": click.clickid}).json()
    assert [r["id"] for r in listed["results"]] == [conversion.pk]


def test_click_read_by_clickid_and_filter(support_api, make_click, make_offer):
    first = make_click(sub1="campaign-7", ip="203.0.113.9")
    other = make_click(offer=make_offer(title="Other"))
    body = support_api.get(f"/api/v1/clicks/{first.clickid}/").json()
    assert (body["clickid"], body["sub1"], body["ip"]) == (
        first.clickid,
        "campaign-7",
        "203.0.113.9",
    )
    listed = support_api.get("/api/v1/clicks/", {"offer": other.offer_id}).json()
    assert [row["clickid"] for row in listed["results"]] == [other.clickid]
    assert support_api.get("/api/v1/clicks/", {"sub1": "campaign-7"}).json()["count"] == 1


def test_clicks_are_read_only(manager_api, click):
    assert manager_api.post("/api/v1/clicks/", {}).status_code == 405
    assert manager_api.delete(f"/api/v1/clicks/{click.clickid}/").status_code == 405


def test_bulk_requeue_of_many_postbacks(support_api, db):
    Postback.objects.bulk_create(
        Postback(id=f"{i:032x}", method="GET", state="failed", error="x") for i in range(1, 2501)
    )
    response = support_api.post("/api/v1/postbacks/requeue/?state=failed")
    assert (response.status_code, response.json()) == (202, {"requeued": 2500})
    assert not Postback.objects.exclude(state="received").exists()


def test_postback_shows_its_timeline_and_recorded_requeues(support_api, db):
    at = timezone.now()
    row = Postback.objects.create(
        method="GET",
        params={"clickid": "c" * 24},
        state="rejected",
        error="Click not found",
        attempts=1,
        received_at=at,
        dispatched_at=at + timedelta(milliseconds=25),
        processed_at=at + timedelta(milliseconds=125),
        checks={"click": {"ok": False, "detail": "Click not found"}},
    )
    body = support_api.get(f"/api/v1/postbacks/{row.pk}/").json()
    assert body["checks"] == {"click": {"ok": False, "detail": "Click not found"}}
    assert body["dispatched_at"] is not None
    timeline = body["timeline"]
    assert (timeline["queued_ms"], timeline["checked_ms"], timeline["total_ms"]) == (25, 100, 125)
    assert body["requeues"] == []

    assert support_api.post(f"/api/v1/postbacks/{row.pk}/requeue/").status_code == 202

    body = support_api.get(f"/api/v1/postbacks/{row.pk}/").json()
    # The trail of the round before moved to the re-queue's record.
    assert body["checks"] == {}
    (requeue,) = body["requeues"]
    assert requeue["checks"] == {"click": {"ok": False, "detail": "Click not found"}}
    assert (requeue["user"], requeue["state"], requeue["error"], requeue["attempts"]) == (
        "support",
        "rejected",
        "Click not found",
        1,
    )
    assert body["state"] == "received"
