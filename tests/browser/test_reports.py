"""The Reports page in a real browser at a manager's laptop size (1366x768).

A manager opens Reports, picks a date range and groups by day and offer; the
table, its totals and the chart are on the page. The screenshot goes to
docs/screenshots/reports.png with `make screenshots`.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from conversions.models import Click, Conversion
from offers.models import Offer
from partners.models import Partner

from .conftest import CHROMIUM, PASSWORD, SCREENSHOTS
from .test_operator_panel import month_of_conversions

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
    pytest.mark.django_db(transaction=True, reset_sequences=True),
]
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_manager_opens_reports_with_a_range_and_a_grouping(laptop, advertiser, time_machine):
    time_machine.move_to(NOW, tick=True)
    offers = [
        Offer.objects.create(advertiser=advertiser, title=t, url="https://land.example.com/")
        for t in ("Mobile game install", "Casino registration")
    ]
    partners = [Partner.objects.create(name=n) for n in ("Alice Media", "Bob Traffic")]
    month_of_conversions(offers, partners)
    # Clicks beside the conversions: a few per conversion, around its time.
    Click.objects.bulk_create(
        Click(offer=c.offer, partner=c.partner, created_at=c.created_at - timedelta(minutes=i))
        for c in Conversion.objects.all()
        for i in range(1, 9)
    )
    User.objects.create_superuser("manager", password=PASSWORD)
    days = (NOW.date() - timedelta(days=13), NOW.date())

    page = laptop
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", "manager")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    # Reports is reachable from the index and from the sidebar.
    page.click("#content-main a[href='/admin/reports/']")
    page.wait_for_selector("#report-table")
    assert page.locator("#nav-sidebar a[href='/admin/reports/']").count() >= 1

    page.fill("#date_from", days[0].isoformat())
    page.fill("#date_to", days[1].isoformat())
    page.select_option("#group_1", "day")
    page.select_option("#group_2", "offer")
    page.click("#show-report")
    page.wait_for_selector("#report-table tbody tr")
    assert page.input_value("#date_from") == days[0].isoformat()
    header = page.locator("#report-table thead th").all_inner_texts()
    assert [h.lower() for h in header[:4]] == ["day", "offer", "clicks", "conversions"]
    rows = page.locator("#report-table tbody tr")
    assert rows.count() > 10
    assert "Mobile game install" in rows.first.inner_text()
    assert page.locator("#report-chart svg rect").count() > 5
    totals = page.locator("#report-totals td").all_inner_texts()
    assert totals[0] == "Total" and int(totals[1]) > 0

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "reports.png"), full_page=True)
