"""Password logins are throttled (django-axes): a username from one address gets a few tries."""

from datetime import timedelta

import pytest
import time_machine
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
ATTACKER = "198.51.100.7"


def login(client: Client, password: str, username: str = "manager", ip: str = ATTACKER):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def lock_out(client: Client, attempts: int | None = None) -> None:
    for _ in range(attempts or settings.AXES_FAILURE_LIMIT):
        assert login(client, "wrong-password").status_code in (200, 429)


def test_thirty_wrong_passwords_then_the_right_one_does_not_log_in(manager, client):
    lock_out(client, attempts=30)

    response = login(client, PASSWORD)

    assert response.status_code == 429
    assert "too many login attempts" in response.content.decode()
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_the_lock_is_for_that_username_from_that_address_only(manager, client):
    lock_out(client)

    elsewhere = Client()
    assert login(elsewhere, PASSWORD, ip="203.0.113.50").status_code == 302
    assert elsewhere.get("/admin/").status_code == 200


def test_access_comes_back_after_the_cool_off(manager, client):
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        lock_out(client)
        assert login(client, PASSWORD).status_code == 429
        traveller.shift(settings.AXES_COOLOFF_TIME - timedelta(seconds=5))
        assert login(client, PASSWORD).status_code == 429
        traveller.shift(settings.AXES_COOLOFF_TIME + timedelta(seconds=5))
        assert login(client, PASSWORD).status_code == 302
    assert client.get("/admin/").status_code == 200


def test_a_superuser_sees_the_lockout_and_lifts_it(manager, support_client, client):
    lock_out(client)
    root = User.objects.create_superuser("root", password=PASSWORD)
    admin = Client()
    admin.force_login(root)

    listing = admin.get("/admin/axes/accessattempt/").content.decode()
    assert "manager" in listing
    assert ATTACKER in listing
    assert support_client.get("/admin/axes/accessattempt/").status_code == 403

    attempt = AccessAttempt.objects.get(username="manager")
    lifted = admin.post(f"/admin/axes/accessattempt/{attempt.pk}/delete/", {"post": "yes"})
    assert lifted.status_code == 302
    assert login(client, PASSWORD).status_code == 302
