"""Sending one delivery against a real local HTTP receiver: outcomes, retries, safety.

These call the ``deliver`` task in the test's own thread; the queue path is
covered in test_delivery_worker.py.
"""

import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from conversions.delivery import tracker_call
from conversions.delivery.tasks import deliver
from conversions.models import PostbackDelivery
from partners.models import PartnerPostback

from .conftest import deliveries

pytestmark = pytest.mark.django_db


def sent(httpserver) -> list:
    return [request for request, _ in httpserver.log]


def test_get_delivery_reaches_the_receiver_with_filled_macros(
    httpserver, make_postback, make_conversion, click
):
    httpserver.expect_request("/pb", method="GET").respond_with_data("OK, thanks")
    make_postback(query="?click={clickid}&status={status}&sum={sum}")
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "delivered"

    (request,) = sent(httpserver)
    assert request.args.to_dict() == {"click": click.clickid, "status": "1", "sum": "2.00"}
    # Connected to the checked address, addressed to the partner's host.
    assert request.headers["Host"] == f"localhost:{httpserver.port}"
    row.refresh_from_db()
    assert (row.state, row.status_code, row.response, row.error) == (
        "delivered",
        200,
        "OK, thanks",
        "",
    )
    assert row.sent_at is not None and row.duration_ms is not None


def test_post_delivery_sends_the_macros_as_a_form_body(
    httpserver, make_postback, make_conversion, click
):
    httpserver.expect_request("/pb", method="POST").respond_with_data("ok")
    make_postback(method="POST", query="?click={clickid}&sub1={sub1}")
    click.sub1 = "a b&c"
    click.save()
    (row,) = deliveries(conversion=make_conversion(click=click))

    assert deliver(row.pk) == "delivered"

    (request,) = sent(httpserver)
    assert request.args.to_dict() == {}
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.form.to_dict() == {"click": click.clickid, "sub1": "a b&c"}


def test_delivery_task_run_twice_sends_once(httpserver, make_postback, make_conversion):
    httpserver.expect_request("/pb").respond_with_data("ok")
    make_postback()
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "delivered"
    assert deliver(row.pk) == "skipped"

    assert len(sent(httpserver)) == 1
    assert len(deliveries()) == 1


def test_server_error_is_retried_after_the_first_delay(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_RETRY_DELAYS = [90, 600]
    httpserver.expect_request("/pb").respond_with_data("down for maintenance", status=503)
    pp = make_postback()
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    first, retry = deliveries()
    assert (first.status_code, first.error, first.response) == (
        503,
        "HTTP 503",
        "down for maintenance",
    )
    assert (retry.attempt, retry.state, retry.sent_at) == (2, "pending", None)
    wait = retry.next_retry_at - first.sent_at
    assert timedelta(seconds=89) < wait < timedelta(seconds=92)
    pp.refresh_from_db()
    assert pp.consecutive_failures == 1


def test_retries_stop_when_the_schedule_is_used_up(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_RETRY_DELAYS = [60]
    httpserver.expect_request("/pb").respond_with_data("", status=500)
    make_postback()
    (row,) = deliveries(conversion=make_conversion())

    deliver(row.pk)
    deliver(deliveries(attempt=2)[0].pk)

    assert [(d.attempt, d.state) for d in deliveries()] == [(1, "failed"), (2, "failed")]


def test_client_error_gets_one_attempt_only(httpserver, make_postback, make_conversion):
    httpserver.expect_request("/pb").respond_with_data("unknown click", status=404)
    make_postback()
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    (row,) = deliveries()
    assert (row.status_code, row.error, row.response) == (404, "HTTP 404", "unknown click")
    assert len(sent(httpserver)) == 1


def test_slow_receiver_times_out_and_is_retried(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_TIMEOUT = 0.3
    release = threading.Event()

    def slow(request):
        release.wait(5)
        return Response("too late")

    httpserver.expect_request("/pb").respond_with_handler(slow)
    make_postback()
    (row,) = deliveries(conversion=make_conversion())
    try:
        assert deliver(row.pk) == "failed"
    finally:
        release.set()

    first, retry = deliveries()
    assert first.error.startswith("Timeout: ReadTimeout")
    assert first.status_code is None
    assert 250 <= first.duration_ms < 2000
    assert (retry.attempt, retry.state) == (2, "pending")


def test_connection_refused_is_retried(make_postback, make_conversion):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port once the probe is closed.
    make_postback(query="", url=f"http://127.0.0.1:{port}/pb")
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    first, retry = deliveries()
    assert first.error.startswith("ConnectError")
    assert retry.state == "pending"


def test_redirect_is_not_followed(httpserver, make_postback, make_conversion):
    elsewhere = httpserver.url_for("/elsewhere").replace("localhost", "127.0.0.1")
    httpserver.expect_request("/pb").respond_with_data(
        "", status=302, headers={"Location": elsewhere}
    )
    httpserver.expect_request("/elsewhere").respond_with_data("should not be called")
    make_postback()
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    (row,) = deliveries()
    assert row.status_code == 302
    assert row.error == f"HTTP 302: redirect to {elsewhere} not followed"
    assert [r.path for r in sent(httpserver)] == ["/pb"]


def test_long_answer_is_read_only_up_to_the_cap_and_stored_truncated(
    httpserver, make_postback, make_conversion
):
    httpserver.expect_request("/pb").respond_with_data("x" * 1_000_000)
    make_postback()
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "delivered"

    row.refresh_from_db()
    assert row.response == "x" * 1024


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/pb",
        "http://127.0.0.1:{port}/pb",
        "http://[::1]:{port}/pb",
        "http://10.1.2.3/pb",
        "http://192.168.0.1/pb",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/pb",
        "http://0.0.0.0:{port}/pb",
        "http://100.64.0.1/pb",
    ],
)
def test_non_public_addresses_are_refused(
    url, httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = False
    httpserver.expect_request("/pb").respond_with_data("ok")
    make_postback(query="", url=url.format(port=httpserver.port))
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    (row,) = deliveries()
    assert row.error.startswith("Refused:")
    assert "non-public address" in row.error
    assert row.status_code is None
    assert sent(httpserver) == []


@pytest.mark.parametrize(
    "address",
    [
        # 6to4 (2002::/16) and Teredo (2001::/32) carry an IPv4 address inside;
        # NAT64's well-known prefix (64:ff9b::/96) too. Loopback, private and
        # cloud-metadata ones are refused as the IPv4 address itself would be.
        "2002:7f00:1::",
        "2002:a01:203::1",
        "2002:a9fe:a9fe::",
        "2002:c0a8:1::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
    ],
)
def test_ipv6_addresses_embedding_a_non_public_ipv4_are_refused(address):
    # Checked without a call: an address that slipped through would be dialled.
    with pytest.raises(tracker_call.Refused, match="non-public address"):
        tracker_call.resolve(address, 80, allow_private=False)


def test_an_allowed_target_passes_the_guard_on_its_port_only(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = False
    settings.PARTNER_POSTBACK_ALLOWED_TARGETS = [f"127.0.0.1:{httpserver.port}"]
    httpserver.expect_request("/pb").respond_with_data("ok")
    make_postback(query="", url=f"http://127.0.0.1:{httpserver.port}/pb")
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "delivered"

    allowed = settings.PARTNER_POSTBACK_ALLOWED_TARGETS
    for host, port in (("127.0.0.1", httpserver.port + 1), ("127.0.0.2", httpserver.port)):
        with pytest.raises(tracker_call.Refused, match="non-public address"):
            tracker_call.resolve(host, port, allow_private=False, allowed_targets=allowed)


def test_unresolvable_host_is_retried(make_postback, make_conversion, settings):
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = False
    make_postback(query="", url="http://no-such-host.invalid/pb")
    (row,) = deliveries(conversion=make_conversion())

    assert deliver(row.pk) == "failed"

    first, retry = deliveries()
    assert first.error.startswith("Cannot resolve no-such-host.invalid")
    assert retry.state == "pending"


def test_postback_is_disabled_after_repeated_failures(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_DISABLE_AFTER = 3
    httpserver.expect_request("/pb").respond_with_data("gone", status=410)
    pp = make_postback()

    for n in range(3):
        (row,) = deliveries(conversion=make_conversion(action_id=f"a{n}"))
        deliver(row.pk)

    pp.refresh_from_db()
    assert not pp.enabled
    assert pp.auto_disabled
    assert "after 3 failed deliveries in a row; last: HTTP 410" in pp.disabled_reason
    assert pp.delivery_state == pp.disabled_reason
    assert deliveries(conversion=make_conversion(action_id="a4")) == []
    assert len(sent(httpserver)) == 3


def test_disabling_closes_waiting_retries_unsent(
    httpserver, make_postback, make_conversion, settings
):
    settings.PARTNER_POSTBACK_DISABLE_AFTER = 2
    httpserver.expect_request("/pb").respond_with_data("", status=500)
    make_postback()
    first = deliveries(conversion=make_conversion(action_id="a"))[0]
    deliver(first.pk)
    waiting = deliveries(state="pending")[0]
    second = deliveries(conversion=make_conversion(action_id="b"))[0]

    deliver(second.pk)

    assert deliveries(state="pending") == []
    waiting.refresh_from_db()
    assert (waiting.state, waiting.error) == (
        "failed",
        "Not sent: the partner postback is disabled",
    )
    assert deliver(waiting.pk) == "skipped"
    assert len(sent(httpserver)) == 2


def test_a_success_resets_the_failure_count(httpserver, make_postback, make_conversion):
    answers = iter([500, 500, 200])
    httpserver.expect_request("/pb").respond_with_handler(
        lambda request: Response("", status=next(answers))
    )
    pp = make_postback()
    (row,) = deliveries(conversion=make_conversion())

    deliver(row.pk)
    deliver(deliveries(attempt=2)[0].pk)
    pp.refresh_from_db()
    assert pp.consecutive_failures == 2
    assert pp.delivery_state == "Enabled (2 failed in a row)"

    assert deliver(deliveries(attempt=3)[0].pk) == "delivered"

    pp.refresh_from_db()
    assert pp.consecutive_failures == 0
    assert [d.state for d in deliveries()] == ["failed", "failed", "delivered"]


def test_delivery_of_a_postback_disabled_meanwhile_is_not_sent(
    httpserver, make_postback, make_conversion
):
    pp = make_postback()
    (row,) = deliveries(conversion=make_conversion())
    PartnerPostback.objects.filter(pk=pp.pk).update(enabled=False)

    assert deliver(row.pk) == "failed"

    row.refresh_from_db()
    assert row.error == "Not sent: the partner postback is disabled"
    assert sent(httpserver) == []


def test_a_row_lost_mid_call_is_closed_without_a_resend(make_postback, make_conversion):
    from conversions.delivery.deliveries import close_interrupted

    make_postback()
    (row,) = deliveries(conversion=make_conversion())
    PostbackDelivery.objects.filter(pk=row.pk).update(
        sent_at=timezone.now() - timedelta(minutes=10)
    )

    assert close_interrupted(timezone.now()) == 1

    (row,) = deliveries()
    assert row.state == "failed"
    assert row.error.startswith("Interrupted")


def test_a_retry_failing_after_a_resend_leaves_the_event_to_the_resend(
    httpserver, make_postback, make_conversion
):
    from conversions.delivery.deliveries import resend

    httpserver.expect_request("/pb").respond_with_data("", status=500)
    make_postback()
    (first,) = deliveries(conversion=make_conversion())
    deliver(first.pk)
    (retry,) = deliveries(state="pending")
    assert resend([first.pk]) == 1

    deliver(retry.pk)

    assert [(d.attempt, d.state) for d in deliveries()] == [
        (1, "failed"),
        (2, "failed"),
        (3, "pending"),
    ]
