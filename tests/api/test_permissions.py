from django.contrib.auth.models import Group, Permission, User
from rest_framework.test import APIClient

from conversions.models import Postback
from offers.models import Offer


def test_anonymous_request_is_asked_to_authenticate(db):
    response = APIClient().get("/api/v1/offers/")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


def test_wrong_token_is_refused(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")
    assert client.get("/api/v1/offers/").status_code == 401


def test_non_staff_user_is_refused_with_a_reason(db):
    client = APIClient()
    client.force_login(User.objects.create_user("user", password=None))
    response = client.get("/api/v1/offers/")
    assert response.status_code == 403
    assert "Staff only" in response.json()["detail"]


def test_session_login_of_a_manager_works(db):
    user = User.objects.create_user("session-manager", password=None, is_staff=True)
    user.groups.add(Group.objects.get(name="Affiliate managers"))
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/v1/offers/").status_code == 200


def test_staff_without_permissions_is_told_which_permission_is_missing(bare_staff_api):
    response = bare_staff_api.get("/api/v1/conversions/")
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You may not read conversions: missing permission conversions.view_conversion."
    )


def test_support_reads_configuration_and_conversions(support_api, offer, click):
    for resource in ("advertisers", "offers", "goals", "payouts", "partners", "clicks"):
        response = support_api.get(f"/api/v1/{resource}/")
        assert response.status_code == 200, resource
        assert response.json()["count"] >= 1, resource


def test_support_cannot_create_an_offer(support_api, advertiser):
    response = support_api.post(
        "/api/v1/offers/",
        {"title": "New", "advertiser": advertiser.pk, "url": "https://x.example.com/"},
        format="json",
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You may not create offers: missing permission offers.add_offer."
    )
    assert not Offer.objects.filter(title="New").exists()


def test_support_cannot_pause_an_offer(support_api, offer):
    response = support_api.patch(f"/api/v1/offers/{offer.pk}/", {"status": "paused"}, format="json")
    assert response.status_code == 403
    assert "offers.change_offer" in response.json()["detail"]
    offer.refresh_from_db()
    assert offer.status == "active"


def test_support_cannot_delete_a_partner(support_api, partner):
    response = support_api.delete(f"/api/v1/partners/{partner.pk}/")
    assert response.status_code == 403
    assert "partners.delete_partner" in response.json()["detail"]


def test_support_cannot_change_a_conversion_status(support_api, make_conversion):
    conversion = make_conversion(status="pending")
    response = support_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"status": "approved"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "You may not change conversions: missing permission conversions.change_conversion."
    )
    conversion.refresh_from_db()
    assert conversion.status == "pending"


def test_support_can_requeue_a_rejected_postback(support_api):
    row = Postback.objects.create(method="GET", state="rejected", error="Click not found")
    response = support_api.post(f"/api/v1/postbacks/{row.pk}/requeue/")
    assert response.status_code == 202
    row.refresh_from_db()
    assert row.state == "received"


def test_support_can_resend_a_conversions_partner_postbacks(support_api, make_conversion):
    conversion = make_conversion()
    response = support_api.post(f"/api/v1/conversions/{conversion.pk}/requeue/")
    assert response.status_code == 202


def test_manager_without_requeue_permission_cannot_requeue(manager_api, db):
    Group.objects.get(name="Affiliate managers").permissions.remove(
        Permission.objects.get(codename="requeue_postback")
    )
    row = Postback.objects.create(method="GET", state="rejected", error="Click not found")
    response = manager_api.post(f"/api/v1/postbacks/{row.pk}/requeue/")
    assert response.status_code == 403
    assert "conversions.requeue_postback" in response.json()["detail"]


def test_manager_creates_configuration(manager_api, advertiser):
    response = manager_api.post(
        "/api/v1/offers/",
        {"title": "New", "advertiser": advertiser.pk, "url": "https://x.example.com/?c={clickid}"},
        format="json",
    )
    assert response.status_code == 201, response.json()


def test_superuser_passes_without_groups(admin_api, make_conversion):
    conversion = make_conversion(status="pending")
    response = admin_api.patch(
        f"/api/v1/conversions/{conversion.pk}/", {"status": "approved"}, format="json"
    )
    assert response.status_code == 200


def test_token_made_with_drf_create_token_authenticates(db, capsys):
    from django.core.management import call_command

    User.objects.create_superuser("ops", email=None, password=None)
    call_command("drf_create_token", "ops")
    key = capsys.readouterr().out.split()[2]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/conversions/").status_code == 200
