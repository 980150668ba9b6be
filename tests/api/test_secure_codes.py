"""Secure codes are for those who may change them: support reads a mask instead."""

import pytest

from conversions.models import Postback
from offers.secrecy import MASK

pytestmark = pytest.mark.django_db


@pytest.fixture
def coded_offer(offer):
    offer.secure = "offer-code"
    offer.save()
    offer.advertiser.secure = "demo-secret"
    offer.advertiser.save()
    return offer


def test_support_reads_advertisers_and_offers_without_their_secure_codes(support_api, coded_offer):
    advertiser = support_api.get(f"/api/v1/advertisers/{coded_offer.advertiser_id}/").json()
    assert advertiser["secure"] == MASK
    offer = support_api.get(f"/api/v1/offers/{coded_offer.pk}/").json()
    assert offer["secure"] == MASK
    listed = support_api.get("/api/v1/offers/").content.decode()
    assert "offer-code" not in listed
    assert "demo-secret" not in support_api.get("/api/v1/advertisers/").content.decode()


def test_a_blank_secure_code_reads_blank_for_support(support_api, offer):
    assert support_api.get(f"/api/v1/offers/{offer.pk}/").json()["secure"] == ""


@pytest.mark.parametrize("role", ["manager_api", "admin_api"])
def test_managers_and_superusers_read_and_change_secure_codes(role, request, coded_offer):
    api = request.getfixturevalue(role)
    url = f"/api/v1/advertisers/{coded_offer.advertiser_id}/"
    assert api.get(url).json()["secure"] == "demo-secret"
    assert api.get(f"/api/v1/offers/{coded_offer.pk}/").json()["secure"] == "offer-code"
    assert api.patch(url, {"secure": "new-code"}, format="json").json()["secure"] == "new-code"


def test_support_reads_postback_params_with_the_secure_code_masked(support_api, manager_api):
    postback = Postback.objects.create(
        method="POST",
        params={
            "clickid": "a" * 24,
            "secure": "demo-secret",
            "Secure": ["one", "two"],
            "_body": '{"goal": "1", "secure": "raw-secret"',
        },
    )
    url = f"/api/v1/postbacks/{postback.pk}/"

    params = support_api.get(url).json()["params"]
    assert params["clickid"] == "a" * 24
    assert params["secure"] == MASK
    assert params["Secure"] == [MASK, MASK]
    assert params["_body"] == f'{{"goal": "1", "secure": "{MASK}"'
    assert "secret" not in support_api.get("/api/v1/postbacks/").content.decode()

    assert manager_api.get(url).json()["params"]["secure"] == "demo-secret"
