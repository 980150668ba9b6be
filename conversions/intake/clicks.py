"""Recording a click: find the offer and the partner, store the click if it may run.

Clicks are the hottest path of a network. With the click buffer on (the
default with PostgreSQL and Redis) the request asks the database nothing in
the common case: the offer's answer for the partner is reused for
CLICK_TARGET_TTL seconds, and the click goes to Redis (conversions/
click_buffer.py). Without it, on PostgreSQL the lookup and the insert are one
statement (one round trip, one implicit commit); elsewhere two, through the
ORM. Either way the rule of whether an offer runs for a partner is the same:
active offer, active partner, public or granted access.
"""

import functools
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from psycopg.types.numeric import Int8

from conversions.models import SUB_FIELDS, Click, new_clickid
from offers.models import Offer
from partners.models import OfferAccess, Partner

from . import click_buffer, statements

_COLUMNS = ("clickid", "offer_id", "partner_id", *SUB_FIELDS)
_COLUMNS += ("ip", "user_agent", "referrer", "country", "created_at")


@dataclass(frozen=True)
class Target:
    url: str
    trafficback_url: str
    may_run: bool


@functools.cache
def _target_sql() -> str:
    # Table names come from the models, never from input.
    return (
        "SELECT o.status = %(active)s"
        " AND p.id IS NOT NULL AND p.status = %(partner_active)s"
        " AND (o.privacy = %(public)s OR EXISTS ("
        f"  SELECT 1 FROM {OfferAccess._meta.db_table} a"
        "   WHERE a.offer_id = o.id AND a.partner_id = %(pid)s)) AS may_run,"
        # Text, not varchar(n): a later change of the columns' length must not
        # change the result type of the prepared statement.
        " CAST(o.url AS text), CAST(o.trafficback_url AS text)"
        f" FROM {Offer._meta.db_table} o"
        f" LEFT JOIN {Partner._meta.db_table} p ON p.id = %(pid)s"
        " WHERE o.id = %(offer_id)s"
    )


@functools.cache
def _record_sql() -> str:
    values = statements.placeholders(_COLUMNS)
    # The click is inserted when the offer may run. ON CONFLICT: the clickid is
    # new and random, so a conflict can only be this statement's own retry
    # after its commit had landed (statements.fetch_one); the click is stored.
    # The data-modifying CTE runs whether or not the outer query reads it.
    return (
        f"WITH target AS ({_target_sql()}),"
        f" recorded AS (INSERT INTO {Click._meta.db_table} ({', '.join(_COLUMNS)})"
        f"  SELECT {values} FROM target WHERE target.may_run"
        "  ON CONFLICT (clickid) DO NOTHING RETURNING 1)"
        " SELECT target.may_run, target.url, target.trafficback_url,"
        " set_config('synchronous_commit',"
        "  COALESCE(%(synchronous_commit)s, current_setting('synchronous_commit')), true)"
        " FROM target"
    )


_STATUS_PARAMS = {
    "active": Offer.Status.ACTIVE.value,
    "partner_active": Partner.Status.ACTIVE.value,
    "public": Offer.Privacy.PUBLIC.value,
}


# (offer_id, pid) -> (target or None for an unknown offer, when it was read).
_targets: dict[tuple[int, int], tuple[Target | None, float]] = {}
_TARGETS_MAX = 10_000


def forget_targets(**kwargs) -> None:
    """Drop this process's remembered targets (an offer, partner or access changed)."""
    _targets.clear()


def target(offer_id: int, pid: int) -> Target | None:
    """The offer's answer for the partner, remembered for CLICK_TARGET_TTL seconds."""
    now = time.time()
    known = _targets.get((offer_id, pid))
    # A clock set back makes the age negative: read again.
    if known is not None and 0 <= now - known[1] < settings.CLICK_TARGET_TTL:
        return known[0]
    params = {**_STATUS_PARAMS, "offer_id": offer_id, "pid": pid}
    if connection.vendor == "postgresql":
        params.update(offer_id=Int8(offer_id), pid=Int8(pid))
    try:
        row = statements.fetch_one(_target_sql(), params, prepare=connection.vendor == "postgresql")
    except DatabaseError:
        if known is None or not 0 <= now - known[1] < settings.CLICK_TARGET_STALE_MAX:
            raise
        # The database is away: keep answering with what was last read, for a
        # while (the buffered click waits in Redis until the database is back).
        return known[0]
    found = Target(row[1], row[2], bool(row[0])) if row else None
    if len(_targets) >= _TARGETS_MAX:
        _targets.clear()
    _targets[(offer_id, pid)] = (found, now)
    return found


def record(offer_id: int, pid: int, **fields) -> tuple[Target | None, str | None]:
    """Store a click for ``offer_id`` and ``pid`` if the offer may run for that partner.

    ``fields`` are the click's subs, ip, user_agent, referrer and country.
    Returns the offer's target (None for an unknown offer) and the new
    clickid (None when no click was stored).
    """
    params = {**_STATUS_PARAMS, "offer_id": offer_id, "pid": pid}
    if connection.vendor != "postgresql":
        return _record_in_two_steps(params, fields)
    # The clickid names the click's day: the same instant as its created_at.
    now = timezone.now()
    clickid = new_clickid(now)
    if click_buffer.enabled():
        found = target(offer_id, pid)
        if found is None or not found.may_run:
            return found, None
        if click_buffer.add(clickid, offer_id, pid, now, fields):
            return found, clickid
        # Redis did not take it: insert it here, with the same clickid (should
        # the append have landed after all, the flush meets it and does nothing).
    return _record_in_one_statement(params, clickid, now, fields)


def _record_in_one_statement(
    params: dict, clickid: str, now, fields: dict
) -> tuple[Target | None, str | None]:
    offer_id, pid = params["offer_id"], params["pid"]
    row = statements.fetch_one(
        _record_sql(),
        {
            **params,
            "offer_id": Int8(offer_id),
            "pid": Int8(pid),
            "clickid": clickid,
            "partner_id": Int8(pid),
            "created_at": now,
            # For this click's own transaction only: inside a caller's
            # transaction the setting would last until that one ends.
            "synchronous_commit": None
            if settings.CLICK_SYNCHRONOUS_COMMIT or connection.in_atomic_block
            else "off",
            **fields,
        },
        prepare=True,
    )
    if row is None:
        return None, None
    may_run, url, trafficback_url, _ = row
    return Target(url, trafficback_url, bool(may_run)), clickid if may_run else None


def _record_in_two_steps(params: dict, fields: dict) -> tuple[Target | None, str | None]:
    row = statements.fetch_one(_target_sql(), params)
    if row is None:
        return None, None
    found = Target(row[1], row[2], bool(row[0]))
    if not found.may_run:
        return found, None
    click = Click.objects.create(offer_id=params["offer_id"], partner_id=params["pid"], **fields)
    return found, click.clickid
