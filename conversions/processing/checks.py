"""Per-parameter checks of a batch of postbacks.

Each check takes the batch (a list of postback dicts, arrival order) and
returns ``{postback_id: Verdict}`` (verdicts.py): nothing to say, a
rejection, a decline, and what it read that the callback uses. Checks never
raise for a business failure and read with one query per table for the
whole batch; they write no outcome (the callback decides). A check that
misses a clickid flushes the click buffer first (a click may still be
there), which only moves clicks into their table.
"""

import hmac
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from conversions.intake import click_buffer, params
from conversions.intake.params import CLICKID_RE, CUSTOM_FIELDS, parse_sum
from conversions.models import Click, Conversion
from conversions.outcomes import Decline, Rejection
from offers.models import Cap, CapCounter, Goal, Payout, period_key
from offers.validators import ip_allowed
from partners.models import Partner

from . import caps
from .verdicts import (
    NOTHING,
    CapUse,
    ClickSeen,
    Existing,
    GoalPayout,
    OfferTerms,
    Params,
    Verdict,
    Verdicts,
)

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
    clicks = Click.objects.select_related(*related)
    found = {c.clickid: c for c in clicks.filter(clickid__in=wanted)}
    if len(found) < len(wanted) and click_buffer.enabled():
        # A click can still be in the write-behind buffer, or in another
        # check's flush: once this flush returns, it is in the table.
        click_buffer.flush()
        missing = wanted - found.keys()
        found.update((c.clickid, c) for c in clicks.filter(clickid__in=missing))
    return found


def _per_click(batch: Batch, related: tuple, judge: Callable[[dict, Click], Verdict]) -> Verdicts:
    clicks = _clicks(batch, *related)
    return {
        pb["id"]: judge(pb, click) if (click := clicks.get(clickid_of(pb))) else NOTHING
        for pb in batch
    }


def check_params(batch: Batch) -> Verdicts:
    """DESIGN.md's rejections 1-3, and every parameter normalised and fitted to its column."""
    verdicts = {}
    for pb in batch:
        sent = pb["params"]
        try:
            # In DESIGN.md's order: clickid (missing, then invalid), status, sum.
            checked = {name: params.value(sent, name) for name in ("clickid", "status", "sum")}
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
    clicks = _clicks(batch)
    goals = _goals(clicks)
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
        revenue, payout = amounts(rule, parse_sum(param(pb, "sum")) or Decimal(0))
        verdicts[pb["id"]] = Verdict(data=GoalPayout(goal.value, goal.pk, revenue, payout))
    return verdicts


def conversion_keys(offer_id: int, goal: str, action_id: str, click_pk: int | None) -> tuple:
    """The keys a postback's conversion is found by, in order: its click's, then its action_id's.

    A click has one conversion per goal, whatever action_id its postbacks
    carry or omit; an action_id names one conversion per offer and goal,
    whichever click it came from. Goals match case-insensitively.
    """
    goal = goal.lower()
    by_click = (("click", click_pk, goal),) if click_pk else ()
    return by_click + ((("action", offer_id, goal, action_id),) if action_id else ())


def keys_of(conversion: Conversion) -> tuple:
    """The keys an existing conversion is found by."""
    click_pk = None if conversion.multiple else conversion.click_id
    return conversion_keys(conversion.offer_id, conversion.goal, conversion.action_id, click_pk)


def conversions_by_key(keys: set[tuple], *, lock: bool = False) -> dict[tuple, Conversion]:
    """Existing conversions for these keys, in one query (locked in id order if asked)."""
    if not keys:
        return {}
    # A superset by clicks and action ids (cheap to build), sorted out by key below.
    # "multiple" and "action_id <> ''" spelled out: the partial indexes apply.
    candidates = Conversion.objects.filter(
        Q(click_id__in={k[1] for k in keys if k[0] == "click"}, multiple=False)
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
            keys[pb["id"]] = conversion_keys(
                click.offer_id,
                goal.value if goal else unknown_goal(pb),
                params.value(pb["params"], "action_id"),
                click.pk,
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
}
# DESIGN.md's order: rejections first (params covers 1-3), then declines.
REJECT_ORDER = ("params", "click", "offer", "secure", "ip")
DECLINE_ORDER = ("partner", "lifespan", "payout", "params")
