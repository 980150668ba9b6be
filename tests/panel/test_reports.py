"""The admin's Reports page: table, totals, sorting, presets, chart, CSV, and its place in the index."""

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User

from .test_stats import add_clicks, convert, world  # noqa: F401

RANGE = {"date_from": "2026-05-04", "date_to": "2026-05-05"}


@pytest.fixture
def traffic(world):  # noqa: F811
    _, offers, partners = world
    for offer, count in ((offers[0], 3), (offers[1], 5)):
        clicks = add_clicks(offer, partners[0], [datetime(2026, 5, 4, 10, tzinfo=UTC)] * count)
        convert(clicks[0], revenue="7", payout="4")
    return offers


def cells(html: str, row_id: str | None = None) -> list[list[str]]:
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [
        [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_reports_group_sort_and_total(admin_client, traffic):
    response = admin_client.get("/admin/reports/", {**RANGE, "g1": "offer", "g2": "day"})
    assert response.status_code == 200
    html = response.content.decode()
    assert cells(html) == [
        [
            str(traffic[0]),
            "2026-05-04",
            "3",
            "1",
            "1",
            "0",
            "0",
            "0",
            "7.0000",
            "4.0000",
            "3.0000",
            "33.33",
            "1.3333",
        ],
        [
            str(traffic[1]),
            "2026-05-04",
            "5",
            "1",
            "1",
            "0",
            "0",
            "0",
            "7.0000",
            "4.0000",
            "3.0000",
            "20.0",
            "0.8000",
        ],
    ]
    totals = re.search(r'id="report-totals">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="num">([^<]*)</td>', totals)[:3] == ["8", "2", "2"]
    # Sorted by clicks, most first, from the column's link.
    assert "sort=clicks" in html
    by_clicks = admin_client.get(
        "/admin/reports/", {**RANGE, "g1": "offer", "sort": "clicks", "dir": "desc"}
    )
    assert [row[0] for row in cells(by_clicks.content.decode())] == [
        str(traffic[1]),
        str(traffic[0]),
    ]
    # The chart: one bar per hour of the two days' range that has conversions.
    assert "<svg" in html and "<polyline" in html
    assert html.count("<rect") == 1


def test_presets_and_csv(admin_client, traffic, time_machine):
    time_machine.move_to(datetime(2026, 5, 20, 12, tzinfo=UTC))
    html = admin_client.get("/admin/reports/").content.decode()
    for label, start, end in (
        ("Today", "2026-05-20", "2026-05-20"),
        ("Yesterday", "2026-05-19", "2026-05-19"),
        ("Last 7 days", "2026-05-14", "2026-05-20"),
        ("Last 30 days", "2026-04-21", "2026-05-20"),
        ("This month", "2026-05-01", "2026-05-20"),
        ("Last month", "2026-04-01", "2026-04-30"),
    ):
        assert re.search(rf"date_from={start}&amp;date_to={end}[^>]*>{label}<", html), label
    csv = admin_client.get(
        "/admin/reports/", {"date_from": "2026-05-01", "date_to": "2026-05-20", "export": "csv"}
    )
    assert csv["Content-Type"] == "text/csv"
    assert csv.content.decode().splitlines()[1].startswith("2026-05-04,8,2,2,")


def test_a_bad_parameter_is_shown_not_a_500(admin_client, db):
    response = admin_client.get("/admin/reports/", {"tz": "Nowhere/Else"})
    assert response.status_code == 200
    assert "Unknown time zone" in response.content.decode()


def test_reports_come_first_in_the_index_and_need_the_permission(admin_client, client, db):
    html = admin_client.get("/admin/").content.decode()
    assert html.index('href="/admin/reports/"') < html.index("/admin/conversions/")
    client.force_login(User.objects.create_user("clerk", is_staff=True))
    assert client.get("/admin/reports/").status_code == 403
    assert 'href="/admin/reports/"' not in client.get("/admin/").content.decode()
