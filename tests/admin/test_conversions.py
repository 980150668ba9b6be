"""The conversions list: columns, filters, search, status actions, export and import."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from conversions.models import Click, Conversion, PostbackDelivery
from offers.models import Cap, CapCounter
from partners.models import PartnerPostback

pytestmark = pytest.mark.django_db

URL = "/admin/conversions/conversion/"


def rows(response) -> int:
    return response.content.decode().count('name="_selected_action"')


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_list_shows_the_columns_a_manager_scans(manager_client, make_conversion):
    conversion = make_conversion(
        action_id="order-77", status="declined", reason="Cap is reached", sum=Decimal("10.5")
    )
    page = manager_client.get(URL).content.decode()
    headers = [
        "column-created_at",
        "column-offer_name",
        "column-partner_name",
        "column-goal",
        "column-status_badge",
        "column-reason",
        "column-revenue_amount",
        "column-payout_amount",
    ]
    assert [h for h in headers if h in page] == headers
    for text in (
        "Cap is reached",
        'class="status-badge status-declined"',
        "Main offer",
        "Partner One",
        "3.00",
        "2.00",
    ):
        assert text in page
    # Secondary columns live on the conversion's page.
    assert conversion.click not in page
    assert "order-77" not in page
    assert "10.50" not in page
    detail = manager_client.get(f"{URL}{conversion.pk}/change/").content.decode()
    for text in (conversion.click, "order-77", "10.5"):
        assert text in detail


def test_conversion_page_links_its_click_postbacks_and_deliveries(
    manager_client, make_conversion, partner
):
    conversion = make_conversion()
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example/?c={clickid}")
    PostbackDelivery.objects.create(conversion=conversion, partner_postback=pp, url="https://t.e/")
    page = manager_client.get(f"{URL}{conversion.pk}/change/").content.decode()
    assert f"/admin/conversions/click/{conversion.click}/change/" in page
    assert f"/admin/conversions/postback/?conversion__id__exact={conversion.pk}" in page
    assert f"/admin/conversions/postbackdelivery/?conversion__id__exact={conversion.pk}" in page
    assert "1 delivery(ies)" in page
    # Read-only: no Save buttons.
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page
    deliveries = manager_client.get(
        f"/admin/conversions/postbackdelivery/?conversion__id__exact={conversion.pk}"
    )
    assert deliveries.status_code == 200
    assert rows(deliveries) == 1


def test_list_of_200_rows_takes_a_bounded_number_of_queries(
    manager_client, many_conversions, django_assert_max_num_queries
):
    with django_assert_max_num_queries(15):
        response = manager_client.get(URL)
    assert rows(response) == 100
    with django_assert_max_num_queries(15):
        response = manager_client.get(URL + "?all=")
    assert rows(response) == 200


def test_list_never_counts_the_whole_table(manager_client, many_conversions, settings):
    settings.ADMIN_COUNT_LIMIT = 150
    page = manager_client.get(URL).content.decode()
    assert "150+ conversions" in page
    assert "Show counts" not in page
    assert rows(manager_client.get(URL + "?status__exact=approved")) == 50


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status__exact=pending", 50),
        ("status__exact=declined&reason=Cap+is+reached", 50),
        ("reason=-", 150),
        ("goal=sale", 100),
    ],
)
def test_filters_narrow_the_list(manager_client, many_conversions, query, expected):
    response = manager_client.get(f"{URL}?{query}&all=")
    assert response.status_code == 200
    assert rows(response) == expected


def test_offer_and_partner_filters(manager_client, many_conversions, offer, partner):
    assert rows(manager_client.get(f"{URL}?offer__id__exact={offer.pk}&all=")) == 100
    expected = sum(1 for c in many_conversions if c.partner_id == partner.pk)
    assert rows(manager_client.get(f"{URL}?partner__id__exact={partner.pk}&all=")) == expected


def test_date_hierarchy_drills_down_to_a_day(manager_client, make_conversion):
    today = timezone.now()
    recent = make_conversion(action_id="today")
    make_conversion(action_id="long-ago", created_at=today - timedelta(days=400))
    page = manager_client.get(URL).content.decode()
    assert f"created_at__year={today.year}" in page
    day = manager_client.get(
        f"{URL}?created_at__year={today.year}&created_at__month={today.month}"
        f"&created_at__day={today.day}"
    )
    assert rows(day) == 1
    assert f"/{recent.pk}/change/" in day.content.decode()
    month = manager_client.get(
        f"{URL}?created_at__year={today.year}&created_at__month={today.month}"
    ).content.decode()
    # The calendar drill-down links the days of the month that hold conversions.
    assert f"created_at__day={today.day}" in month


@pytest.mark.parametrize("by", ["clickid", "action_id", "id"])
def test_search_finds_one_conversion_by_exact_key(manager_client, many_conversions, by):
    target = many_conversions[57]
    term = {"clickid": target.click, "action_id": target.action_id, "id": target.pk}[by]
    response = manager_client.get(URL, {"q": term})
    assert rows(response) == 1
    assert f"/admin/conversions/conversion/{target.pk}/change/" in response.content.decode()


def run_action(client, action: str, *conversions, follow: bool = True):
    return client.post(
        URL,
        {"action": action, "_selected_action": [c.pk for c in conversions]},
        follow=follow,
    )


@pytest.fixture
def partner_postback(partner):
    return PartnerPostback.objects.create(
        partner=partner, url="https://tracker.example.net/pb?c={clickid}&s={status}"
    )


def test_approve_changes_status_and_fires_partner_postbacks(
    manager_client, make_conversion, partner_postback
):
    pending = make_conversion(status="pending")
    response = run_action(manager_client, "approve", pending)
    pending.refresh_from_db()
    assert pending.status == "approved"
    assert "1 conversion set approved; partner postbacks were fired." in messages_of(response)
    delivery = PostbackDelivery.objects.get(conversion=pending)
    assert delivery.url.endswith(f"c={pending.click}&s=1")


def test_decline_records_the_managers_reason_and_frees_the_cap(
    manager_client, make_conversion, offer
):
    cap = Cap.objects.create(offer=offer, limit=10)
    approved = make_conversion()
    CapCounter.objects.filter(cap=cap, period_key=timezone.now().date().isoformat()).update(used=1)
    run_action(manager_client, "decline", approved)
    approved.refresh_from_db()
    assert (approved.status, approved.reason) == ("declined", "Rejected by a manager")
    assert CapCounter.objects.get(cap=cap).used == 0


def test_set_pending_leaves_those_already_pending_as_they_are(manager_client, make_conversion):
    approved, pending = make_conversion(), make_conversion(status="pending")
    response = run_action(manager_client, "set_pending", approved, pending)
    approved.refresh_from_db()
    assert approved.status == "pending"
    assert (
        "1 conversion set pending; partner postbacks were fired. "
        "1 already pending, left as they were." in messages_of(response)
    )


def test_conversions_are_never_added_or_deleted_by_hand(manager_client, make_conversion):
    conversion = make_conversion()
    page = manager_client.get(URL).content.decode()
    assert 'value="delete_selected"' not in page
    assert manager_client.get(f"{URL}add/").status_code == 403
    assert manager_client.post(f"{URL}{conversion.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Conversion.objects.filter(pk=conversion.pk).exists()


def test_support_sees_conversions_but_cannot_change_their_status(support_client, make_conversion):
    pending = make_conversion(status="pending")
    page = support_client.get(URL).content.decode()
    assert f"/{pending.pk}/change/" in page
    assert 'value="approve"' not in page
    run_action(support_client, "approve", pending)
    pending.refresh_from_db()
    assert pending.status == "pending"
    change = support_client.post(f"{URL}{pending.pk}/change/", {"status": "approved"})
    assert change.status_code == 403


def test_export_writes_the_filtered_list_as_csv(manager_client, many_conversions):
    response = manager_client.get(f"{URL}export/?status__exact=hold")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(table) == 50
    assert {row["status"] for row in table} == {"hold"}
    assert set(table[0]) >= {"offer", "partner", "goal", "clickid", "action_id", "sum", "payout"}


@pytest.mark.parametrize(
    "action_id",
    ["=cmd|' /C calc'!A0", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd", "\tcmd", "\rcmd"],
)
def test_export_escapes_cells_a_spreadsheet_would_run_as_formulae(
    manager_client, make_conversion, action_id
):
    make_conversion(action_id=action_id, reason='=HYPERLINK("http://x")')
    response = manager_client.get(f"{URL}export/")
    (row,) = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
    # OWASP: a leading single quote makes the cell text.
    assert row["action_id"] == "'" + action_id
    assert row["reason"] == '\'=HYPERLINK("http://x")'
    assert row["sum"] == "10.0000"


def import_csv(client, text: str):
    upload = SimpleUploadedFile("conversions.csv", text.encode(), content_type="text/csv")
    preview = client.post(f"{URL}import/", {"import_file": upload, "format": "0", "resource": "0"})
    assert preview.status_code == 200
    form = preview.context.get("confirm_form")
    if form is None:
        return preview, None
    confirmed = client.post(f"{URL}process_import/", form.initial, follow=True)
    return preview, confirmed


def test_import_creates_conversions_priced_by_the_offer(
    manager_client, offer, partner, click, partner_postback
):
    text = (
        "offer,partner,goal,action_id,clickid,sum,status\n"
        f"{offer.pk},{partner.pk},1,imp-1,{click.clickid},50,approved\n"
        f"{offer.pk},{partner.pk},1,imp-2,,0,3\n"
    )
    _, confirmed = import_csv(manager_client, text)
    assert confirmed.status_code == 200
    first, second = Conversion.objects.order_by("action_id")
    assert (first.action_id, first.status, first.click, first.sum) == (
        "imp-1",
        "approved",
        click.clickid,
        Decimal(50),
    )
    assert (first.revenue, first.payout) == (Decimal(3), Decimal(2))
    assert (second.status, second.reason) == ("declined", "Rejected by a manager")
    assert PostbackDelivery.objects.filter(conversion=first).exists()


def test_import_skips_existing_conversions_and_reports_bad_rows(
    manager_client, make_conversion, offer, partner
):
    existing = make_conversion(action_id="dup-1", status="pending")
    text = (
        "offer,partner,goal,action_id,clickid,sum,status\n"
        f"{offer.pk},{partner.pk},1,dup-1,,5,approved\n"
        f"{offer.pk},{partner.pk},1,bad-1,,5,hold\n"
    )
    preview, confirmed = import_csv(manager_client, text)
    assert confirmed is None
    assert "Status must be approved, pending or declined" in preview.content.decode()
    existing.refresh_from_db()
    assert existing.status == "pending"
    assert Conversion.objects.count() == 1


def test_import_validates_each_row_as_a_postback_and_imports_the_good_ones(
    manager_client, offer, partner, click
):
    text = (
        "offer,partner,goal,action_id,clickid,sum,status\n"
        f"{offer.pk},{partner.pk},1,good-1,,50,approved\n"
        f"{offer.pk},{partner.pk},1,neg-1,,-500,approved\n"
        f"{offer.pk},{partner.pk},1,nan-1,,NaN,1\n"
        f"{offer.pk},{partner.pk},1,bad-status,,5,9\n"
        f"{offer.pk},{partner.pk},1,bad-click,xyz,5,1\n"
        f"{offer.pk},{partner.pk},1,no-click,{'f' * 24},5,1\n"
        f"{offer.pk},{partner.pk},1,{'a' * 256},,5,1\n"
        f"{offer.pk},{partner.pk},1,good-2,{click.clickid},0,2\n"
    )
    preview, confirmed = import_csv(manager_client, text)

    report = preview.content.decode()
    assert "Invalid parameter sum" in report
    assert "Invalid parameter status" in report
    assert "Click_id: invalid format" in report
    assert "Click not found" in report
    assert "at most 255 characters" in report
    assert "6 rows refused" in report

    assert confirmed is not None, "the good rows can be imported"
    assert sorted(Conversion.objects.values_list("action_id", "status", "sum")) == [
        ("good-1", "approved", Decimal(50)),
        ("good-2", "pending", Decimal(0)),
    ]
    refused = messages_of(confirmed)
    assert any("Row 2: sum: Invalid parameter sum" in m for m in refused), refused
    assert any("6 rows were refused" in m for m in refused), refused


def test_import_is_for_managers_only(support_client, manager_client):
    assert support_client.get(f"{URL}import/").status_code == 403
    assert 'class="import_link"' not in support_client.get(URL).content.decode()
    assert 'class="import_link"' in manager_client.get(URL).content.decode()


def test_change_page_shows_its_postbacks_and_deliveries(
    manager_client, make_conversion, partner_postback
):
    conversion = make_conversion(status="pending")
    run_action(manager_client, "approve", conversion)
    page = manager_client.get(f"{URL}{conversion.pk}/change/").content.decode()
    assert "tracker.example.net" in page
    assert conversion.click in page
    assert Click.objects.count() == 1


def test_import_refuses_a_sum_a_postback_could_not_carry(manager_client, offer, partner):
    text = (
        "offer,partner,goal,action_id,clickid,sum,status\n"
        f"{offer.pk},{partner.pk},1,neg-1,,-5,approved\n"
    )
    preview, confirmed = import_csv(manager_client, text)
    assert confirmed is None
    assert "Invalid parameter sum" in preview.content.decode()
    assert not Conversion.objects.exists()
