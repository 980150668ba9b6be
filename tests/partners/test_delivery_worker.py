"""Partner postbacks through the queue: a real worker, beat's task, a real local receiver."""

from datetime import timedelta

import time_machine
from django.utils import timezone
from werkzeug import Response

from conversions.delivery.deliveries import resend_conversion
from conversions.delivery.tasks import deliver, retry_due_deliveries
from conversions.models import Conversion, PostbackDelivery
from conversions.processing.statuses import change_status_by_manager

from ..conftest import wait_for, wait_settled
from .conftest import deliveries


def wait_states(expected: list[str], what: str) -> list[PostbackDelivery]:
    return wait_for(
        lambda: (rows := deliveries()) and [d.state for d in rows] == expected and rows,
        what=what,
    )


def test_advertiser_postback_and_status_change_reach_the_partner(
    worker, httpserver, make_postback, click, send
):
    httpserver.expect_request("/pb").respond_with_data("ok")
    make_postback(query="?click={clickid}&status={status}&sum={sum}&t={transactionid}")

    assert wait_settled(send(clickid=click.clickid, action_id="order-7", status="2")).state == (
        "accepted"
    )
    wait_states(["delivered"], "the new conversion's delivery")
    conversion = Conversion.objects.get()
    change_status_by_manager(conversion.pk, "declined")
    first, second = wait_states(["delivered", "delivered"], "the status change's delivery")

    assert [r.args.to_dict() for r, _ in httpserver.log] == [
        {"click": click.clickid, "status": "2", "sum": "2.00", "t": "order-7"},
        {"click": click.clickid, "status": "3", "sum": "2.00", "t": "order-7"},
    ]
    assert (first.event, first.status, second.event, second.status) == (
        1,
        "pending",
        2,
        "declined",
    )


def test_receiver_failing_twice_then_succeeding_is_delivered_on_the_third_attempt(
    worker, httpserver, make_postback, make_conversion, settings
):
    # Waits longer than the broker's visibility timeout: beat's task publishes them.
    settings.PARTNER_POSTBACK_RETRY_DELAYS = [4000, 4000]
    answers = iter([502, 500, 200])
    httpserver.expect_request("/pb").respond_with_handler(
        lambda request: Response("", status=next(answers))
    )
    make_postback()

    with time_machine.travel(timezone.now(), tick=True) as clock:
        make_conversion()
        _, retry = wait_states(["failed", "pending"], "the first failure")
        assert retry.next_retry_at > timezone.now() + timedelta(seconds=3900)
        assert retry_due_deliveries() == 0

        clock.shift(timedelta(seconds=4001))
        assert retry_due_deliveries() == 1
        wait_states(["failed", "failed", "pending"], "the second failure")

        clock.shift(timedelta(seconds=4001))
        assert retry_due_deliveries() == 1
        rows = wait_states(["failed", "failed", "delivered"], "the third attempt")

    assert [(d.attempt, d.status_code) for d in rows] == [(1, 502), (2, 500), (3, 200)]
    assert len(httpserver.log) == 3


def test_short_retry_waits_are_sent_by_the_worker_without_beat(
    worker, httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_RETRY_DELAYS = [1]
    answers = iter([503, 200])
    httpserver.expect_request("/pb").respond_with_handler(
        lambda request: Response("", status=next(answers))
    )
    make_postback()

    make_conversion()

    wait_states(["failed", "delivered"], "the countdown retry")


def test_client_error_through_the_queue_gets_one_attempt(
    worker, httpserver, make_postback, make_conversion
):
    httpserver.expect_request("/pb").respond_with_data("bad click", status=400)
    make_postback()

    make_conversion()

    (row,) = wait_states(["failed"], "the failed delivery")
    assert (row.status_code, row.response) == (400, "bad click")
    assert retry_due_deliveries() == 0


def test_delivery_task_running_concurrently_sends_once(
    worker, httpserver, make_postback, make_conversion
):
    httpserver.expect_request("/pb").respond_with_data("ok")
    conversion = make_conversion()
    # The postback is made after the conversion: this row is published only here.
    row = PostbackDelivery.objects.create(
        conversion=conversion,
        partner_postback=make_postback(),
        url=httpserver.url_for("/pb"),
    )

    runs = [deliver.apply_async((row.pk,), ignore_result=False) for _ in range(4)]

    assert sorted(run.get(timeout=20) for run in runs) == ["delivered"] + ["skipped"] * 3
    assert len(httpserver.log) == 1


def test_beat_publishes_a_delivery_whose_publish_was_lost(
    worker, httpserver, make_postback, make_conversion
):
    httpserver.expect_request("/pb").respond_with_data("ok")
    conversion = make_conversion()
    row = PostbackDelivery.objects.create(
        conversion=conversion,
        partner_postback=make_postback(),
        url=httpserver.url_for("/pb"),
        next_retry_at=timezone.now() - timedelta(seconds=1),
    )

    assert retry_due_deliveries() == 1

    wait_states(["delivered"], "the re-published delivery")
    assert deliveries()[0].pk == row.pk
    assert len(httpserver.log) == 1


def test_resending_a_conversion_sends_its_latest_event_again(
    worker, httpserver, make_postback, make_conversion
):
    httpserver.expect_request("/pb").respond_with_data("ok")
    make_postback()
    conversion = make_conversion()
    wait_states(["delivered"], "the first delivery")

    assert resend_conversion(conversion.pk) == 1

    rows = wait_states(["delivered", "delivered"], "the resent delivery")
    assert [d.attempt for d in rows] == [1, 2]
    assert len(httpserver.log) == 2
