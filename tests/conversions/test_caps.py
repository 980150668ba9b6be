"""A cap's usage always equals what it counts: the conversions in its scope and period."""

import logging
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from conversions.models import Conversion, Postback
from conversions.processing import caps, settlement, statuses
from conversions.processing.checks import CHECKS
from offers.admin import cap_usage
from offers.models import Cap, CapCounter, Goal, Payout
from partners.models import Partner

from ..conftest import run_concurrently, wait_for


def received(received_at=None, **params) -> str:
    fields = {"received_at": received_at} if received_at else {}
    return Postback.objects.create(method="GET", ip="203.0.113.7", params=params, **fields).id


def settle_now(pid: str) -> Postback:
    """Claim, check and settle one postback here, in this thread."""
    assert Postback.objects.filter(pk=pid).claim()
    batch = settlement.load_batch([pid])
    settlement.settle([check(batch) for check in CHECKS.values()], [pid])
    return Postback.objects.get(pk=pid)


@pytest.fixture
def process(db):
    """Through every check and the callback, here in this thread (the queue is tested apart)."""
    return lambda **params: settle_now(received(**params))


def counted(cap: Cap, day: str | None = None) -> Decimal:
    """What the cap should count today (or on ``day``, UTC): computed from the rows here."""
    rows = Conversion.objects.filter(offer=cap.offer).exclude(status="declined")
    if cap.partner_id:
        rows = rows.filter(partner=cap.partner)
    if cap.goal_id:
        rows = rows.filter(goal=cap.goal.value)
    if cap.period == "day":
        rows = rows.filter(created_at__date=day or timezone.now().date())
    if cap.kind == "payout":
        return sum((c.payout for c in rows), Decimal(0))
    return Decimal(rows.count())


def used(cap: Cap, day: str | None = None) -> Decimal:
    key = day or caps.period_key(cap, timezone.now())
    counter = CapCounter.objects.filter(cap=cap, period_key=key).first()
    return counter.used if counter else Decimal(0)


@pytest.fixture
def sale(offer):
    """A goal paid as a share of the sum: payout 50 %, revenue 60 %."""
    goal = Goal.objects.create(offer=offer, value="sale")
    Payout.objects.create(offer=offer, goal=goal, type="percent", revenue=60, payout=50)
    return goal


# 1. A cap added during the day


def test_a_cap_created_during_the_day_counts_the_conversions_made_before_it(
    process, make_click, offer
):
    process(clickid=make_click().clickid)
    process(clickid=make_click().clickid)
    process(clickid=make_click().clickid, status="2")
    process(clickid=make_click().clickid, status="3")  # declined: not counted
    cap = Cap.objects.create(offer=offer, limit=Decimal(3))
    assert cap_usage(cap) == "3 / 3 today"
    conv = process(clickid=make_click().clickid).conversion
    assert (conv.status, conv.reason) == ("declined", "Cap is reached")
    assert used(cap) == counted(cap) == 3


def test_a_payout_cap_created_later_counts_the_payouts_made_before_it(process, make_click, offer):
    process(clickid=make_click().clickid)  # payout 2
    process(clickid=make_click().clickid, status="2")  # payout 2
    cap = Cap.objects.create(offer=offer, kind="payout", limit=5)
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"
    assert used(cap) == counted(cap) == 4


# 2. Editing a cap


def test_a_cap_moved_to_another_partner_counts_that_partners_conversions(
    process, make_click, offer, partner
):
    other = Partner.objects.create(name="Other")
    cap = Cap.objects.create(offer=offer, partner=partner, limit=Decimal(1))
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    cap.partner = other
    cap.save()
    assert cap_usage(cap) == "0 / 1 today"
    assert process(clickid=make_click(partner=other).clickid).conversion.status == "approved"
    assert process(clickid=make_click(partner=other).clickid).conversion.reason == "Cap is reached"
    assert used(cap) == counted(cap) == 1


def test_a_cap_changed_from_conversions_to_payout_counts_money(process, make_click, offer):
    cap = Cap.objects.create(offer=offer, limit=3)
    assert process(clickid=make_click().clickid).conversion.status == "approved"  # payout 2
    cap.kind = "payout"
    cap.save()
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"
    assert used(cap) == counted(cap) == 2


def test_a_cap_moved_to_another_goal_counts_that_goals_conversions(
    process, make_click, offer, sale
):
    cap = Cap.objects.create(offer=offer, goal=offer.goals.get(value="1"), limit=1)
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    cap.goal = sale
    cap.save()
    assert process(clickid=make_click().clickid, goal="sale", sum="10").conversion.status == (
        "approved"
    )
    assert used(cap) == counted(cap) == 1


def test_renaming_a_goal_recounts_its_caps(process, make_click, offer, sale):
    cap = Cap.objects.create(offer=offer, goal=sale, limit=2)
    process(clickid=make_click().clickid, goal="sale", sum="10")
    assert used(cap) == 1
    sale.value = "purchase"  # the conversion above stays of goal "sale"
    sale.save()
    cap.refresh_from_db()
    assert used(cap) == counted(cap) == 0


def test_raising_a_caps_limit_keeps_its_usage(process, make_click, offer):
    cap = Cap.objects.create(offer=offer, limit=1)
    process(clickid=make_click().clickid)
    cap.limit = 2
    cap.save()
    assert used(cap) == 1
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    assert process(clickid=make_click().clickid).conversion.reason == "Cap is reached"


def test_a_cap_edited_through_the_api_counts_afresh(
    process, make_click, offer, partner, admin_client
):
    other = Partner.objects.create(name="Other")
    cap = Cap.objects.create(offer=offer, partner=partner, limit=1)
    process(clickid=make_click().clickid)
    assert used(cap) == 1
    response = admin_client.patch(
        f"/api/v1/caps/{cap.pk}/", {"partner": other.pk}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["used"] == "0.0000"
    assert process(clickid=make_click(partner=other).clickid).conversion.status == ("approved")


# 3. Repricing by a status update that carries sum


def test_a_decline_carrying_a_sum_frees_what_the_conversion_counted(
    process, make_click, offer, sale
):
    cap = Cap.objects.create(offer=offer, kind="payout", limit=100)
    first = make_click().clickid
    assert process(clickid=first, goal="sale", status="2", sum="100").conversion.payout == 50
    declined = process(clickid=first, goal="sale", status="3", sum="0").conversion
    assert (declined.status, declined.payout) == ("declined", 0)
    conv = process(clickid=make_click().clickid, goal="sale", sum="200").conversion
    assert (conv.status, conv.payout) == ("approved", 100)
    assert used(cap) == counted(cap) == 100


def test_an_approval_that_raises_the_payout_counts_the_difference(process, make_click, offer, sale):
    cap = Cap.objects.create(offer=offer, kind="payout", limit=100)
    first = make_click().clickid
    process(clickid=first, goal="sale", status="2", sum="100")  # payout 50
    approved = process(clickid=first, goal="sale", status="1", sum="180").conversion
    assert (approved.status, approved.payout) == ("approved", 90)
    assert used(cap) == counted(cap) == 90
    conv = process(clickid=make_click().clickid, goal="sale", sum="40").conversion  # payout 20
    assert (conv.status, conv.reason) == ("declined", "Cap is reached")
    assert used(cap) == counted(cap) == 90


def test_a_pending_update_that_lowers_the_payout_frees_the_difference(
    process, make_click, offer, sale
):
    cap = Cap.objects.create(offer=offer, kind="payout", limit=60)
    first = make_click().clickid
    process(clickid=first, goal="sale", status="2", sum="100")  # payout 50
    process(clickid=first, goal="sale", status="2", sum="20")  # still pending, payout 10
    assert used(cap) == counted(cap) == 10
    assert process(clickid=make_click().clickid, goal="sale", sum="100").conversion.status == (
        "approved"
    )


# 6. One time for a conversion's cap period


def test_the_cap_period_is_the_conversions_creation_day_both_ways(make_click, offer, settings):
    settings.CAP_TIMEZONE = "Asia/Tokyo"
    cap = Cap.objects.create(offer=offer, limit=5)
    before_midnight = datetime.fromisoformat("2026-11-26T14:59:59.900+00:00")  # 23:59:59 Tokyo
    click = make_click(created_at=before_midnight - timedelta(hours=1))
    pid = received(received_at=before_midnight, clickid=click.clickid, status="2")
    with time_machine.travel("2026-11-26 15:00:02 +00:00", tick=False):  # 00:00:02 Tokyo
        conv = settle_now(pid).conversion
        assert caps.period_key(cap, conv.created_at) == "2026-11-27"
        assert (used(cap, "2026-11-26"), used(cap, "2026-11-27")) == (0, 1)
    with time_machine.travel("2026-11-27 03:00 +00:00", tick=False):
        statuses.change_status_by_manager(conv.pk, "declined")
    assert (used(cap, "2026-11-26"), used(cap, "2026-11-27")) == (0, 0)


# 7. Over the cap, sent to review


def test_an_overcap_conversion_waits_for_a_manager_with_the_cap_reason(process, make_click, offer):
    cap = Cap.objects.create(offer=offer, limit=1, overcap_status="pending")
    assert process(clickid=make_click().clickid).conversion.status == "approved"
    clickid = make_click().clickid
    conv = process(clickid=clickid).conversion
    assert (conv.status, conv.reason) == ("pending", "Cap is reached")
    # The advertiser's approval is recorded, but does not approve it past the cap.
    row = process(clickid=clickid, status="1")
    assert (row.state, row.error, row.conversion_id) == ("accepted", "", conv.pk)
    conv.refresh_from_db()
    assert (conv.status, conv.reason, conv.version) == ("pending", "Cap is reached", 1)
    assert process(clickid=clickid, status="5").conversion.status == "pending"
    # Only a manager approves it; it was counted all along.
    statuses.change_status_by_manager(conv.pk, "approved")
    conv.refresh_from_db()
    assert (conv.status, conv.reason) == ("approved", "")
    assert used(cap) == counted(cap) == 2


def test_an_overcap_conversion_may_still_be_declined_by_the_advertiser(process, make_click, offer):
    cap = Cap.objects.create(offer=offer, limit=1, overcap_status="pending")
    process(clickid=make_click().clickid)
    clickid = make_click().clickid
    process(clickid=clickid)
    conv = process(clickid=clickid, status="3").conversion
    assert (conv.status, conv.reason) == ("declined", "Declined via advertiser's postback")
    assert used(cap) == counted(cap) == 1


# The reconciler


def test_the_reconciler_repairs_a_counter_that_drifted_and_says_so(make_click, offer, caplog):
    cap = Cap.objects.create(offer=offer, limit=10)
    for _ in range(3):
        settle_now(received(clickid=make_click().clickid))
    CapCounter.objects.filter(cap=cap).update(used=7)
    with caplog.at_level(logging.ERROR, logger="conversions.processing.caps"):
        assert caps.reconcile() == 1
    assert used(cap) == counted(cap) == 3
    assert any("7" in r.getMessage() and "3" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert caps.reconcile() == 0
    assert not caplog.records


# Races (PostgreSQL): usage stays exact while caps change and postbacks settle


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent settles")
@pytest.mark.parametrize("round_", range(2))
def test_a_cap_created_while_postbacks_settle_counts_every_conversion(
    make_click, offer, transactional_db, round_
):
    ids = [received(clickid=make_click().clickid) for _ in range(12)]
    for pid in ids:
        assert Postback.objects.filter(pk=pid).claim()
    checked = {}
    for pid in ids:
        batch = settlement.load_batch([pid])
        checked[pid] = [check(batch) for check in CHECKS.values()]

    def run(i: int):
        if i == len(ids):
            # Created while the rest settle, some conversions made already.
            wait_for(lambda: Conversion.objects.count() >= 3, what="three conversions")
            return Cap.objects.create(offer=offer, limit=100)
        return settlement.settle(checked[ids[i]], [ids[i]])

    cap = run_concurrently(len(ids) + 1, run)[-1]
    settle_now(received(clickid=make_click().clickid))
    assert used(cap) == counted(cap) == 13
