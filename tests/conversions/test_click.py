import re
from urllib.parse import parse_qs, urlsplit

import pytest

from conversions.intake import click_buffer
from conversions.models import Click
from offers.models import Offer
from partners.models import OfferAccess, Partner

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, params=["direct", "buffered"])
def click_mode(request, settings):
    """Every rule holds both ways a click is stored: in the request, or through the buffer."""
    if request.param == "buffered" and not settings.CLICK_BUFFER:
        pytest.skip("the click buffer needs PostgreSQL and a Redis cache")
    settings.CLICK_BUFFER = request.param == "buffered"
    return request.param


def stored():
    """Clicks in the table, once whatever the buffer holds has been flushed."""
    click_buffer.flush()
    return Click.objects


def assert_no_click():
    assert click_buffer.pending() == 0  # nothing buffered either
    assert not Click.objects.exists()


def test_click_records_and_redirects_with_macros_url_encoded(client, offer, partner):
    offer.url = "https://land.example.com/go?c={clickid}&o={offer_id}&p={pid}&s1={sub1}&s8={sub8}"
    offer.save()
    response = client.get(
        "/click",
        {"offer_id": offer.pk, "pid": partner.pk, "sub1": "a b&c=d/é", "sub8": "x"},
        HTTP_USER_AGENT="Mozilla/5.0",
        HTTP_REFERER="https://pub.example.org/page",
        REMOTE_ADDR="198.51.100.4",
        HTTP_CF_IPCOUNTRY="de",
    )
    assert response.status_code == 302
    click = stored().get()
    assert re.fullmatch(r"[0-9a-f]{24}", click.clickid)
    location = response["Location"]
    assert location == (
        f"https://land.example.com/go?c={click.clickid}&o={offer.pk}&p={partner.pk}"
        "&s1=a%20b%26c%3Dd%2F%C3%A9&s8=x"
    )
    assert parse_qs(urlsplit(location).query)["s1"] == ["a b&c=d/é"]
    assert (click.offer, click.partner, click.sub1, click.sub8) == (
        offer,
        partner,
        "a b&c=d/é",
        "x",
    )
    assert (click.ip, click.user_agent, click.country) == ("198.51.100.4", "Mozilla/5.0", "DE")
    assert click.referrer == "https://pub.example.org/page"


def test_clickids_are_unique_and_unpredictable(client, offer, partner):
    ids = set()
    for _ in range(50):
        client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    ids = set(stored().values_list("clickid", flat=True))
    assert len(ids) == 50
    # The day (4 hex digits), then 80 random bits each: no shared prefix of the
    # random part beyond what chance allows.
    assert len({cid[4:10] for cid in ids}) > 45


def test_unknown_offer_is_404_and_records_nothing(client, partner):
    assert client.get("/click", {"offer_id": 999999, "pid": partner.pk}).status_code == 404
    assert client.get("/click", {"offer_id": "abc", "pid": partner.pk}).status_code == 404
    assert client.get("/click", {"pid": partner.pk}).status_code == 404
    assert_no_click()


@pytest.mark.parametrize("offer_id", ["%C2%B9", "%E2%91%A0", "%D9%A1", "%EF%BC%91", "1%C2%B9"])
def test_an_offer_id_of_non_ascii_digits_is_a_clear_404(client, partner, offer_id):
    response = client.get(f"/click?offer_id={offer_id}&pid={partner.pk}")
    assert response.status_code == 404
    assert response.content.decode() == "Unknown offer"
    assert_no_click()


def as_digits(number: int, zero: str) -> str:
    """``number`` written with another script's digits (zero: that script's 0)."""
    return "".join(chr(ord(zero) + int(d)) for d in str(number))


@pytest.mark.parametrize("pid", ["\u00b9", "\u2460", "arabic-indic", "fullwidth"])
def test_a_pid_of_non_ascii_digits_is_no_partner(client, make_offer, partner, pid):
    pid = {
        "arabic-indic": as_digits(partner.pk, "\u0660"),
        "fullwidth": as_digits(partner.pk, "\uff10"),
    }.get(pid, pid)
    offer = make_offer(trafficback_url="https://tb.example.com/?pid={pid}")
    response = client.get("/click", {"offer_id": offer.pk, "pid": pid})
    assert response.status_code == 302
    assert response["Location"] == "https://tb.example.com/?pid=0"
    assert_no_click()


@pytest.mark.parametrize("status", [Partner.Status.DISABLED, Partner.Status.BANNED])
def test_inactive_partner_goes_to_trafficback(client, make_offer, status):
    offer = make_offer(trafficback_url="https://tb.example.com/")
    bad = Partner.objects.create(name="x", status=status)
    response = client.get("/click", {"offer_id": offer.pk, "pid": bad.pk})
    assert response.status_code == 302
    assert response["Location"] == "https://tb.example.com/"
    assert_no_click()


def test_unknown_partner_goes_to_trafficback(client, make_offer):
    offer = make_offer(trafficback_url="https://tb.example.com/")
    response = client.get("/click", {"offer_id": offer.pk, "pid": 424242})
    assert response["Location"] == "https://tb.example.com/"
    assert_no_click()


def test_private_offer_without_access_goes_to_trafficback(client, make_offer, partner):
    offer = make_offer(privacy=Offer.Privacy.PRIVATE, trafficback_url="https://tb.example.com/")
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response["Location"] == "https://tb.example.com/"
    assert_no_click()


def test_private_offer_with_access_redirects_to_landing(client, make_offer, partner):
    offer = make_offer(privacy=Offer.Privacy.PRIVATE, trafficback_url="https://tb.example.com/")
    OfferAccess.objects.create(offer=offer, partner=partner)
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response["Location"].startswith("https://land.example.com/")
    assert stored().filter(offer=offer, partner=partner).count() == 1


def test_access_to_another_offer_does_not_open_a_private_one(client, make_offer, partner):
    private = make_offer(privacy=Offer.Privacy.PRIVATE)
    OfferAccess.objects.create(offer=make_offer(), partner=partner)
    assert client.get("/click", {"offer_id": private.pk, "pid": partner.pk}).status_code == 404


@pytest.mark.parametrize("status", [Offer.Status.PAUSED, Offer.Status.DISABLED])
def test_paused_or_disabled_offer_goes_to_trafficback(client, make_offer, partner, status):
    offer = make_offer(status=status, trafficback_url="https://tb.example.com/?from={pid}")
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk})
    assert response.status_code == 302
    assert response["Location"] == f"https://tb.example.com/?from={partner.pk}"
    assert_no_click()


@pytest.mark.parametrize("status", [Offer.Status.PAUSED, Offer.Status.DISABLED])
def test_no_trafficback_is_404(client, make_offer, partner, status):
    offer = make_offer(status=status, trafficback_url="")
    assert client.get("/click", {"offer_id": offer.pk, "pid": partner.pk}).status_code == 404
    assert_no_click()


def test_click_is_get_only(client, offer, partner):
    assert client.post("/click", {"offer_id": offer.pk, "pid": partner.pk}).status_code == 405


def test_long_subs_are_truncated_not_refused(client, offer, partner):
    response = client.get("/click", {"offer_id": offer.pk, "pid": partner.pk, "sub2": "z" * 5000})
    assert response.status_code == 302
    assert stored().get().sub2 == "z" * 255


def test_forwarded_for_is_used_only_from_trusted_proxies(client, offer, partner, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    client.get(
        "/click",
        {"offer_id": offer.pk, "pid": partner.pk},
        REMOTE_ADDR="10.1.2.3",
        HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.9",
    )
    client.get(
        "/click",
        {"offer_id": offer.pk, "pid": partner.pk},
        REMOTE_ADDR="192.0.2.1",
        HTTP_X_FORWARDED_FOR="198.51.100.9",
    )
    assert list(stored().order_by("created_at").values_list("ip", flat=True)) == [
        "198.51.100.9",
        "192.0.2.1",
    ]


def test_an_ipv6_zone_is_dropped_from_the_address(client, offer, partner):
    client.get("/click", {"offer_id": offer.pk, "pid": partner.pk}, REMOTE_ADDR="fe80::1%eth0")
    assert stored().get().ip == "fe80::1"
