"""What every panel page shares: times to the second with their zone, the index's order,
and allowed IPs typed one per line."""

import re
from datetime import datetime

import pytest

from offers.models import Advertiser

pytestmark = pytest.mark.django_db

ADVERTISER_ADD = "/admin/offers/advertiser/add/"


def test_times_show_seconds_and_the_time_zone(manager_client, make_postback):
    at = datetime.fromisoformat("2026-11-30T08:05:09+00:00")
    postback = make_postback(params={"clickid": "a" * 24}, received_at=at)
    listing = manager_client.get("/admin/conversions/postback/").content.decode()
    assert "2026-11-30 08:05:09 UTC" in listing
    page = manager_client.get(f"/admin/conversions/postback/{postback.pk}/change/").content.decode()
    assert "2026-11-30 08:05:09 UTC" in page


def test_times_are_in_the_panels_time_zone(manager_client, make_postback, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    at = datetime.fromisoformat("2026-07-01T10:00:00+00:00")
    make_postback(params={"clickid": "a" * 24}, received_at=at)
    listing = manager_client.get("/admin/conversions/postback/").content.decode()
    assert "2026-07-01 12:00:00 CEST" in listing


def _index_order(html: str) -> list[str]:
    """Model names in the order the index lists them (the content, not the sidebar)."""
    content = html.split('id="content-main"', 1)[1]
    return re.findall(r'<th scope="row" id="[\w-]+">\s*<a href="[^"]+">([^<]+)</a>', content)


def test_index_puts_what_managers_use_first_and_accounts_last(manager, client):
    manager.is_superuser = True
    manager.save()
    client.force_login(manager)
    names = _index_order(client.get("/admin/").content.decode())
    assert names[:5] == ["Reports", "Conversions", "Postbacks", "Postback deliveries", "Clicks"]
    assert names.index("Postbacks") < names.index("Offers") < names.index("Partners")
    assert names.index("Partners") < names.index("Groups")
    assert names.index("Partners") < names.index("Tokens")
    assert names[-1] == "Task results"


def test_allowed_ips_one_per_line(manager_client):
    page = manager_client.get(ADVERTISER_ADD).content.decode()
    assert "One IP address or CIDR network per line" in page
    response = manager_client.post(
        ADVERTISER_ADD,
        {
            "name": "Ads Co",
            "secure": "",
            "allowed_ips": "10.0.0.1\r\n198.51.100.0/24\r\n\r\n2001:db8::/32",
        },
    )
    assert response.status_code == 302
    advertiser = Advertiser.objects.get(name="Ads Co")
    assert advertiser.allowed_ips == ["10.0.0.1", "198.51.100.0/24", "2001:db8::/32"]
    edit = manager_client.get(f"/admin/offers/advertiser/{advertiser.pk}/change/").content.decode()
    assert "10.0.0.1\n198.51.100.0/24\n2001:db8::/32</textarea>" in edit


def test_allowed_ips_refuses_what_is_not_an_address(manager_client):
    response = manager_client.post(
        ADVERTISER_ADD, {"name": "Ads Co", "secure": "", "allowed_ips": "10.0.0.1\nten.0.0.2"}
    )
    assert response.status_code == 200
    assert "ten.0.0.2 is not an IP address or CIDR network." in response.content.decode()
    assert not Advertiser.objects.filter(name="Ads Co").exists()


def test_empty_allowed_ips_means_any(manager_client):
    response = manager_client.post(
        ADVERTISER_ADD, {"name": "Ads Co", "secure": "", "allowed_ips": ""}
    )
    assert response.status_code == 302
    assert Advertiser.objects.get(name="Ads Co").allowed_ips == []
    assert "any" in manager_client.get("/admin/offers/advertiser/").content.decode()
