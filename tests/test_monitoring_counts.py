"""/metrics after a known sequence of clicks, postbacks and partner deliveries: exact counts.

Everything goes through the real endpoints and the real worker; the partner
is a local HTTP server. Counters are compared as differences between a
scrape before and one after, so other tests' counts (and other processes'
files in the metrics folder) do not matter.
"""

import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug import Response

from affise_proj import logs
from conversions.intake import click_buffer
from conversions.models import PostbackDelivery
from offers.models import Cap
from partners.models import PartnerPostback

from .conftest import wait_for, wait_settled
from .monitoring import TOKEN, delta, scrape, value


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = True
    settings.PARTNER_POSTBACK_TIMEOUT = 2.0


def _click(client, offer, partner_id) -> str | None:
    answer = client.get("/click", {"offer_id": offer.pk, "pid": partner_id})
    if answer.status_code != 302:
        return None
    return parse_qs(urlsplit(answer["Location"]).query)["c"][0]


def test_metrics_count_a_known_sequence_exactly(worker, client, send, offer, partner, httpserver):
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/gone").respond_with_handler(lambda request: Response("", 404))
    PartnerPostback.objects.create(partner=partner, url=httpserver.url_for("/ok") + "?c={clickid}")
    PartnerPostback.objects.create(
        partner=partner, url=httpserver.url_for("/gone") + "?c={clickid}"
    )
    # One conversion at most, ever: the third valid postback is over the cap.
    Cap.objects.create(offer=offer, limit=1, period="all")
    before = scrape(client)

    first, second, third = (_click(client, offer, partner.pk) for _ in range(3))
    assert _click(client, offer, 999_999) is None  # no such partner, no trafficback: 404
    assert all((first, second, third))
    flushed = click_buffer.flush()

    ids = [
        send(clickid=first, action_id="a1"),  # approved
        send(clickid=second, action_id="a2", status="3"),  # declined by the advertiser
        send(clickid=first),  # Conversion exists
        send(clickid="f" * 24),  # Click not found
        send(action_id="no-click"),  # Missing mandatory parameter clickid
        send(clickid=third, action_id="a3"),  # Cap is reached (declined)
    ]
    states = [wait_settled(pk).state for pk in ids]
    assert states == ["accepted", "accepted", "rejected", "rejected", "rejected", "accepted"]
    # Three conversions, each fired to both partner postbacks: one delivered, one 404.
    rows = wait_for(
        lambda: len(done := PostbackDelivery.objects.exclude(state="pending")) == 6 and list(done),
        what="six partner deliveries",
    )
    assert sorted(row.state for row in rows) == ["delivered"] * 3 + ["failed"] * 3
    after = scrape(client)

    def changed(name, **labels):
        return delta(before, after, name, **labels)

    assert changed("postbacks_accepted_total", method="GET") == 6
    assert changed("postbacks_final_total", state="accepted") == 3
    assert changed("postbacks_final_total", state="rejected") == 3
    assert changed("postbacks_final_total", state="failed") == 0
    assert changed("postbacks_rejected_total", reason="Conversion exists") == 1
    assert changed("postbacks_rejected_total", reason="Click not found") == 1
    assert changed("postbacks_rejected_total", reason="Missing mandatory parameter clickid") == 1
    assert changed("conversions_created_total", status="approved", reason="none") == 1
    assert (
        changed(
            "conversions_created_total",
            status="declined",
            reason="Declined via advertiser's postback",
        )
        == 1
    )
    assert changed("conversions_created_total", status="declined", reason="Cap is reached") == 1
    assert changed("caps_reached_total", status="declined") == 1
    assert changed("postback_latency_seconds_count") == 6
    assert changed("postback_batch_size_sum") == 6
    assert changed("postback_settle_seconds_count") == changed("postback_batch_size_count") >= 1
    pid = str(partner.pk)
    assert changed("partner_deliveries_total", outcome="delivered", partner=pid) == 3
    assert changed("partner_deliveries_total", outcome="failed", partner=pid) == 3
    assert changed("clicks_total", outcome="recorded") == 3
    assert changed("clicks_total", outcome="refused") == 1
    # Buffered (PostgreSQL and Redis): the flush moved the three into the table.
    assert flushed == changed("clicks_flushed_total") == (3 if click_buffer.enabled() else 0)
    assert value(after, "postbacks_waiting") == 0
    assert value(after, "postbacks_oldest_waiting_seconds") == 0
    if click_buffer.enabled():
        assert value(after, "clicks_buffered") == 0


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict] = []
        self.addFilter(logs.ContextFilter())
        self.setFormatter(logs.JsonFormatter())

    def emit(self, record) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_one_postback_is_followed_from_accept_to_delivery_in_the_json_lines(
    worker, send, click, partner, httpserver
):
    httpserver.expect_request("/pb").respond_with_data("ok")
    PartnerPostback.objects.create(partner=partner, url=httpserver.url_for("/pb") + "?c={clickid}")
    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        postback_id = send(clickid=click.clickid, action_id="followed")
        wait_settled(postback_id)
        wait_for(
            lambda: any(line["message"].startswith("partner postback") for line in handler.lines),
            what="the delivery's line",
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = handler.lines
    accepted = next(line for line in lines if line["message"] == "postback accepted")
    assert (accepted["postback_id"], accepted["clickid"]) == (postback_id, click.clickid)
    settled = next(
        line
        for line in lines
        if line["message"] == "postback settled" and line["postback_id"] == postback_id
    )
    assert settled["clickid"] == click.clickid
    assert settled["state"] == "accepted"
    assert settled["task_id"] and postback_id in settled["postback_ids"]
    delivered = next(line for line in lines if line["message"] == "partner postback delivered")
    assert delivered["conversion_id"] == settled["conversion_id"]
    assert delivered["task_id"] and delivered["delivery_id"]
