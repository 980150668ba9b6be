"""The check trail: each settled postback keeps what each check said, and which one decided."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from conversions.models import Conversion, Postback
from offers.models import Cap

pytestmark = pytest.mark.django_db

DECIDING_ORDER = [
    "params",
    "click",
    "currency",
    "offer",
    "secure",
    "ip",
    "duplicate",
    "partner",
    "lifespan",
    "payout",
    "rules",
    "cap",
]


@pytest.fixture
def settle(client, settings):
    """Send a postback and settle it inside the request (the same checks and callback)."""
    settings.POSTBACK_PROCESSING = "sync"

    def settle_(**params) -> Postback:
        client.get("/postback", params, REMOTE_ADDR="203.0.113.7")
        return Postback.objects.order_by("-received_at", "-id").first()

    return settle_


def failed(checks: dict) -> dict:
    return {name: v["detail"] for name, v in checks.items() if not v["ok"]}


def test_an_accepted_postback_passed_every_check(settle, click):
    postback = settle(clickid=click.clickid, sum="10", action_id="a-1")
    assert postback.state == "accepted"
    assert list(sorted(postback.checks)) == sorted(DECIDING_ORDER)
    assert failed(postback.checks) == {}
    assert postback.checks["payout"]["detail"] == "goal 1: revenue 3.00, payout 2.00"
    assert postback.checks["ip"]["detail"] == "203.0.113.7 allowed"
    assert postback.checks["cap"]["detail"] == "not reached"


@pytest.mark.parametrize(
    ("params", "check", "error"),
    [
        ({"clickid": ""}, "params", "Missing mandatory parameter clickid"),
        ({"clickid": "xyz"}, "params", "Click_id: invalid format"),
        ({"status": "9"}, "params", "Invalid parameter status"),
        ({"clickid": "f" * 24}, "click", "Click not found"),
        ({"secure": "wrong"}, "secure", "Access denied"),
    ],
)
def test_a_rejected_postback_names_the_check_that_rejected_it(
    settle, click, offer, params, check, error
):
    offer.secure = "s3cret"
    offer.save()
    params = {"clickid": click.clickid, "secure": "s3cret", **params}
    postback = settle(**params)
    assert (postback.state, postback.error) == ("rejected", error)
    assert failed(postback.checks) == {check: error}
    # Those before it passed; those after it decided nothing and are not listed.
    before = DECIDING_ORDER[: DECIDING_ORDER.index(check)]
    assert list(sorted(postback.checks)) == sorted([*before, check])


def test_an_address_outside_allowed_ips_is_the_ip_check(settle, click, offer):
    offer.advertiser.allowed_ips = ["198.51.100.0/24"]
    offer.advertiser.save()
    postback = settle(clickid=click.clickid)
    assert failed(postback.checks) == {"ip": "Current IP-address is denied"}


@pytest.mark.parametrize("status", ["", "1"])
def test_a_duplicate_is_the_duplicate_check(settle, click, partner, offer, status):
    Conversion.objects.create(offer=offer, partner=partner, click=click, status="approved")
    postback = settle(clickid=click.clickid, status=status)
    error = "Conversion exists" if not status else "Conversion status is not pending"
    assert (postback.state, postback.error) == ("rejected", error)
    assert failed(postback.checks) == {"duplicate": error}
    assert all(postback.checks[name]["ok"] for name in DECIDING_ORDER[:5])


def test_a_status_update_passes_the_duplicate_check_naming_the_conversion(
    settle, click, partner, offer
):
    conversion = Conversion.objects.create(
        offer=offer, partner=partner, click=click, status="pending"
    )
    postback = settle(clickid=click.clickid, status="1")
    assert postback.state == "accepted"
    assert postback.checks["duplicate"] == {
        "ok": True,
        "detail": f"updates pending conversion #{conversion.pk}",
    }
    assert failed(postback.checks) == {}
    # The declines and caps are a new conversion's.
    assert "cap" not in postback.checks


def test_a_declined_conversion_names_the_check_that_declined_it(settle, click, partner):
    partner.status = "banned"
    partner.save()
    postback = settle(clickid=click.clickid)
    assert postback.conversion.reason == "Partner is banned"
    assert failed(postback.checks) == {"partner": "Partner is banned"}
    assert "lifespan" not in postback.checks


def test_an_unknown_goal_is_the_payout_check(settle, click):
    postback = settle(clickid=click.clickid, goal="nope")
    assert failed(postback.checks) == {"payout": "Payments not found"}


def test_the_advertisers_decline_is_the_params_check(settle, click):
    postback = settle(clickid=click.clickid, status="3")
    assert postback.conversion.status == "declined"
    assert failed(postback.checks) == {"params": "Declined via advertiser's postback"}
    assert postback.checks["payout"]["ok"]


def test_an_expired_click_is_the_lifespan_check(settle, make_click, offer):
    click = make_click(created_at=timezone.now() - timedelta(hours=offer.click_lifespan + 1))
    postback = settle(clickid=click.clickid)
    assert failed(postback.checks) == {"lifespan": "Click session lifespan is expired"}


@pytest.mark.parametrize(("overcap", "status"), [("declined", "declined"), ("pending", "pending")])
def test_a_full_cap_is_the_cap_check(settle, click, make_click, partner, offer, overcap, status):
    Conversion.objects.create(
        offer=offer, partner=partner, click=make_click(), status="approved", payout=Decimal(2)
    )
    Cap.objects.create(offer=offer, limit=1, overcap_status=overcap)
    postback = settle(clickid=click.clickid)
    assert (postback.conversion.status, postback.conversion.reason) == (status, "Cap is reached")
    assert failed(postback.checks) == {"cap": "Cap is reached"}
    assert all(v["ok"] for name, v in postback.checks.items() if name != "cap")


def test_the_api_and_the_postback_page_show_the_trail(settle, click, offer, admin_client):
    offer.secure = "s3cret"
    offer.save()
    postback = settle(clickid=click.clickid, secure="nope")
    page = admin_client.get(f"/admin/conversions/postback/{postback.pk}/change/").content.decode()
    assert '<li class="check check-failed" data-check="secure"' in page
    assert "Access denied</li>" in page
    assert '<li class="check check-ok" data-check="click"' in page
    body = admin_client.get(f"/api/v1/postbacks/{postback.pk}/").json()
    assert body["checks"]["secure"] == {"ok": False, "detail": "Access denied"}
    assert body["checks"]["click"]["ok"] is True
