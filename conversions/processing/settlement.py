"""The chord's callback: settle a batch of checked postbacks in one transaction."""

import contextvars
import json
import logging
import time
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from affise_proj import history, metrics
from conversions.delivery.deliveries import enabled_postbacks, fire
from conversions.intake.addresses import valid_ip
from conversions.models import SUB_FIELDS, Conversion, Postback
from conversions.outcomes import Decline, Rejection
from offers.models import Cap, lock_caps_of, period_key

from . import caps, check_trail
from .checks import (
    CHECKS,
    DECLINE_ORDER,
    REJECT_ORDER,
    conversions_by_key,
    keys_of,
    postback_keys,
)
from .statuses import hold_or_approved, set_status
from .verdicts import NOTHING, Amount, ClickSeen, GoalPayout, OfferTerms, Params, Verdict

log = logging.getLogger(__name__)

S = Conversion.Status
_batch_time: contextvars.ContextVar = contextvars.ContextVar("batch_time", default=None)


def load_batch(ids: list[str]) -> list[dict]:
    """The postbacks of a batch as plain dicts, in arrival order."""
    rows = Postback.objects.filter(pk__in=ids).values("id", "params", "ip", "received_at")
    batch = [{**row, "received_at": row["received_at"].isoformat()} for row in rows]
    return sorted(batch, key=lambda pb: (pb["received_at"], pb["id"]))


def settle(results: list[dict], ids: list[str]) -> dict[str, str]:
    """Apply DESIGN.md's order to each postback's verdicts; returns {id: state}.

    Steps, in one transaction for the whole batch (one commit, not one per
    postback):
    1. lock the batch's rows that are still ``processing`` (in id order);
       rows settled already are skipped, so running the callback twice, or
       two callbacks at once, settles each postback once;
    2. take the cap lock of the batch's offers (shared), read their caps and
       partner postbacks once, lock the existing conversions its postbacks
       speak of, and lock the cap counters it may move (made from a count
       where missing) in a fixed order, so concurrent batches queue on
       counters instead of deadlocking;
    3. settle each postback in arrival order; new conversions are inserted
       together in one statement (inside one savepoint for the batch), all
       with the batch's time as creation time, which is also their period
       for caps;
    4. if anything in 3 fails (a concurrent batch inserted one of the same
       conversions, an unexpected error), roll back to that savepoint and
       settle one by one, each postback in its own savepoint, so an error
       fails that postback alone;
    5. write every row's outcome in one statement.
    ``results`` are the checks' verdicts in CHECKS order (verdicts.py). What
    the batch changes is the postbacks' in the conversions' history.
    """
    by_check = dict(zip(CHECKS, results, strict=True))
    batch = load_batch(ids)
    token = _batch_time.set(timezone.now())
    try:
        with history.context(history.POSTBACK):
            return _settle_locked(batch, by_check, ids)
    finally:
        _batch_time.reset(token)


def _settle_locked(batch, by_check, ids) -> dict[str, str]:
    started = time.monotonic()
    with transaction.atomic():
        rows = _lock_rows(ids)
        try:
            with transaction.atomic():
                outcome = _settle_all(batch, by_check, rows, bulk=True)
        except (OperationalError, InterfaceError):
            raise  # the connection is gone: the task retries the whole batch
        except Exception:
            log.info("batch of %d settled one by one after an error", len(ids), exc_info=True)
            rows = _lock_rows(ids)
            outcome = _settle_all(batch, by_check, rows, bulk=False)
        _write_outcomes(rows.values())
        # Counted once committed: a batch rolled back and retried counts once.
        transaction.on_commit(partial(metrics.batch_settled, list(rows.values()), started))
    return outcome


def _write_outcomes(rows) -> None:
    """Rows sharing an outcome in one UPDATE each; conversion links and check trails in one more."""
    rows = list(rows)
    groups: dict[tuple, list[str]] = {}
    linked = []
    for row in rows:
        groups.setdefault((row.state, row.error, row.offer_id, row.processed_at), []).append(row.pk)
        if row.conversion is not None:
            linked.append(row)
    for (state, error, offer_id, processed_at), pks in groups.items():
        Postback.objects.filter(pk__in=pks).settle(state, error, offer_id, processed_at)
    if rows and connection.vendor == "postgresql":
        # bulk_update's CASE with one branch per row costs more to build than to run.
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Postback._meta.db_table} p"
                " SET conversion_id = coalesce(v.conversion_id, p.conversion_id),"
                " checks = v.checks::jsonb"
                " FROM unnest(%s::varchar[], %s::bigint[], %s::text[]) AS v(id, conversion_id, checks)"
                " WHERE p.id = v.id",
                [
                    [row.pk for row in rows],
                    [row.conversion.pk if row.conversion else None for row in rows],
                    [json.dumps(row.checks) for row in rows],
                ],
            )
    elif rows:
        Postback.objects.bulk_update(rows, ["checks"])
        if linked:
            Postback.objects.bulk_update(linked, ["conversion"])


def _lock_rows(ids: list[str]) -> dict[str, Postback]:
    return {
        row.pk: row
        for row in Postback.objects.select_for_update()
        .filter(pk__in=ids, state=Postback.State.PROCESSING)
        .order_by("pk")
    }


def _verdicts(by_check: dict, postback_id: str) -> dict[str, Verdict]:
    """One postback's verdict from each check (NOTHING where a check had nothing to say)."""
    return {name: (by_check[name] or {}).get(postback_id, NOTHING) for name in CHECKS}


def _settle_all(batch, by_check, rows, *, bulk: bool) -> dict[str, str]:
    context = _BatchContext(batch, by_check, rows, bulk=bulk)
    outcome = {}
    for pb in batch:
        row = rows.get(pb["id"])
        if row is None:
            outcome[pb["id"]] = "skipped"
            continue
        verdicts = _verdicts(by_check, pb["id"])
        if bulk:
            outcome[pb["id"]] = settle_one(row, pb, verdicts, context)
        else:
            outcome[pb["id"]] = _settle_in_savepoint(row, pb, verdicts, context)
    context.flush()
    for pb in batch:
        if (row := rows.get(pb["id"])) is not None:
            new = row.conversion is not None and row.conversion.created_at == context.now
            row.checks = check_trail.build(_verdicts(by_check, pb["id"]), row, pb, new=new)
    return outcome


def _settle_in_savepoint(row, pb, verdicts, context, *, tries: int = 2) -> str:
    """Settle one postback in its own savepoint; a failure there touches no other postback."""
    try:
        with transaction.atomic():
            return settle_one(row, pb, verdicts, context)
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: the task retries the whole batch
    except Exception as exc:
        # Whatever this savepoint did is undone: read its conversion afresh.
        for key in _keys(verdicts):
            context.known.pop(key, None)
        if isinstance(exc, IntegrityError) and tries > 1:
            # A concurrent batch created the conversion first: now an update of it.
            return _settle_in_savepoint(row, pb, verdicts, context, tries=tries - 1)
        log.exception("postback %s could not be settled", row.pk)
        return _finish(row, Postback.State.FAILED, f"{exc.__class__.__name__}: {exc}")


class _BatchContext:
    """What a batch reads once: caps by offer, partner postbacks by partner, and
    the conversions its postbacks speak of (locked), kept current as it goes."""

    def __init__(self, batch: list[dict], by_check: dict, rows: dict, *, bulk: bool) -> None:
        # bulk: new conversions wait in ``pending`` and are inserted together.
        self.bulk = bulk
        self.pending: list[Conversion] = []
        self.now = _batch_time.get() or timezone.now()
        clicks = {
            pb["id"]: data
            for pb in batch
            if pb["id"] in rows and (data := (by_check["click"] or {}).get(pb["id"], NOTHING).data)
        }
        self.caps: dict[int, list[Cap]] = {c.offer_id: [] for c in clicks.values()}
        # Held until commit: a cap is never recounted while this batch counts.
        lock_caps_of(list(self.caps), exclusive=False)
        offer_caps = Cap.objects.filter(offer_id__in=list(self.caps)).select_related("goal")
        for cap in offer_caps.order_by("pk"):
            self.caps[cap.offer_id].append(cap)
        self.partner_postbacks = enabled_postbacks({c.partner_id for c in clicks.values()})
        verdicts = {pb_id: _verdicts(by_check, pb_id) for pb_id in clicks}
        keys = {key for pb_verdicts in verdicts.values() for key in _keys(pb_verdicts)}
        # None = known not to exist (as of the duplicate check's read; one made
        # since is met on the unique constraints, and settled again one by one).
        self.known: dict[tuple, Conversion | None] = dict.fromkeys(keys)
        self.known.update(_lock_existing(verdicts.values(), keys))
        self._lock_counters(clicks, verdicts.values())

    def existing(self, keys: tuple) -> Conversion | None:
        """The conversion a postback speaks of: the first of its keys that names one."""
        if missing := {key for key in keys if key not in self.known}:
            found = conversions_by_key(missing, lock=True)
            self.known.update((key, found.get(key)) for key in missing)
        conversion = next((self.known[key] for key in keys if self.known[key]), None)
        if conversion is not None and conversion.pk is None:
            self.flush()  # an update of a conversion this batch created: insert it first
        return conversion

    def add(self, conversion: Conversion) -> None:
        """A new conversion: inserted now, or with the batch's others at flush()."""
        self.known.update(dict.fromkeys(keys_of(conversion), conversion))
        if self.bulk:
            self.pending.append(conversion)
        else:
            conversion.save(force_insert=True)
            self.fire(conversion)

    def flush(self) -> None:
        if not self.pending:
            return
        new, self.pending = self.pending, []
        Conversion.objects.bulk_create(new)
        for conversion in new:
            self.fire(conversion)

    def fire(self, conversion: Conversion) -> None:
        fire(conversion, self.partner_postbacks.get(conversion.partner_id, []))

    def _lock_counters(self, clicks: dict, verdicts) -> None:
        """The counters this batch may move: its new conversions' (now) and its existing ones'.

        A counter missing yet is made from the cap check's use for its period
        where it read one (nothing moved it since: any change to what a cap
        counts makes its counter), else from a count here.
        """
        wanted = {
            (cap, period_key(cap, self.now))
            for click in clicks.values()
            for cap in self.caps[click.offer_id]
        }
        for conversion in {c.pk: c for c in self.known.values() if c is not None}.values():
            for cap in caps.applicable(
                self.caps.get(conversion.offer_id, []), conversion.goal, conversion.partner_id
            ):
                wanted.add((cap, period_key(cap, conversion.created_at)))
        seen = {
            (cap_id, key): used
            for pb_verdicts in verdicts
            if (use := pb_verdicts["cap"].data)
            for cap_id, key, used in use.uses
        }

        def initial(cap: Cap, key: str) -> Decimal:
            return seen[cap.pk, key] if (cap.pk, key) in seen else caps.measure(cap, key)

        caps.lock_counters(sorted(wanted, key=lambda pair: (pair[0].pk, pair[1])), initial)


def _finish(row: Postback, state: str, error: str = "", conversion=None, offer_id=None) -> str:
    """Record a postback's outcome on its row (written for the whole batch at once)."""
    row.state = state
    row.error = error[:255]
    row.conversion = conversion
    row.offer_id = offer_id
    # One time for the batch: the rows are written by groups of equal values.
    row.processed_at = _batch_time.get() or timezone.now()
    return state


def _lock_existing(verdicts, keys: set[tuple]) -> dict[tuple, Conversion]:
    """Lock the conversions the duplicate check found, in id order; each under the keys
    it still carries (a conversion changed since answers only for its keys now)."""
    ids = {
        i
        for pb_verdicts in verdicts
        if (e := pb_verdicts["duplicate"].data)
        for i in e.conversion_ids
    }
    found = {}
    for conversion in Conversion.objects.select_for_update().filter(pk__in=ids).order_by("pk"):
        for key in keys_of(conversion):
            if key in keys:
                found[key] = conversion
    return found


def settle_one(
    row: Postback, pb: dict, verdicts: dict[str, Verdict], context: _BatchContext
) -> str:
    click = verdicts["click"].data
    offer_id = click and click.offer_id
    for name in REJECT_ORDER:
        if message := verdicts[name].reject:
            return _finish(row, Postback.State.REJECTED, message, offer_id=offer_id)
    return _convert(row, pb, verdicts, offer_id, context)


def _keys(verdicts: dict[str, Verdict]) -> tuple:
    """The keys of the conversion a postback speaks of (checks.conversion_keys)."""
    click, params = verdicts["click"].data, verdicts["params"].data
    if not click or not params:
        return ()
    payout = _payout(verdicts)
    return postback_keys(click.offer_id, payout.goal, params.action_id, click.id, payout.multiple)


def _payout(verdicts: dict[str, Verdict]) -> GoalPayout:
    """The payout check's word; without one, the default goal and no money."""
    return verdicts["payout"].data or GoalPayout(goal="1")


def _convert(
    row: Postback, pb: dict, verdicts: dict[str, Verdict], offer_id: int, context: _BatchContext
) -> str:
    params: Params = verdicts["params"].data
    click: ClickSeen = verdicts["click"].data
    offer: OfferTerms = verdicts["offer"].data
    payout = _payout(verdicts)

    amount: Amount | None = verdicts["currency"].data
    existing = context.existing(_keys(verdicts))
    if existing is not None:
        return _update_existing(row, existing, params, payout, amount, offer, offer_id, context)

    reason = next((verdicts[name].decline for name in DECLINE_ORDER if verdicts[name].decline), "")
    ip = valid_ip(params.ip)
    conversion = Conversion(
        offer_id=offer_id,
        partner_id=click.partner_id,
        click=click.id,
        # What the conversion keeps of its click, which is removed at retention.
        **dict(zip(SUB_FIELDS, click.subs, strict=False)),
        click_ip=click.ip or None,
        country=click.country,
        click_at=click.created_at,
        goal=payout.goal,
        action_id=params.action_id,
        # A repeat event of its goal: not bound by one conversion per click and goal.
        multiple=payout.multiple and bool(params.action_id),
        revenue=payout.revenue,
        payout=payout.payout,
        sum=params.sum,
        currency=params.currency or offer.currency,
        ip=ip,
        comment=params.comment,
        custom_fields=params.custom_fields,
        advertiser_status=params.advertiser_status,
        ctit=int((datetime.fromisoformat(pb["received_at"]) - click.created_at).total_seconds()),
        ip_mismatch=bool(ip and click.ip and ip != click.ip),
        created_at=context.now,
    )
    if amount is not None and amount.converted:
        conversion.sum, conversion.currency = amount.sum, offer.currency
        conversion.original_sum, conversion.original_currency = (
            amount.original_sum,
            amount.original_currency,
        )
        conversion.exchange_rate = amount.rate
    if reason:
        conversion.status, conversion.reason = S.DECLINED, reason
    else:
        review = verdicts["rules"].data.reason if verdicts["rules"].data else ""
        _set_new_status(conversion, params, offer, context.caps[offer_id], review)
    # A concurrent batch may have inserted the same conversion: IntegrityError
    # rolls back to a savepoint and settle() tries again one by one.
    context.add(conversion)
    return _finish(row, Postback.State.ACCEPTED, conversion=conversion, offer_id=offer_id)


def _set_new_status(
    conversion: Conversion,
    params: Params,
    offer: OfferTerms,
    offer_caps: list[Cap],
    review: str = "",
) -> None:
    """Status of a conversion nothing declined: caps, then a pending rule's ``review``, then
    the sent or default status."""
    offer_caps = caps.applicable(offer_caps, conversion.goal, conversion.partner_id)
    spent = caps.spend(offer_caps, conversion.payout, conversion.created_at)
    if spent == Cap.OvercapStatus.DECLINED:
        conversion.status, conversion.reason = S.DECLINED, Decline.CAP_REACHED
        return
    if spent == Cap.OvercapStatus.PENDING:
        # Over the cap, for a manager's review: only a manager approves it.
        conversion.status, conversion.reason = S.PENDING, Decline.CAP_REACHED
        return
    if review:
        # A pending rule matched: for a manager's review, whatever was sent.
        conversion.status, conversion.reason = S.PENDING, review
        return
    status = params.status or offer.default_status
    if status == S.APPROVED:
        status, conversion.hold_until = hold_or_approved(conversion, offer.hold_period)
    elif status == S.HOLD:
        conversion.hold_until = conversion.created_at + timedelta(hours=offer.hold_period)
    conversion.status = status


def _update_existing(
    row: Postback,
    existing: Conversion,
    params: Params,
    payout: GoalPayout,
    amount: Amount | None,
    offer: OfferTerms,
    offer_id: int,
    context: _BatchContext,
) -> str:
    """A postback for a conversion that exists: a status update of a pending one, or a rejection.

    A pending conversion over its cap (reason ``Cap is reached``) waits for a
    manager: the advertiser's approval (or hold) is accepted and recorded on
    the postback, and leaves it pending; a decline, or a new sum, applies. A
    sum sent in another currency reprices it once converted (not when it
    cannot be). The advertiser's status word is kept.
    """
    if not params.status:
        return _finish(row, Postback.State.REJECTED, Rejection.CONVERSION_EXISTS, offer_id=offer_id)
    if existing.status != S.PENDING:
        return _finish(
            row, Postback.State.REJECTED, Rejection.STATUS_NOT_PENDING, offer_id=offer_id
        )
    status, reason, hold_until = params.status, "", None
    if status == S.PENDING or (existing.reason == Decline.CAP_REACHED and status != S.DECLINED):
        status, reason = S.PENDING, existing.reason
    elif status == S.DECLINED:
        reason = Decline.BY_ADVERTISER
    elif status == S.APPROVED:
        status, hold_until = hold_or_approved(existing, offer.hold_period)
    elif status == S.HOLD:
        hold_until = existing.created_at + timedelta(hours=offer.hold_period)
    price = None
    if params.sum_sent and payout.goal_id and amount is not None:
        price = (amount.sum, payout.revenue, payout.payout)
    offer_caps = context.caps.get(existing.offer_id)
    existing.advertiser_status = params.advertiser_status
    set_status(
        existing,
        status,
        reason,
        hold_until,
        price=price,
        offer_caps=offer_caps,
        also=("advertiser_status",),
    )
    return _finish(row, Postback.State.ACCEPTED, conversion=existing, offer_id=offer_id)


def record_failure(ids: list[str], error: str) -> None:
    """A batch whose processing broke: retry it via the sweeper, or fail it for good."""
    failed = Postback.objects.filter(pk__in=ids).retry_or_fail(
        error[:255], settings.POSTBACK_MAX_ATTEMPTS
    )
    metrics.postbacks_failed(failed)


def process_inline(postback_id: str) -> tuple[str, str]:
    """The legacy synchronous mode: the same checks and callback, inside the request."""
    if not Postback.objects.filter(pk=postback_id).claim():
        row = Postback.objects.get(pk=postback_id)
        return row.state, row.error
    batch = load_batch([postback_id])
    settle([check(batch) for check in CHECKS.values()], [postback_id])
    row = Postback.objects.get(pk=postback_id)
    return row.state, row.error
