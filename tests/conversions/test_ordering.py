"""Postbacks for one click are settled in the order they were received, across batches."""

import pytest
from django.db import connection
from django.test import Client

from conversions.intake import spool
from conversions.models import Conversion, Postback, new_postback_id
from conversions.processing import dispatch

from ..conftest import run_concurrently, wait_for, wait_settled

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="concurrent claims and settles need PostgreSQL"
)

# Status sequences an advertiser sends for one click (None = no status).
SEQUENCES = [
    ["2", "1"],
    ["2", "3"],
    ["2", "1", "3"],
    ["2", "3", "1"],
    ["2", "1", None],
    ["2", "1", "3", None],
    [None, "2"],
    ["2", "2", "1"],
]
STATUS_WORDS = {"1": "approved", "2": "pending", "3": "declined"}


def in_arrival_order(statuses: list) -> tuple[str, list[str]]:
    """What settling ``statuses`` one after the other gives: final status, error of each."""
    status, errors = None, []
    for sent in statuses:
        if status is None:
            status, error = STATUS_WORDS.get(sent, "approved"), ""
        elif sent is None:
            error = "Conversion exists"
        elif status != "pending":
            error = "Conversion status is not pending"
        else:
            status, error = STATUS_WORDS[sent], ""
        errors.append(error)
    return status, errors


def received(**params) -> str:
    clickid = params.get("clickid", "")
    return Postback.objects.create(
        method="GET", ip="203.0.113.7", params=params, clickid=clickid
    ).id


def test_the_model_of_arrival_order():
    assert in_arrival_order(["2", "1", "3", None]) == (
        "approved",
        ["", "", "Conversion status is not pending", "Conversion exists"],
    )
    assert in_arrival_order([None, "2"]) == ("approved", ["", "Conversion status is not pending"])


def test_a_claim_holds_a_click_whose_earlier_postback_is_still_processing(make_click, db):
    held, other = make_click(), make_click()
    first = received(clickid=held.clickid, status="2")
    assert dispatch.claim(10) == [first]
    later = received(clickid=held.clickid.upper(), status="1")
    unrelated = received(clickid=other.clickid, status="1")
    assert dispatch.claim(10) == [unrelated]
    Postback.objects.filter(pk=first).update(state="accepted")
    assert dispatch.claim(10) == [later]


def test_a_postback_spooled_earlier_is_claimed_before_a_later_one_stored_directly(
    click, db, settings, tmp_path
):
    """The database was down for the first, back for the second (no sweep in between)."""
    settings.POSTBACK_SPOOL_DIR = tmp_path
    first = Postback(id=new_postback_id(), method="GET", params={"clickid": click.clickid})
    first.clickid = click.clickid
    spool.append(first)
    later = received(clickid=click.clickid, status="1")
    assert dispatch.claim(10) == [first.id, later]


@postgres_only
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_claims_never_split_one_clicks_postbacks(make_click, transactional_db, round_):
    clicks = [make_click() for _ in range(20)]
    for _ in range(3):
        for click in clicks:
            received(clickid=click.clickid)
    claims = run_concurrently(6, lambda i: dispatch.claim(7))
    owner = {}
    for number, claim in enumerate(claims):
        for row in Postback.objects.filter(pk__in=claim):
            assert owner.setdefault(row.clickid, number) == number, "a click in two batches"


@postgres_only
def test_sequences_sent_concurrently_settle_as_in_arrival_order(worker, make_click):
    """Each thread sends one click's statuses back to back, as an advertiser's server does."""
    sequences = [SEQUENCES[i % len(SEQUENCES)] for i in range(48)]
    clicks = [make_click() for _ in sequences]

    def send_sequence(i: int) -> list[str]:
        client, ids = Client(), []
        for sent in sequences[i]:
            params = {"clickid": clicks[i].clickid} | ({"status": sent} if sent else {})
            ids.append(client.get("/postback", params, REMOTE_ADDR="203.0.113.7").json()["id"])
        return ids

    sent_ids = run_concurrently(len(sequences), send_sequence)
    wrong = []
    for click, statuses, ids in zip(clicks, sequences, sent_ids, strict=True):
        errors = [wait_settled(pid).error for pid in ids]
        final = Conversion.objects.get(click=click).status
        if (final, errors) != in_arrival_order(statuses):
            wrong.append((statuses, final, errors))
    assert not wrong, f"{len(wrong)} of {len(sequences)} settled out of arrival order: {wrong}"


def test_a_held_postback_is_dispatched_when_the_earlier_batch_settles(worker, click, settings):
    """No sweeper runs in tests: the settle of the earlier batch hands the later one on."""
    first = received(clickid=click.clickid, status="2")
    assert dispatch.claim(10) == [first]
    later = received(clickid=click.clickid, status="1")
    assert dispatch.dispatch() == 0
    assert Postback.objects.get(pk=later).state == "received"
    assert dispatch.publish([first])
    assert wait_settled(later).state == "accepted"
    wait_for(lambda: Conversion.objects.filter(status="approved").exists(), what="approval")
