"""A click has at most one conversion per goal, whatever action_id its postbacks carry or omit."""

import pytest
from django.db import connection

from conversions.models import Conversion, Postback
from conversions.processing import dispatch, settlement
from conversions.processing.checks import CHECKS
from offers.models import Goal

from ..conftest import run_concurrently


def received(**params) -> str:
    return Postback.objects.create(method="GET", ip="203.0.113.7", params=params).id


def settle_now(pid: str) -> Postback:
    assert Postback.objects.filter(pk=pid).claim()
    batch = settlement.load_batch([pid])
    settlement.settle([check(batch) for check in CHECKS.values()], [pid])
    return Postback.objects.get(pk=pid)


@pytest.fixture
def process(db):
    """Through every check and the callback, here in this thread (the queue is tested apart)."""
    return lambda **params: settle_now(received(**params))


def test_an_approval_by_clickid_alone_updates_the_conversion_made_with_an_action_id(process, click):
    first = process(clickid=click.clickid, action_id="ORDER-1", status="2")
    second = process(clickid=click.clickid, status="1")
    assert (second.state, second.error) == ("accepted", "")
    assert second.conversion_id == first.conversion_id
    conv = Conversion.objects.get()
    assert (conv.status, conv.action_id, conv.version) == ("approved", "ORDER-1", 2)


def test_a_postback_with_another_action_id_speaks_of_the_clicks_conversion(process, click):
    first = process(clickid=click.clickid, action_id="A", status="2")
    update = process(clickid=click.clickid, action_id="B", status="1")
    assert (update.state, update.conversion_id) == ("accepted", first.conversion_id)
    assert process(clickid=click.clickid, action_id="C").error == "Conversion exists"
    assert process(clickid=click.clickid, action_id="D", status="3").error == (
        "Conversion status is not pending"
    )
    conv = Conversion.objects.get()
    assert (conv.status, conv.action_id) == ("approved", "A")


def test_a_conversion_made_without_action_id_is_found_by_one_that_has_it(process, click):
    process(clickid=click.clickid, status="2")
    assert process(clickid=click.clickid, action_id="LATE", status="3").state == "accepted"
    conv = Conversion.objects.get()
    assert (conv.status, conv.action_id) == ("declined", "")


def test_other_goals_of_the_click_convert_apart(process, click, offer):
    Goal.objects.create(offer=offer, value="sale")
    assert process(clickid=click.clickid, action_id="A").state == "accepted"
    assert process(clickid=click.clickid, action_id="B", goal="SALE").state == "accepted"
    assert process(clickid=click.clickid, goal="Sale").error == "Conversion exists"
    assert Conversion.objects.count() == 2


def test_one_batch_with_two_action_ids_for_one_click_makes_one_conversion(click, db):
    ids = [
        received(clickid=click.clickid, action_id="A", status="2"),
        received(clickid=click.clickid, action_id="B", status="1"),
        received(clickid=click.clickid),
    ]
    assert sorted(dispatch.claim(10)) == sorted(ids)
    batch = settlement.load_batch(ids)
    settlement.settle([check(batch) for check in CHECKS.values()], ids)
    assert [Postback.objects.get(pk=pid).error for pid in ids] == ["", "", "Conversion exists"]
    conv = Conversion.objects.get()
    assert (conv.status, conv.action_id) == ("approved", "A")


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent settles")
@pytest.mark.parametrize("round_", range(2))
def test_concurrent_postbacks_with_their_own_action_ids_make_one_conversion_per_click(
    click, transactional_db, round_
):
    ids = [received(clickid=click.clickid, action_id=f"A-{i}") for i in range(10)]
    verdicts = {}
    for pid in ids:
        assert Postback.objects.filter(pk=pid).claim()
        batch = settlement.load_batch([pid])
        verdicts[pid] = [check(batch) for check in CHECKS.values()]
    run_concurrently(10, lambda i: settlement.settle(verdicts[ids[i]], [ids[i]]))
    assert Conversion.objects.count() == 1
    errors = sorted(Postback.objects.values_list("error", flat=True))
    assert errors == [""] + ["Conversion exists"] * 9
