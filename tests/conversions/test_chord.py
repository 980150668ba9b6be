"""What crosses the chord: typed verdicts, each check's used by the callback."""

import logging
from decimal import Decimal

from django.utils import timezone

from conversions.models import Conversion, Postback
from conversions.processing import settlement, verdicts
from conversions.processing.checks import CHECKS
from offers.models import Cap, CapCounter, period_key


def received(**params) -> str:
    return Postback.objects.create(method="GET", ip="203.0.113.7", params=params).id


def checked(pid: str) -> list[verdicts.Verdicts]:
    assert Postback.objects.filter(pk=pid).claim()
    batch = settlement.load_batch([pid])
    return [check(batch) for check in CHECKS.values()]


def test_every_checks_verdicts_come_back_from_json_as_they_were(db, click):
    pid = received(clickid=click.clickid, sum="12.5", status="1", sub1="x", action_id="A")
    results = checked(pid)
    for name, result in zip(CHECKS, results, strict=True):
        assert verdicts.from_json(name, verdicts.to_json(result)) == result, name
    assert all(
        result[pid].data is not None
        for name, result in zip(CHECKS, results, strict=True)
        if name in verdicts.DATA
    )


def test_the_callback_locks_the_conversions_the_duplicate_check_found(db, click, caplog):
    first = received(clickid=click.clickid, status="2")
    settlement.settle(checked(first), [first])
    update = received(clickid=click.clickid, status="1")
    results = checked(update)
    found = dict(zip(CHECKS, results, strict=True))["duplicate"][update].data
    assert found.conversion_ids == [Conversion.objects.get().pk]

    with caplog.at_level(logging.INFO, logger=settlement.log.name):
        settlement.settle(results, [update])
    # Found by the check: updated in the batch's one pass, not on a second try.
    assert not [r for r in caplog.records if "one by one" in r.getMessage()]
    assert Conversion.objects.get().status == "approved"


def test_without_the_duplicate_checks_word_the_constraint_catches_it(db, click, caplog):
    first = received(clickid=click.clickid, status="2")
    settlement.settle(checked(first), [first])
    update = received(clickid=click.clickid, status="1")
    results = checked(update)
    duplicate = list(CHECKS).index("duplicate")
    results[duplicate] = {update: verdicts.Verdict(data=verdicts.Existing([]))}

    with caplog.at_level(logging.INFO, logger=settlement.log.name):
        settlement.settle(results, [update])
    assert [r for r in caplog.records if "one by one" in r.getMessage()]
    assert Conversion.objects.get().status == "approved"
    assert Postback.objects.get(pk=update).state == "accepted"


def test_a_missing_counter_is_made_from_the_cap_checks_use(db, click, offer):
    cap = Cap.objects.create(offer=offer, period="day", kind="conversions", limit=Decimal(10))
    CapCounter.objects.all().delete()  # as for the first conversion of a new day
    pid = received(clickid=click.clickid)
    results = checked(pid)
    cap_check = list(CHECKS).index("cap")
    (use,) = results[cap_check][pid].data.uses
    assert use == (cap.pk, period_key(cap, timezone.now()), Decimal(0))
    # What the check read is what the callback starts the counter from.
    results[cap_check] = {
        pid: verdicts.Verdict(data=verdicts.CapUse([(use[0], use[1], Decimal(4))]))
    }
    settlement.settle(results, [pid])
    assert CapCounter.objects.get(cap=cap).used == 5


def test_a_chord_published_by_the_previous_version_still_settles():
    """Its duplicate and cap words had other shapes: read as nothing found, nothing read."""
    old = {"p1": {"data": {"conversion": 7}}, "p2": {"decline": "Cap is reached"}}
    assert verdicts.from_json("duplicate", old)["p1"] == verdicts.Verdict(data=verdicts.Existing())
    assert verdicts.from_json("cap", {"p1": {"data": {"overcap": "pending"}}})["p1"].data == (
        verdicts.CapUse()
    )
    click_word = {
        "id": 1,
        "offer_id": 2,
        "partner_id": 3,
        "country": "",
        "created_at": "2026-01-01T00:00:00+00:00",
    }
    assert verdicts.from_json("click", {"p1": {"data": click_word}})["p1"].data.offer_id == 2
