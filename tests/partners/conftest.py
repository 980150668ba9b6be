"""Fixtures for outgoing partner postbacks: a real local receiver and conversion builders."""

from decimal import Decimal

import pytest
from django.db import transaction

from conversions.delivery.deliveries import fire
from conversions.models import Conversion, PostbackDelivery
from partners.models import PartnerPostback


@pytest.fixture(autouse=True)
def allow_private(settings):
    """The receiver listens on localhost, which production refuses."""
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = True
    settings.PARTNER_POSTBACK_TIMEOUT = 2.0
    settings.PARTNER_POSTBACK_DISABLE_AFTER = 20
    settings.PARTNER_POSTBACK_RETRY_DELAYS = [60, 300, 900]


@pytest.fixture
def make_postback(partner, httpserver):
    """A partner postback pointing at the local receiver (``path`` + ``query``)."""

    def make(path: str = "/pb", query: str = "?click={clickid}&status={status}", **fields):
        fields.setdefault("partner", partner)
        fields.setdefault("url", httpserver.url_for(path) + query)
        return PartnerPostback.objects.create(**fields)

    return make


@pytest.fixture
def make_conversion(offer, partner, click, make_click):
    """A conversion, created and fired the way the callback does it."""

    def make(**fields) -> Conversion:
        fields.setdefault("offer", offer)
        fields.setdefault("partner", partner)
        if "click" not in fields:
            # One conversion per click and goal: the first on ``click``, others on their own.
            taken = Conversion.objects.filter(click=click).exists()
            fields["click"] = (
                make_click(offer=fields["offer"], partner=fields["partner"]) if taken else click
            )
        fields.setdefault("status", "approved")
        fields.setdefault("payout", Decimal("2"))
        fields.setdefault("revenue", Decimal("3"))
        with transaction.atomic():
            conversion = Conversion.objects.create(**fields)
            fire(conversion)
        return conversion

    return make


def deliveries(**filters) -> list[PostbackDelivery]:
    return list(PostbackDelivery.objects.filter(**filters).order_by("conversion_id", "attempt"))
