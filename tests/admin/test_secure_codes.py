"""Secure codes in the operator panel: managers see and edit them, support sees a mask."""

import pytest

from conversions.models import Postback
from offers.secrecy import MASK

pytestmark = pytest.mark.django_db

ADVERTISER_URL = "/admin/offers/advertiser/{}/change/"
OFFER_URL = "/admin/offers/offer/{}/change/"


@pytest.fixture
def coded_offer(offer):
    offer.advertiser.secure = "demo-secret"
    offer.advertiser.save()
    return offer


def test_support_sees_a_mask_for_the_advertisers_secure_code(support_client, coded_offer):
    page = support_client.get(ADVERTISER_URL.format(coded_offer.advertiser_id))
    assert page.status_code == 200
    html = page.content.decode()
    assert "demo-secret" not in html
    assert MASK in html


def test_support_sees_offer_links_and_form_without_secure_codes(support_client, coded_offer):
    coded_offer.secure = "offer-code"
    coded_offer.save()
    html = support_client.get(OFFER_URL.format(coded_offer.pk)).content.decode()
    assert "offer-code" not in html
    assert "demo-secret" not in html
    assert f"secure={MASK}" in html


def test_support_sees_the_advertisers_code_masked_in_the_offer_links(support_client, coded_offer):
    html = support_client.get(OFFER_URL.format(coded_offer.pk)).content.decode()
    assert "demo-secret" not in html
    assert f"secure={MASK}" in html


def test_manager_sees_and_changes_the_secure_code(manager_client, coded_offer):
    url = ADVERTISER_URL.format(coded_offer.advertiser_id)
    html = manager_client.get(url).content.decode()
    assert 'name="secure"' in html
    assert 'value="demo-secret"' in html
    response = manager_client.post(url, {"name": "Acme Ads", "secure": "new-code"})
    assert response.status_code == 302
    coded_offer.advertiser.refresh_from_db()
    assert coded_offer.advertiser.secure == "new-code"
    assert (
        "secure=new-code" in manager_client.get(OFFER_URL.format(coded_offer.pk)).content.decode()
    )


def test_support_reads_postback_parameters_with_the_secure_code_masked(
    support_client, manager_client, make_postback
):
    postback = make_postback(params={"clickid": "b" * 24, "secure": "demo-secret", "goal": "1"})
    url = f"/admin/conversions/postback/{postback.pk}/change/"

    html = support_client.get(url).content.decode()
    assert "demo-secret" not in html
    assert "b" * 24 in html
    assert f"&quot;secure&quot;: &quot;{MASK}&quot;" in html

    assert "&quot;secure&quot;: &quot;demo-secret&quot;" in manager_client.get(url).content.decode()
    assert Postback.objects.get(pk=postback.pk).params["secure"] == "demo-secret"
