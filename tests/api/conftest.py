"""API fixtures: clients authenticated as each operator role, and a conversion builder."""

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversions.models import Conversion
from partners.models import PartnerPostback


def _client_for(user: User) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _staff(username: str, group: str | None = None) -> User:
    # No password: tokens need none, and hashing one costs more than the test.
    user = User.objects.create_user(username, is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", email=None, password=None)


@pytest.fixture
def admin_api(superuser) -> APIClient:
    return _client_for(superuser)


@pytest.fixture
def manager_api(db) -> APIClient:
    return _client_for(_staff("manager", "Affiliate managers"))


@pytest.fixture
def support_api(db) -> APIClient:
    return _client_for(_staff("support", "Support"))


@pytest.fixture
def bare_staff_api(db) -> APIClient:
    """Staff, but in no group and with no permission."""
    return _client_for(_staff("intern"))


@pytest.fixture
def make_conversion(click) -> Callable[..., Conversion]:
    def make(**fields) -> Conversion:
        fields.setdefault("offer", click.offer)
        fields.setdefault("partner", click.partner)
        fields.setdefault("click", click)
        fields.setdefault("status", Conversion.Status.PENDING)
        fields.setdefault("revenue", Decimal(3))
        fields.setdefault("payout", Decimal(2))
        return Conversion.objects.create(**fields)

    return make


@pytest.fixture
def partner_postback(partner) -> PartnerPostback:
    return PartnerPostback.objects.create(
        partner=partner, url="https://tracker.example.com/pb?c={clickid}&s={status}"
    )
