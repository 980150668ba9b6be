"""What `make run` shows a new user: the admin login at the end of set-up, deliveries that succeed."""

import io
import subprocess
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import transaction

from affise_proj import demo
from conversions.delivery.deliveries import fire
from conversions.delivery.tasks import deliver
from conversions.models import Click, Conversion, PostbackDelivery
from offers.models import Offer
from partners.models import Partner

from .conftest import wait_for


def test_make_run_prints_the_admin_login_just_before_the_processes_start():
    recipe = subprocess.run(
        ["make", "-n", "run", "PORT=8123"],
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    start = next(i for i, line in enumerate(recipe) if "honcho start" in line)
    assert "seed_demo" in "\n".join(recipe[:start])
    assert "login_banner" in recipe[start - 1]
    assert 'login_banner("http://127.0.0.1:8123")' in recipe[start - 1]


def test_login_banner_gives_the_login_and_where_it_is_kept(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    (tmp_path / "admin_password").write_text("s3cret-pass\n")

    banner = demo.login_banner("http://127.0.0.1:8000")

    assert "http://127.0.0.1:8000/admin/" in banner
    assert "admin / s3cret-pass" in banner
    assert str(tmp_path / "admin_password") in banner


def test_demo_receiver_answers_only_in_the_demo(client, settings):
    settings.DEMO = False
    assert client.get("/demo/partner-postback", {"click": "abc"}).status_code == 404

    settings.DEMO = True
    response = client.get("/demo/partner-postback", {"click": "abc", "status": "1"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "received": {"click": "abc", "status": "1"}}


@pytest.mark.django_db(transaction=True)
def test_demo_partner_postbacks_are_delivered_to_the_app_itself(live_server, settings):
    # As make run sets it: the demo on, the app's own address let past the guard.
    base_url = live_server.url.replace("localhost", "127.0.0.1")
    settings.DEMO = True
    settings.PARTNER_POSTBACK_ALLOW_PRIVATE = False
    settings.PARTNER_POSTBACK_ALLOWED_TARGETS = [base_url.removeprefix("http://")]
    call_command("seed_demo", base_url=base_url, stdout=io.StringIO())
    offer = Offer.objects.get(title="Demo App Install (public)")
    alice = Partner.objects.get(name="Alice Media")
    click = Click.objects.create(offer=offer, partner=alice)
    with transaction.atomic():
        conversion = Conversion.objects.create(
            offer=offer, partner=alice, click=click, status="approved", payout=Decimal("1.5")
        )
        fire(conversion)
    (row,) = PostbackDelivery.objects.filter(conversion=conversion)

    # The commit published the delivery task: the suite's Celery worker may
    # take it first ("skipped" here); either way it ends delivered, once.
    if deliver(row.pk) == "skipped":
        wait_for(
            lambda: PostbackDelivery.objects.filter(pk=row.pk).exclude(state="pending").exists(),
            what="the worker's delivery",
        )
    row.refresh_from_db()
    assert row.state == "delivered"
    assert PostbackDelivery.objects.filter(conversion=conversion).count() == 1
    assert row.url.startswith(f"{base_url}/demo/partner-postback?")
    assert (row.status_code, row.error) == (200, "")
    assert f'"click": "{click.clickid}"' in row.response
