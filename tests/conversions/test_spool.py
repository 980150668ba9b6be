"""A database that refuses a postback: nothing answered status 1 is lost, nothing waits behind it."""

import json
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conversions.intake import spool
from conversions.models import Postback, new_postback_id
from conversions.processing import settlement

from ..conftest import database_url, process_env, wait_for
from .test_reliability import database_down

pytestmark = pytest.mark.django_db
# A refusal at accept, or a lost connection, would end the test's own transaction.
outside_a_transaction = pytest.mark.django_db(transaction=True)


@contextmanager
def database_refuses(column: str = "", value: str = ""):
    """The database itself refuses postback rows whose ``column`` is ``value`` (all, if none).

    A real refusal, not a lost connection: what a schema out of step with the
    code gives. A constraint on PostgreSQL, a trigger on SQLite.
    """
    table = Postback._meta.db_table
    literal = "'" + value.replace("'", "''") + "'"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Inside the test's transaction, foreign keys checked at commit would block the DDL.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            check = f"{column} <> {literal}" if column else "false"
            cursor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT test_refusal CHECK ({check}) NOT VALID"
            )
        else:
            when = f"WHEN NEW.{column} = {literal}" if column else ""
            cursor.execute(
                f"CREATE TRIGGER test_refusal BEFORE INSERT ON {table} {when}"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT test_refusal")
            else:
                cursor.execute("DROP TRIGGER test_refusal")


def spooled(**params) -> str:
    """A postback appended to the spool as the accept path does while the database is down."""
    clickid = params.get("clickid", "")
    row = Postback(
        id=new_postback_id(),
        received_at=timezone.now(),
        ip="203.0.113.7",
        method="GET",
        params=params,
        clickid=clickid,
        action_id=params.get("action_id", ""),
    )
    spool.append(row)
    return row.id


def test_a_clickid_longer_than_its_column_is_answered_from_the_table_not_the_spool(client):
    response = client.get("/postback", {"clickid": "f" * 100})
    assert response.status_code == 200
    assert Postback.objects.filter(pk=response.json()["id"]).exists()
    assert spool.pending() == 0


def test_an_entry_spooled_longer_than_its_column_is_imported_and_does_not_block_the_rest(click):
    # What the accept path spooled before values were fitted to their columns.
    long_id = spooled(clickid="a" * 100)
    behind = spooled(clickid=click.clickid)
    assert spool.import_spool() == 2
    width = Postback._meta.get_field("clickid").max_length
    assert Postback.objects.get(pk=long_id).clickid == "a" * width
    assert Postback.objects.get(pk=long_id).params == {"clickid": "a" * 100}
    assert Postback.objects.filter(pk=behind).exists()
    assert (spool.pending(), spool.set_aside()) == (0, 0)


def test_an_entry_the_database_refuses_is_set_aside_and_the_rest_imported(click, settings):
    ids = [spooled(clickid=click.clickid, action_id=f"A-{i}") for i in range(5)]
    with database_refuses("action_id", "A-2"):
        assert spool.import_spool() == 4
        assert (spool.pending(), spool.set_aside()) == (0, 1)
        # Later entries are not held up by it either.
        later = spooled(clickid=click.clickid, action_id="A-5")
        assert spool.import_spool() == 1
    stored = set(Postback.objects.values_list("id", flat=True))
    assert stored == {*ids[:2], *ids[3:], later}
    (line,) = (settings.POSTBACK_SPOOL_DIR / spool.SET_ASIDE_NAME).read_text().splitlines()
    entry = json.loads(line)
    assert entry["entry"]["id"] == ids[2]
    assert entry["entry"]["params"] == {"clickid": click.clickid, "action_id": "A-2"}
    assert "test_refusal" in entry["reason"] or "refused by the test" in entry["reason"]


def test_set_aside_entries_are_imported_again_once_the_cause_is_fixed(click, client):
    refused = spooled(clickid=click.clickid, action_id="R-1")
    with database_refuses("action_id", "R-1"):
        spool.import_spool()
        call_command("import_spool", "--retry-set-aside")  # still refused: stays aside
    assert spool.set_aside() == 1
    assert client.get("/healthz").status_code == 503
    call_command("import_spool", "--retry-set-aside")
    assert spool.set_aside() == 0
    assert Postback.objects.get(pk=refused).action_id == "R-1"
    assert client.get("/healthz").status_code == 200


def test_healthz_is_503_while_entries_are_set_aside(client, click):
    spooled(clickid=click.clickid, action_id="H-1")
    with database_refuses("action_id", "H-1"):
        spool.import_spool()
    spooled(clickid=click.clickid, action_id="H-2")  # waiting for the next sweep
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert (body["database"], body["broker"]) == ("ok", "ok")
    assert (body["spooled"], body["set_aside"]) == (1, 1)
    assert body["spool"].startswith("error")


def test_healthz_shows_the_spool_depth_and_stays_ok_while_it_only_waits(client, click):
    spooled(clickid=click.clickid)
    spooled(clickid=click.clickid)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "broker": "ok",
        "spool": "ok",
        "spooled": 2,
        "set_aside": 0,
    }


@outside_a_transaction
def test_a_lost_connection_during_the_import_keeps_the_spool(click):
    pid = spooled(clickid=click.clickid)
    with database_down():
        assert spool.import_spool() == 0
    assert (spool.pending(), spool.set_aside()) == (1, 0)
    assert spool.import_spool() == 1
    assert Postback.objects.filter(pk=pid).exists()


@outside_a_transaction
def test_a_refusal_that_is_not_a_lost_connection_stores_the_postback_without_copied_columns(
    client, click
):
    with database_refuses("clickid", "refused"):
        response = client.get("/postback", {"clickid": "refused", "action_id": "X-1"})
    assert response.status_code == 200
    assert response.json()["status"] == 1
    assert spool.pending() == 0
    row = Postback.objects.get(pk=response.json()["id"])
    assert (row.clickid, row.action_id) == ("", "")
    assert row.params == {"clickid": "refused", "action_id": "X-1"}
    settlement.process_inline(row.pk)
    row.refresh_from_db()
    assert (row.state, row.error) == ("rejected", "Click_id: invalid format")


@outside_a_transaction
def test_a_refused_address_is_dropped_and_the_postback_kept(client):
    with database_refuses("ip", "192.0.2.44"):
        response = client.get("/postback", {"clickid": "c" * 24}, REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 200
    row = Postback.objects.get(pk=response.json()["id"])
    assert (row.ip, row.params) == (None, {"clickid": "c" * 24})


@outside_a_transaction
def test_a_postback_the_database_refuses_whole_is_not_answered_status_1(client):
    with database_refuses():
        response = client.get("/postback", {"clickid": "c" * 24})
    assert response.status_code == 503
    assert response.json() == {"status": 2, "message": "Postback could not be recorded"}
    assert not Postback.objects.exists()
    assert spool.pending() == 0


@outside_a_transaction
def test_import_spool_every_n_seconds_imports_what_is_spooled_later(tmp_path, settings):
    """The spool importer of a web host with no worker: a loop that keeps importing."""
    directory = tmp_path / "host-spool"
    settings.POSTBACK_SPOOL_DIR = directory
    env = process_env(tmp_path, DATABASE_URL=database_url(), POSTBACK_SPOOL_DIR=str(directory))
    loop = subprocess.Popen(
        [sys.executable, "manage.py", "import_spool", "--every", "0.2"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Once the loop has made its first round, spool two postbacks: a later round takes them.
        assert "0 imported" in loop.stdout.readline()
        ids = [spooled(clickid="a" * 24), spooled(clickid="b" * 24)]
        wait_for(lambda: Postback.objects.filter(pk__in=ids).count() == 2, 30, "the loop to import")
        assert spool.pending() == 0
        assert loop.poll() is None
    finally:
        loop.send_signal(signal.SIGTERM)
        loop.wait(timeout=10)


def test_import_spool_every_refuses_a_period_that_is_no_wait():
    with pytest.raises(SystemExit):
        call_command("import_spool", "--every", "0")
