"""One chord may carry a batch: checks read once per table, the callback settles in order."""

from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from conversions.models import Conversion, Postback
from conversions.processing import dispatch, settlement
from conversions.processing.checks import CHECKS
from offers.models import Cap

from ..conftest import run_concurrently, wait_for


def received(**params) -> str:
    return Postback.objects.create(method="GET", ip="203.0.113.7", params=params).id


def queries_per_check(ids) -> dict[str, int]:
    batch = settlement.load_batch(ids)
    counts = {}
    for name, check in CHECKS.items():
        with CaptureQueriesContext(connection) as ctx:
            check(batch)
        counts[name] = len(ctx.captured_queries)
    return counts


@pytest.mark.django_db
def test_each_check_costs_the_same_queries_for_1_or_60_postbacks(make_click, offer):
    Cap.objects.create(offer=offer, limit=100)
    one = [received(clickid=make_click().clickid, sum="3")]
    many = [received(clickid=make_click().clickid, action_id=str(i)) for i in range(60)]
    assert queries_per_check(one) == queries_per_check(many)
    # One query per table the check reads: at most clicks, goals, caps, counters.
    assert max(queries_per_check(many).values()) <= 4


def test_a_batch_is_settled_in_arrival_order(worker, click, settings):
    settings.POSTBACK_BATCH_SIZE = 10
    # Pending first, then its approval: reversed, the approval would create the
    # conversion and the pending update would be refused.
    first = received(clickid=click.clickid, status="2")
    second = received(clickid=click.clickid, status="1")
    assert dispatch.dispatch() == 2
    wait_for(lambda: not Postback.objects.filter(state="processing").exists(), what="batch")
    assert Postback.objects.get(pk=first).state == "accepted"
    assert Postback.objects.get(pk=second).state == "accepted"
    assert Conversion.objects.get().status == "approved"


def test_batches_are_cut_at_the_batch_size(worker, make_click, settings):
    settings.POSTBACK_BATCH_SIZE = 7
    ids = [received(clickid=make_click().clickid) for _ in range(30)]
    dispatch.dispatch()
    wait_for(
        lambda: Postback.objects.filter(pk__in=ids, state="accepted").count() == 30,
        what="30 accepted",
    )
    assert Conversion.objects.count() == 30
    # Each claim stamps its batch with one dispatch time. A settled batch dispatches
    # again while postbacks wait, so another dispatcher may take some of them too.
    sizes = Counter(Postback.objects.filter(pk__in=ids).values_list("dispatched_at", flat=True))
    assert max(sizes.values()) == 7 and len(sizes) >= 5


def test_claims_by_concurrent_dispatchers_do_not_overlap(make_click, transactional_db):
    ids = {received(clickid=make_click().clickid) for _ in range(60)}
    claims = run_concurrently(6, lambda i: dispatch.claim(15))
    taken = [pid for claim in claims for pid in claim]
    assert len(taken) == len(set(taken)) == 60
    assert set(taken) == ids


def test_a_dispatcher_that_used_all_its_batches_hands_the_rest_on(worker, make_click, settings):
    settings.POSTBACK_BATCH_SIZE = 5
    ids = [received(clickid=make_click().clickid) for _ in range(12)]
    assert dispatch.dispatch(max_batches=1) == 5
    # No sweeper runs here: the remaining 7 go out through the dispatch it queued.
    wait_for(
        lambda: Postback.objects.filter(pk__in=ids, state="accepted").count() == 12,
        what="all 12 accepted",
    )
