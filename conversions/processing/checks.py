"""Per-parameter checks of a batch of postbacks.

Each check takes the batch (a list of postback dicts, arrival order) and
returns ``{postback_id: Verdict}`` (verdicts.py): nothing to say, a
rejection, a decline, and what it read that the callback uses. Checks never
raise for a business failure and read with one query per table for the
whole batch; they write no outcome (the callback decides). A check that
misses a clickid flushes the click buffer first (a click may still be
there), which only moves clicks into their table.
"""

import contextvars
import hmac
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Q, prefetch_related_objects
from django.db.models.functions import Lower
from django.utils import timezone

from conversions.intake import click_buffer, params
from conversions.intake.params import CLICKID_RE, CUSTOM_FIELDS, STATUS_CODES, parse_sum
from conversions.models import SUB_FIELDS, Click, Conversion, clickid_day, day_number
from conversions.outcomes import Decline, Rejection
from offers.models import Cap, CapCounter, Goal, Payout, PostbackRule, period_key
from offers.validators import ip_allowed
from partners.models import Partner

from . import caps, currency
from .verdicts import (
    NOTHING,
    Amount,
    CapUse,
    ClickSeen,
    Existing,
    GoalPayout,
    OfferTerms,
    Params,
    Review,
    Verdict,
    Verdicts,
)

# A dry run (a test postback, processing/dry_run.py) reads clicks from the table
# only: a flush inside its rolled-back transaction would drop buffered clicks.
TABLE_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("table_only", default=False)

Batch = list[dict]


def param(pb: dict, *names: str) -> str:
    """First value of the first parameter present, as a stripped string."""
    return params.raw(pb["params"], *names)


def clickid_of(pb: dict) -> str:
    return param(pb, "clickid", "click_id").lower()


def goal_of(pb: dict) -> str:
    """The goal as matched against the offer's goals: normalised, not cut."""
    return params.normalised(pb["params"], "goal")


def unknown_goal(pb: dict) -> str:
    """A goal the offer does not have, as stored on its declined conversion."""
    return params.value(pb["params"], "goal")


def _clicks(batch: Batch, *related: str) -> dict[str, Click]:
    """The batch's clicks by clickid, with ``related`` joined: one query."""
    wanted = {cid for pb in batch if CLICKID_RE.match(cid := clickid_of(pb))}
    if not wanted:
        return {}
    found = _by_partition(wanted, related)
    if len(found) < len(wanted) and click_buffer.enabled() and not TABLE_ONLY.get():
        # A click can still be in the write-behind buffer, or in another
        # check's flush: once this flush returns, it is in the table.
        click_buffer.flush()
        found.update(_by_partition(wanted - found.keys(), related))
    return found


def _by_partition(wanted: set[str], related: tuple[str, ...]) -> dict[str, Click]:
    """The ``wanted`` clicks with ``related`` loaded: on PostgreSQL, one ``IN`` list per
    day partition, the lists joined by ``UNION ALL`` in one statement.

    One ``clickid IN (…)`` over a batch naming clicks of many days reads each
    of those days' partitions for every clickid of the list (500 clickids of
    60 days: 170-225 ms and 4 ms of database CPU per postback in `make bench`'s
    datasize case); a list per day reads each partition for its own clickids
    only, and one statement of them all costs one round trip. It is written
    here rather than as a union of querysets, which Django compiles arm by arm
    (0.3 ms each, with the joins); ``related`` is then read once per relation
    for the whole batch. Clickids naming no day that can have a partition
    (older than retention, or of the old random format) go together: they are
    in the default partition.
    """
    if connection.vendor != "postgresql":
        return _in_one_list(wanted, related)
    today = day_number(timezone.now())
    first = today - max(settings.CLICK_RETENTION_DAYS, 0) - 2
    last = today + settings.PARTITION_DAYS_AHEAD + 2
    days: dict[int | None, list[str]] = {}
    for clickid in wanted:
        day = clickid_day(clickid)
        days.setdefault(day if first <= day <= last else None, []).append(clickid)
    if len(days) == 1:  # one partition: the list as it is, the relations joined
        return _in_one_list(wanted, related)
    table = connection.ops.quote_name(Click._meta.db_table)
    arms = [
        f"(SELECT * FROM {table} WHERE clickid IN ({', '.join(['%s'] * len(group))}))"
        for group in days.values()
    ]
    clicks = list(
        Click.objects.raw(" UNION ALL ".join(arms), [c for g in days.values() for c in g])
    )
    prefetch_related_objects(clicks, *related)
    return {c.clickid: c for c in clicks}


def _in_one_list(wanted: set[str], related: tuple[str, ...]) -> dict[str, Click]:
    clicks = Click.objects.select_related(*related).filter(clickid__in=wanted)
    return {c.clickid: c for c in clicks}


def _per_click(batch: Batch, related: tuple, judge: Callable[[dict, Click], Verdict]) -> Verdicts:
    clicks = _clicks(batch, *related)
    return {
        pb["id"]: judge(pb, click) if (click := clicks.get(clickid_of(pb))) else NOTHING
        for pb in batch
    }


def _status_maps(batch: Batch) -> dict[str, dict[str, str]]:
    """The status words each postback's offer knows (its advertiser's, then its own: the
    offer's win), casefolded; read only for a batch where some status is a word."""
    if all(params.raw(pb["params"], "status") in ("", *STATUS_CODES) for pb in batch):
        return {}
    clicks = _clicks(batch, "offer__advertiser")
    maps = {}
    for pb in batch:
        if click := clicks.get(clickid_of(pb)):
            words = {**click.offer.advertiser.status_map, **click.offer.status_map}
            maps[pb["id"]] = {word.strip().casefold(): status for word, status in words.items()}
    return maps


def _status(pb: dict, maps: dict) -> str | None:
    """The postback's status: a code's, or its advertiser's word mapped by the offer.

    A word with no click to name the offer maps to nothing.
    """
    sent = params.raw(pb["params"], "status")
    if not sent or sent in STATUS_CODES:
        return params.value(pb["params"], "status")
    status = maps.get(pb["id"], {}).get(sent.casefold())
    if status is None:
        raise params.Rejected(Rejection.INVALID_STATUS)
    return status


def check_params(batch: Batch) -> Verdicts:
    """DESIGN.md's rejections 1-3, and every parameter normalised and fitted to its column.

    A status word (not 1, 2, 3 or 5) is looked up in the status maps of the
    postback's offer and advertiser; it is kept as sent in ``advertiser_status``.
    """
    maps = _status_maps(batch)
    verdicts = {}
    for pb in batch:
        sent = pb["params"]
        try:
            # In DESIGN.md's order: clickid (missing, then invalid), status, sum.
            checked = {"clickid": params.value(sent, "clickid")}
            checked["status"] = _status(pb, maps)
            checked["sum"] = params.value(sent, "sum")
        except params.Rejected as exc:
            verdicts[pb["id"]] = Verdict(reject=str(exc))
            continue
        custom = {name: params.value(sent, name) for name in CUSTOM_FIELDS}
        data = Params(
            status=checked["status"],
            sum=checked["sum"],
            sum_sent=bool(params.raw(sent, "sum")),
            action_id=params.value(sent, "action_id"),
            ip=params.value(sent, "ip"),
            comment=params.value(sent, "comment"),
            currency=params.value(sent, "currency"),
            custom_fields={name: value for name, value in custom.items() if value},
            advertiser_status=params.fit(
                params.raw(sent, "status"), Conversion, "advertiser_status"
            ),
        )
        declined = checked["status"] == Conversion.Status.DECLINED
        verdicts[pb["id"]] = Verdict(decline=Decline.BY_ADVERTISER if declined else "", data=data)
    return verdicts


def check_click(batch: Batch) -> Verdicts:
    clicks = _clicks(batch)
    verdicts = {}
    for pb in batch:
        click = clicks.get(clickid_of(pb))
        if click is None:
            verdicts[pb["id"]] = Verdict(reject=Rejection.CLICK_NOT_FOUND)
        else:
            verdicts[pb["id"]] = Verdict(
                data=ClickSeen(
                    id=click.pk,
                    offer_id=click.offer_id,
                    partner_id=click.partner_id,
                    country=click.country,
                    created_at=click.created_at,
                    ip=click.ip or "",
                    subs=[getattr(click, name) for name in SUB_FIELDS],
                )
            )
    return verdicts


def check_offer(batch: Batch) -> Verdicts:
    def judge(pb: dict, click: Click) -> Verdict:
        offer = click.offer
        if offer.status == offer.Status.DISABLED:
            return Verdict(reject=Rejection.OFFER_DISABLED)
        return Verdict(data=OfferTerms(offer.currency, offer.hold_period, offer.default_status))

    return _per_click(batch, ("offer",), judge)


def check_secure(batch: Batch) -> Verdicts:
    platform = settings.POSTBACK_SECURE

    def judge(pb: dict, click: Click) -> Verdict:
        offer = click.offer
        codes = [code for code in (offer.secure, offer.advertiser.secure, platform) if code]
        if not codes:
            return NOTHING
        sent = param(pb, "secure").encode()
        # Constant-time comparison against every configured code.
        if any(hmac.compare_digest(sent, code.encode()) for code in codes):
            return NOTHING
        return Verdict(reject=Rejection.ACCESS_DENIED)

    return _per_click(batch, ("offer__advertiser",), judge)


def check_ip(batch: Batch) -> Verdicts:
    def judge(pb: dict, click: Click) -> Verdict:
        networks = [*click.offer.allowed_ips, *click.offer.advertiser.allowed_ips]
        return NOTHING if ip_allowed(pb["ip"], networks) else Verdict(reject=Rejection.IP_DENIED)

    return _per_click(batch, ("offer__advertiser",), judge)


def check_partner(batch: Batch) -> Verdicts:
    def judge(pb: dict, click: Click) -> Verdict:
        if click.partner.status == Partner.Status.DISABLED:
            return Verdict(decline=Decline.PARTNER_DISABLED)
        if click.partner.status == Partner.Status.BANNED:
            return Verdict(decline=Decline.PARTNER_BANNED)
        return NOTHING

    return _per_click(batch, ("partner",), judge)


def check_lifespan(batch: Batch) -> Verdicts:
    def judge(pb: dict, click: Click) -> Verdict:
        # Measured at receipt, not at processing: queueing never expires a click.
        age = datetime.fromisoformat(pb["received_at"]) - click.created_at
        if age > timedelta(hours=click.offer.click_lifespan):
            return Verdict(decline=Decline.CLICK_EXPIRED)
        if age < timedelta(seconds=click.offer.min_click_lifespan):
            return Verdict(decline=Decline.CLICK_TOO_YOUNG)
        return NOTHING

    return _per_click(batch, ("offer",), judge)


def _goals(clicks: dict[str, Click]) -> dict[tuple[int, str], Goal]:
    offer_ids = {c.offer_id for c in clicks.values()}
    goals = Goal.objects.filter(offer_id__in=offer_ids).annotate(key=Lower("value"))
    return {(g.offer_id, g.key): g for g in goals}


def _with_click_and_goal(batch: Batch, clicks: dict, goals: dict) -> Iterator[tuple]:
    """Each postback with its click and its offer's goal (None where unknown)."""
    for pb in batch:
        click = clicks.get(clickid_of(pb))
        goal = goals.get((click.offer_id, goal_of(pb))) if click else None
        yield pb, click, goal


def select_payout(rules: list[Payout], partner_id: int, country: str) -> Payout | None:
    """Personal beats general; country-specific beats any country."""
    ranked = sorted(
        (r for r in rules if r.partner_id in (None, partner_id) and r.country in ("", country)),
        key=lambda r: (r.partner_id is None, r.country == ""),
    )
    return ranked[0] if ranked else None


def amounts(rule: Payout, amount: Decimal) -> tuple[Decimal, Decimal]:
    if rule.type == Payout.Type.PERCENT:
        cent = Decimal("0.0001")
        return (amount * rule.revenue / 100).quantize(cent), (amount * rule.payout / 100).quantize(
            cent
        )
    return rule.revenue, rule.payout


def check_payout(batch: Batch) -> Verdicts:
    """The goal and its payout rule's money; a percent of the sum in the offer's currency."""
    clicks = _clicks(batch, "offer")
    goals = _goals(clicks)
    sums = _amounts(batch, clicks)
    rules: dict[int, list[Payout]] = {}
    for rule in Payout.objects.filter(goal__in=[g.pk for g in goals.values()]):
        rules.setdefault(rule.goal_id, []).append(rule)
    verdicts = {}
    for pb, click, goal in _with_click_and_goal(batch, clicks, goals):
        if click is None:
            verdicts[pb["id"]] = NOTHING
            continue
        rule = goal and select_payout(rules.get(goal.pk, []), click.partner_id, click.country)
        if rule is None:
            verdicts[pb["id"]] = Verdict(
                decline=Decline.PAYMENTS_NOT_FOUND,
                data=GoalPayout(goal=goal.value if goal else unknown_goal(pb)),
            )
            continue
        amount = sums.get(pb["id"])
        amount = amount.sum if isinstance(amount, Amount) else parse_sum(param(pb, "sum"))
        revenue, payout = amounts(rule, amount or Decimal(0))
        verdicts[pb["id"]] = Verdict(
            data=GoalPayout(goal.value, goal.pk, revenue, payout, goal.allow_multiple)
        )
    return verdicts


def conversion_keys(offer_id: int, goal: str, action_id: str, click_pk: str | None) -> tuple:
    """The keys a postback's conversion is found by, in order: its click's, then its action_id's.

    A click has one conversion per goal, whatever action_id its postbacks
    carry or omit; an action_id names one conversion per offer and goal,
    whichever click it came from. Goals match case-insensitively. A repeat
    event (a goal that allows multiple, with an action_id) is found by its
    action_id alone: pass no ``click_pk`` (``postback_keys``).
    """
    goal = goal.lower()
    by_click = (("click", click_pk, goal),) if click_pk else ()
    return by_click + ((("action", offer_id, goal, action_id),) if action_id else ())


def postback_keys(offer_id: int, goal: str, action_id: str, click_pk: str, multiple: bool) -> tuple:
    """The keys of the conversion a postback speaks of: a repeat event's by action_id only."""
    repeat = multiple and action_id
    return conversion_keys(offer_id, goal, action_id, None if repeat else click_pk)


def keys_of(conversion: Conversion) -> tuple:
    """The keys an existing conversion is found by."""
    click_pk = None if conversion.multiple else conversion.click
    return conversion_keys(conversion.offer_id, conversion.goal, conversion.action_id, click_pk)


def conversions_by_key(keys: set[tuple], *, lock: bool = False) -> dict[tuple, Conversion]:
    """Existing conversions for these keys, in one query (locked in id order if asked)."""
    if not keys:
        return {}
    # A superset by clicks and action ids (cheap to build), sorted out by key below.
    # "multiple" and "action_id <> ''" spelled out: the partial indexes apply.
    candidates = Conversion.objects.filter(
        Q(click__in={k[1] for k in keys if k[0] == "click"}, multiple=False)
        | (
            Q(
                offer_id__in={k[1] for k in keys if k[0] == "action"},
                action_id__in={k[3] for k in keys if k[0] == "action"},
            )
            & ~Q(action_id="")
        )
    )
    if lock:
        candidates = candidates.select_for_update().order_by("pk")
    found = {}
    for conv in candidates:
        for key in keys_of(conv):
            if key in keys:
                found[key] = conv
    return found


def check_duplicate(batch: Batch) -> Verdicts:
    """The existing conversions each postback speaks of, as read now (one query).

    The callback locks these and checks that they still carry the keys; one
    made since is met on the unique constraints when the callback inserts.
    """
    clicks = _clicks(batch)
    goals = _goals(clicks)
    keys = {}
    for pb, click, goal in _with_click_and_goal(batch, clicks, goals):
        if click:
            keys[pb["id"]] = postback_keys(
                click.offer_id,
                goal.value if goal else unknown_goal(pb),
                params.value(pb["params"], "action_id"),
                click.pk,
                bool(goal and goal.allow_multiple),
            )
    found = conversions_by_key({key for pb_keys in keys.values() for key in pb_keys})
    return {
        pb["id"]: Verdict(
            data=Existing(sorted({found[key].pk for key in keys[pb["id"]] if key in found}))
        )
        if pb["id"] in keys
        else NOTHING
        for pb in batch
    }


def check_cap(batch: Batch) -> Verdicts:
    """What each cap over each postback's offer uses in the period of now (a count where
    no counter exists yet): the callback makes missing counters from it under its locks."""
    clicks = _clicks(batch)
    offer_caps: dict[int, list[Cap]] = {}
    offers = {c.offer_id for c in clicks.values()}
    for cap in Cap.objects.filter(offer_id__in=offers).order_by("pk"):
        offer_caps.setdefault(cap.offer_id, []).append(cap)
    # A conversion counts in the period of its creation: about now.
    now = timezone.now()
    wanted = {(cap.pk, period_key(cap, now)): cap for kept in offer_caps.values() for cap in kept}
    counters = {
        (c.cap_id, c.period_key): c.used
        for c in CapCounter.objects.filter(cap__offer_id__in=list(offer_caps))
        if (c.cap_id, c.period_key) in wanted
    }
    uses = {
        pair: counters[pair] if pair in counters else caps.measure(cap, pair[1])
        for pair, cap in wanted.items()
    }
    return {
        pb["id"]: Verdict(
            data=CapUse(
                [
                    (cap.pk, key, uses[cap.pk, key])
                    for cap in offer_caps.get(click.offer_id, [])
                    for key in [period_key(cap, now)]
                ]
            )
        )
        if (click := clicks.get(clickid_of(pb)))
        else NOTHING
        for pb in batch
    }


def _ctit(pb: dict, click: Click) -> int:
    """Seconds from the click to the postback's receipt (a fraud signal: bots are quick)."""
    return int((datetime.fromisoformat(pb["received_at"]) - click.created_at).total_seconds())


def _amounts(batch: Batch, clicks: dict[str, Click]) -> dict[str, Amount | str]:
    """Each postback's sum in its offer's currency (clicks with their offer).

    Where it cannot be converted, the outcome instead: ``Exchange rate not
    found`` (no rate known, or what was sent is no currency code), or
    ``Invalid parameter sum`` (the converted sum is out of range). A postback
    without a click or a valid sum is left out.
    """
    rates = currency.Rates()
    out: dict[str, Amount | str] = {}
    for pb in batch:
        click = clicks.get(clickid_of(pb))
        try:
            amount = params.value(pb["params"], "sum")
        except params.Rejected:
            continue
        if click is None:
            continue
        wanted, sent = click.offer.currency, params.raw(pb["params"], "currency")
        code = params.value(pb["params"], "currency")
        if not sent or code == wanted:
            out[pb["id"]] = Amount(amount, amount, wanted, Decimal(1))
            continue
        rate = code and rates.rate(code, wanted, currency.day_of(pb["received_at"]))
        if not rate:
            out[pb["id"]] = Decline.EXCHANGE_RATE_NOT_FOUND
        elif (converted := currency.convert(amount, rate)) is None:
            out[pb["id"]] = Rejection.INVALID_SUM
        else:
            out[pb["id"]] = Amount(converted, amount, code, rate, converted=True)
    return out


def check_currency(batch: Batch) -> Verdicts:
    """The sum in the offer's currency: converted from the currency sent where they differ.

    No rate (or no currency code) declines the new conversion ``Exchange rate
    not found``; a converted sum too large to be a sum is ``Invalid parameter sum``.
    """
    sums = _amounts(batch, _clicks(batch, "offer"))
    verdicts = {}
    for pb in batch:
        amount = sums.get(pb["id"])
        if amount is None:
            verdicts[pb["id"]] = NOTHING
        elif isinstance(amount, Amount):
            verdicts[pb["id"]] = Verdict(data=amount)
        elif amount == Rejection.INVALID_SUM:
            verdicts[pb["id"]] = Verdict(reject=amount)
        else:
            verdicts[pb["id"]] = Verdict(decline=amount)
    return verdicts


def check_rules(batch: Batch) -> Verdicts:
    """The offers' PostbackRules on each postback's sum (in the offer's currency), ctit and
    parameters: the first matching declined rule declines; else the first matching
    pending rule's reason is for review. Rules apply to new conversions (the callback)."""
    clicks = _clicks(batch, "offer")
    offer_rules: dict[int, list[PostbackRule]] = {}
    if clicks:
        offers = {c.offer_id for c in clicks.values()}
        for rule in PostbackRule.objects.filter(offer_id__in=offers).order_by("pk"):
            offer_rules.setdefault(rule.offer_id, []).append(rule)
    if not offer_rules:
        return {
            pb["id"]: Verdict(data=Review()) if clickid_of(pb) in clicks else NOTHING
            for pb in batch
        }
    goals = _goals(clicks)
    sums = _amounts(batch, clicks)
    verdicts = {}
    for pb, click, goal in _with_click_and_goal(batch, clicks, goals):
        if click is None:
            verdicts[pb["id"]] = NOTHING
            continue
        amount = sums.get(pb["id"])
        subject = {
            "sum": amount.sum if isinstance(amount, Amount) else None,
            "ctit": _ctit(pb, click),
            "params": pb["params"],
        }
        matching = [
            rule
            for rule in offer_rules.get(click.offer_id, [])
            if rule.goal_id in (None, goal and goal.pk) and rule.matches(subject)
        ]
        declined = next((r for r in matching if r.action == PostbackRule.Action.DECLINED), None)
        pending = next((r for r in matching if r.action == PostbackRule.Action.PENDING), None)
        verdicts[pb["id"]] = Verdict(
            decline=declined.reason if declined else "",
            data=Review(pending.reason if pending else ""),
        )
    return verdicts


CHECKS: dict[str, Callable[[Batch], Verdicts]] = {
    "params": check_params,
    "click": check_click,
    "offer": check_offer,
    "partner": check_partner,
    "secure": check_secure,
    "ip": check_ip,
    "lifespan": check_lifespan,
    "payout": check_payout,
    "duplicate": check_duplicate,
    "cap": check_cap,
    "currency": check_currency,
    "rules": check_rules,
}
# DESIGN.md's order: rejections first (params covers 1-3; a sum the currency
# converts out of range is 3 too, known once the click is), then declines
# (rules before caps, which the callback spends).
REJECT_ORDER = ("params", "click", "currency", "offer", "secure", "ip")
DECLINE_ORDER = ("partner", "lifespan", "payout", "currency", "params", "rules")
