"""Operator panel fixtures: users in the migration's groups, and a list of conversions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from conversions.models import Click, Conversion, Postback
from conversions.panel import dashboard
from offers.models import Goal
from partners.models import Partner

PASSWORD = "operator-pass-123"


def _user(username: str, group: str | None = None, superuser: bool = False) -> User:
    user = User.objects.create_user(
        username, password=PASSWORD, is_staff=True, is_superuser=superuser
    )
    if group:
        # The groups come from conversions/migrations/0004_permission_groups.
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def manager(db) -> User:
    return _user("manager", "Affiliate managers")


@pytest.fixture
def support(db) -> User:
    return _user("support", "Support")


@pytest.fixture
def manager_client(manager) -> Client:
    client = Client()
    client.force_login(manager)
    return client


@pytest.fixture
def support_client(support) -> Client:
    client = Client()
    client.force_login(support)
    return client


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher takes a good part of a second per user: tests only need logins.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_dashboard_stats():
    """The dashboard caches its 30-day figures; each test starts without them."""
    cache.delete(dashboard.stats_key(timezone.now()))
    yield
    cache.delete(dashboard.stats_key(timezone.now()))


@pytest.fixture
def other_partner(db) -> Partner:
    return Partner.objects.create(name="Partner Two")


@pytest.fixture
def make_conversion(offer, partner):
    def make(**fields) -> Conversion:
        fields.setdefault("offer", offer)
        fields.setdefault("partner", partner)
        if "click" not in fields:
            fields["click"] = Click.objects.create(offer=fields["offer"], partner=fields["partner"])
        fields.setdefault("status", Conversion.Status.APPROVED)
        fields.setdefault("revenue", Decimal(3))
        fields.setdefault("payout", Decimal(2))
        fields.setdefault("sum", Decimal(10))
        return Conversion.objects.create(**fields)

    return make


@pytest.fixture
def many_conversions(offer, partner, other_partner, make_offer):
    """200 conversions over two offers, two partners, two goals and all statuses."""
    second = make_offer(title="Second offer")
    Goal.objects.create(offer=second, value="sale", title="Sale")
    now = timezone.now()
    statuses = list(Conversion.Status)
    clicks = Click.objects.bulk_create(
        Click(offer=offer if i % 2 else second, partner=partner if i % 3 else other_partner)
        for i in range(200)
    )
    rows = []
    for i, click in enumerate(clicks):
        status = statuses[i % 4]
        rows.append(
            Conversion(
                offer_id=click.offer_id,
                partner_id=click.partner_id,
                click=click,
                goal="1" if click.offer_id == offer.pk else "sale",
                action_id=f"order-{i}",
                status=status,
                reason="Cap is reached" if status == Conversion.Status.DECLINED else "",
                hold_until=now + timedelta(days=1) if status == Conversion.Status.HOLD else None,
                revenue=Decimal(3),
                payout=Decimal(2),
                sum=Decimal(i),
                created_at=now - timedelta(hours=i),
            )
        )
    return Conversion.objects.bulk_create(rows)


@pytest.fixture
def make_postback(offer):
    def make(**fields) -> Postback:
        params = fields.pop("params", {})
        fields.setdefault("method", "GET")
        fields.setdefault("ip", "203.0.113.7")
        fields.setdefault("clickid", params.get("clickid", ""))
        fields.setdefault("action_id", params.get("action_id", ""))
        return Postback.objects.create(params=params, **fields)

    return make
