"""Test data for bench and fault runs, written through the product's models."""

import os
from decimal import Decimal

import django


def setup_django(env: dict[str, str]) -> None:
    """Point this process at the private stack (short-lived connections: servers restart)."""
    os.environ.update(env)
    os.environ["CONN_MAX_AGE"] = "0"
    os.environ["DJANGO_SETTINGS_MODULE"] = "affise_proj.settings"
    django.setup()


def make_offer(title: str, *, cap: int | None = None):
    from offers.models import Advertiser, Cap, Goal, Offer, Payout

    advertiser, _ = Advertiser.objects.get_or_create(name="Bench advertiser")
    offer = Offer.objects.create(
        title=title, advertiser=advertiser, url="https://land.example.com/?c={clickid}"
    )
    goal = Goal.objects.create(offer=offer, value="1", title="Install")
    Payout.objects.create(offer=offer, goal=goal, revenue=Decimal(3), payout=Decimal(2))
    if cap is not None:
        Cap.objects.create(offer=offer, period=Cap.Period.ALL, limit=Decimal(cap))
    return offer


def add_workflows(offer) -> None:
    """Two rules and an exchange rate on ``offer``: what BENCH_WORKFLOWS measures.

    Neither rule matches the bench's postbacks (each is still evaluated), and
    the postbacks are sent in EUR, converted to the offer's USD.
    """
    from django.utils import timezone

    from offers.models import ExchangeRate, PostbackRule

    PostbackRule.objects.create(
        offer=offer, field="sum", op="gt", value="1000", action="pending", reason="Big sale"
    )
    PostbackRule.objects.create(
        offer=offer, field="param:sub9", op="eq", value="bot", action="declined", reason="Bot"
    )
    ExchangeRate.objects.create(
        base="EUR", quote="USD", rate=Decimal("1.08"), date=timezone.now().date()
    )


def make_partner():
    from partners.models import Partner

    return Partner.objects.create(name="Bench partner")


def make_clicks(offer, partner, count: int) -> list[str]:
    from conversions.models import Click

    clicks = [Click(offer=offer, partner=partner, ip="198.51.100.1") for _ in range(count)]
    Click.objects.bulk_create(clicks, batch_size=1000)
    return [c.clickid for c in clicks]


def reset_postbacks() -> None:
    """Empty postbacks, conversions and caps' counters between cases (data stays).

    The postback table's day partitions are locked one by one: a postback the
    web server still stores from the last load (answered after wrk stopped)
    can take them in another order, and PostgreSQL ends one of the two with a
    deadlock. Then the TRUNCATE is run again (the insert went through).
    """
    from django.db import OperationalError, connection

    for attempt in range(5):
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "TRUNCATE conversions_postbackdelivery, conversions_conversion,"
                    " conversions_postback, offers_capcounter, django_celery_results_taskresult,"
                    " django_celery_results_chordcounter, django_celery_results_groupresult"
                    " CASCADE"
                )
            return
        except OperationalError as exc:
            if "deadlock" not in str(exc) or attempt == 4:
                raise
