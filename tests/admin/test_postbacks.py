"""Support's lists: inbound postbacks (re-queue), partner postback deliveries (resend), task results."""

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone
from django_celery_results.models import TaskResult

from conversions.models import Click, Conversion, Postback, PostbackDelivery, PostbackRequeue
from partners.models import PartnerPostback

from ..conftest import wait_settled

pytestmark = pytest.mark.django_db

URL = "/admin/conversions/postback/"
DELIVERIES = "/admin/conversions/postbackdelivery/"


def rows(response) -> int:
    return response.content.decode().count('name="_selected_action"')


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def inbound(make_postback, offer, make_offer):
    """A small inbound log: accepted, rejected (two errors), failed, received."""
    other = make_offer(title="Other offer")
    now = timezone.now()
    made = {
        "accepted": make_postback(
            params={"clickid": "a" * 24, "action_id": "ord-1", "goal": "sale"},
            state="accepted",
            offer=offer,
        ),
        "not_found": make_postback(
            params={"clickid": "b" * 24, "action_id": "ord-2"},
            state="rejected",
            error="Click not found",
        ),
        "denied": make_postback(
            params={"clickid": "c" * 24, "secure": "wrong"},
            state="rejected",
            error="Access denied",
            offer=other,
            attempts=1,
        ),
        "failed": make_postback(
            params={"clickid": "d" * 24},
            state="failed",
            error="Processing did not finish after 5 attempts",
            attempts=5,
            received_at=now - timedelta(days=40),
        ),
        "received": make_postback(params={"clickid": "e" * 24}),
    }
    return made


def test_postback_list_shows_what_support_looks_for(support_client, inbound):
    page = support_client.get(URL).content.decode()
    headers = [
        "column-postback_id",
        "column-received_at",
        "column-clickid_text",
        "column-offer_name",
        "column-state_badge",
        "column-error",
    ]
    assert [h for h in headers if h in page] == headers
    for text in ("a" * 24, "Click not found", "status-rejected", "Other offer"):
        assert text in page
    # The address, goal and attempts are on the postback's page.
    assert "203.0.113.7" not in page
    detail = support_client.get(f"{URL}{inbound['accepted'].pk}/change/").content.decode()
    for text in ("203.0.113.7", "&quot;goal&quot;: &quot;sale&quot;", "Main offer"):
        assert text in detail


def test_postback_list_of_200_rows_takes_a_bounded_number_of_queries(
    support_client, make_postback, make_conversion, offer, django_assert_max_num_queries
):
    conversion = make_conversion()
    Postback.objects.bulk_create(
        Postback(
            method="GET",
            params={"clickid": f"{i:024x}", "goal": "1"},
            clickid=f"{i:024x}",
            state="accepted",
            offer=offer,
            conversion=conversion,
        )
        for i in range(200)
    )
    with django_assert_max_num_queries(12):
        response = support_client.get(URL + "?all=")
    assert rows(response) == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state__exact=rejected", {"not_found", "denied"}),
        ("error=Access+denied", {"denied"}),
        ("error=-", {"accepted", "received"}),
        ("state__exact=failed", {"failed"}),
    ],
)
def test_postback_filters(support_client, inbound, query, expected):
    page = support_client.get(f"{URL}?{query}").content.decode()
    shown = {name for name, pb in inbound.items() if f"/{pb.pk}/change/" in page}
    assert shown == expected


def test_postback_offer_and_date_filters(support_client, inbound):
    offer_id = inbound["denied"].offer_id
    page = support_client.get(f"{URL}?offer__id__exact={offer_id}").content.decode()
    assert rows(support_client.get(f"{URL}?offer__id__exact={offer_id}")) == 1
    assert f"/{inbound['denied'].pk}/change/" in page
    old = inbound["failed"].received_at
    response = support_client.get(
        f"{URL}?received_at__year={old.year}&received_at__month={old.month}&received_at__day={old.day}"
    )
    assert rows(response) == 1


@pytest.mark.parametrize("term", ["b" * 24, "ord-2", "BBBBBBBBBBBBBBBBBBBBBBBB"])
def test_postback_search_by_clickid_and_action_id(support_client, inbound, term):
    response = support_client.get(URL, {"q": term})
    assert rows(response) == 1
    assert f"/{inbound['not_found'].pk}/change/" in response.content.decode()


def test_postback_page_shows_raw_params_read_only(support_client, manager_client, inbound):
    pb = inbound["denied"]
    # The secure code sent is for managers; support sees it masked (test_secure_codes.py).
    for client, secure in ((support_client, "********"), (manager_client, "wrong")):
        page = client.get(f"{URL}{pb.pk}/change/").content.decode()
        assert f"&quot;secure&quot;: &quot;{secure}&quot;" in page
        assert 'name="params"' not in page
        assert 'name="state"' not in page


def test_requeue_puts_rejected_and_failed_back_and_reports_the_count(support_client, inbound):
    picked = [inbound[name] for name in ("not_found", "failed", "accepted")]
    response = support_client.post(
        URL, {"action": "requeue", "_selected_action": [pb.pk for pb in picked]}, follow=True
    )
    states = dict(
        Postback.objects.filter(pk__in=[pb.pk for pb in picked]).values_list("pk", "state")
    )
    assert states == {
        inbound["not_found"].pk: "received",
        inbound["failed"].pk: "received",
        inbound["accepted"].pk: "accepted",
    }
    assert (
        "Re-queued 2 postbacks for processing. 1 left alone: only rejected or failed ones are re-queued."
        in messages_of(response)
    )


def test_postback_page_is_read_only_with_a_requeue_button_for_rejected(support_client, inbound):
    page = support_client.get(f"{URL}{inbound['not_found'].pk}/change/").content.decode()
    assert 'id="requeue-form"' in page
    assert 'name="_save"' not in page
    assert 'name="_continue"' not in page
    accepted = support_client.get(f"{URL}{inbound['accepted'].pk}/change/").content.decode()
    assert 'id="requeue-form"' not in accepted
    assert 'name="_save"' not in accepted


def test_requeue_from_the_postback_page_is_recorded_and_shown(support_client, support, inbound):
    pb = inbound["denied"]
    response = support_client.post(f"{URL}{pb.pk}/requeue/", follow=True)
    assert f"Re-queued postback {pb.pk} for processing." in messages_of(response)
    pb.refresh_from_db()
    assert (pb.state, pb.error) == ("received", "")
    (record,) = pb.requeues.all()
    assert (record.user, record.state, record.error, record.attempts) == (
        support,
        "rejected",
        "Access denied",
        1,
    )
    history = support_client.get(f"{URL}{pb.pk}/history/").content.decode()
    assert "Re-queued (was rejected: Access denied, after 1 attempt)." in history
    # Dispatched once more since: this round's attempt and the earlier one.
    Postback.objects.filter(pk=pb.pk).update(state="accepted", attempts=1)
    page = support_client.get(f"{URL}{pb.pk}/change/").content.decode()
    assert "1 this round, 2 in all" in page
    assert "by support (was rejected: Access denied, after 1 attempt(s))" in page
    # A second press finds nothing to re-queue and records nothing.
    again = support_client.post(f"{URL}{pb.pk}/requeue/", follow=True)
    assert "only rejected or failed postbacks are re-queued" in " ".join(messages_of(again))
    assert pb.requeues.count() == 1


def test_requeue_button_needs_the_requeue_permission(client, inbound, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer2", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_postback"))
    client.force_login(viewer)
    pb = inbound["not_found"]
    assert 'id="requeue-form"' not in client.get(f"{URL}{pb.pk}/change/").content.decode()
    assert client.post(f"{URL}{pb.pk}/requeue/").status_code == 403
    assert client.get(f"{URL}{pb.pk}/requeue/").status_code == 405
    assert Postback.objects.get(pk=pb.pk).state == "rejected"


def test_list_requeue_is_recorded_for_each_postback(support_client, support, inbound):
    picked = [inbound["not_found"].pk, inbound["failed"].pk, inbound["accepted"].pk]
    support_client.post(URL, {"action": "requeue", "_selected_action": picked})
    recorded = PostbackRequeue.objects.order_by("postback_id")
    assert sorted((r.postback_id, r.state, r.attempts) for r in recorded) == sorted(
        [(inbound["not_found"].pk, "rejected", 0), (inbound["failed"].pk, "failed", 5)]
    )
    assert {r.user for r in recorded} == {support}


def test_postback_page_shows_the_timeline_with_durations(support_client, make_postback):
    at = timezone.now().replace(microsecond=0)
    pb = make_postback(
        params={"clickid": "f" * 24},
        state="accepted",
        received_at=at,
        dispatched_at=at + timedelta(milliseconds=40),
        processed_at=at + timedelta(milliseconds=1540),
    )
    page = support_client.get(f"{URL}{pb.pk}/change/").content.decode()
    assert "+40 ms" in page
    assert "+1.500 s" in page
    assert "1.540 s" in page


def test_requeue_needs_the_requeue_permission(client, inbound, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_postback"))
    client.force_login(viewer)
    assert 'value="requeue"' not in client.get(URL).content.decode()
    client.post(URL, {"action": "requeue", "_selected_action": [inbound["not_found"].pk]})
    assert Postback.objects.get(pk=inbound["not_found"].pk).state == "rejected"


def test_requeued_postback_is_accepted_once_the_cause_is_fixed(
    worker, client, offer, partner, send
):
    """Support's round trip: a postback for a wrong secure is rejected, fixed, re-queued, accepted."""
    from django.contrib.auth.models import User

    offer.secure = "s3cret"
    offer.save()
    click = Click.objects.create(offer=offer, partner=partner)
    pid = send(clickid=click.clickid, secure="old-code")
    assert wait_settled(pid).error == "Access denied"
    offer.secure = "old-code"
    offer.save()
    admin_user = User.objects.create_superuser("root", password="x")
    client.force_login(admin_user)
    response = client.post(URL, {"action": "requeue", "_selected_action": [pid]}, follow=True)
    assert "Re-queued 1 postback for processing." in messages_of(response)
    assert wait_settled(pid).state == "accepted"
    assert Conversion.objects.get().click == click.clickid


@pytest.fixture
def deliveries(make_conversion, partner):
    pp = PartnerPostback.objects.create(partner=partner, url="https://t.example/pb?c={clickid}")
    conversion = make_conversion()
    return [
        PostbackDelivery.objects.create(
            conversion=conversion,
            partner_postback=pp,
            url=f"https://t.example/pb?c={conversion.click}",
            status="approved",
            attempt=1,
            status_code=code,
            state=state,
            error=error,
            event=event,
        )
        for event, (code, state, error) in enumerate(
            [
                (200, "delivered", ""),
                (500, "failed", "HTTP 500"),
                (None, "failed", "ConnectTimeout"),
            ],
            start=1,
        )
    ]


def test_delivery_list_shows_url_code_attempts_and_error(support_client, deliveries):
    page = support_client.get(DELIVERIES).content.decode()
    for text in (
        "https://t.example/pb?c=",
        "HTTP 500",
        "ConnectTimeout",
        "status-failed",
        "Partner One",
    ):
        assert text in page
    assert rows(support_client.get(f"{DELIVERIES}?state__exact=failed")) == 2
    assert rows(support_client.get(f"{DELIVERIES}?code=5xx")) == 1
    assert rows(support_client.get(f"{DELIVERIES}?code=none")) == 1
    conversion_id = deliveries[0].conversion_id
    assert rows(support_client.get(DELIVERIES, {"q": conversion_id})) == 3


def test_delivery_list_of_200_rows_takes_a_bounded_number_of_queries(
    support_client, deliveries, django_assert_max_num_queries
):
    first = deliveries[0]
    PostbackDelivery.objects.bulk_create(
        PostbackDelivery(
            conversion_id=first.conversion_id,
            partner_postback_id=first.partner_postback_id,
            url=first.url,
            event=10 + i,
            state="delivered",
            status_code=200,
        )
        for i in range(197)
    )
    with django_assert_max_num_queries(12):
        response = support_client.get(DELIVERIES + "?all=")
    assert rows(response) == 200


def test_resend_queues_a_new_attempt(support_client, deliveries):
    failed = deliveries[1]
    response = support_client.post(
        DELIVERIES, {"action": "resend", "_selected_action": [failed.pk]}, follow=True
    )
    assert "Queued 1 new delivery attempt." in messages_of(response)
    again = PostbackDelivery.objects.get(event=failed.event, attempt=2)
    assert (again.url, again.state) == (failed.url, "pending")


def test_resend_needs_the_resend_permission(client, deliveries, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_postbackdelivery"))
    client.force_login(viewer)
    assert 'value="resend"' not in client.get(DELIVERIES).content.decode()
    client.post(DELIVERIES, {"action": "resend", "_selected_action": [deliveries[1].pk]})
    assert PostbackDelivery.objects.count() == 3


def test_click_list_of_200_rows_takes_a_bounded_number_of_queries(
    support_client, offer, partner, django_assert_max_num_queries
):
    clicks = Click.objects.bulk_create(Click(offer=offer, partner=partner) for _ in range(200))
    with django_assert_max_num_queries(12):
        response = support_client.get("/admin/conversions/click/?all=")

    def shown(response) -> int:
        return response.content.decode().count('<th class="field-clickid">')

    assert shown(response) == 200
    assert shown(support_client.get("/admin/conversions/click/", {"q": clicks[9].clickid})) == 1


def test_task_results_are_visible_to_support(support_client):
    TaskResult.objects.create(task_id="t-1", task_name="conversions.tasks.settle", status="SUCCESS")
    page = support_client.get("/admin/django_celery_results/taskresult/").content.decode()
    assert "conversions.tasks.settle" in page
