"""What each check says of each postback: typed, and turned into JSON in one place.

A check returns ``{postback_id: Verdict}``. A verdict may reject the postback
(an error of :class:`~conversions.outcomes.Rejection`), decline its new
conversion (a reason of :class:`~conversions.outcomes.Decline`), and carry
what its check read for the callback: one data class per check. The chord's
tasks exchange them as JSON (:func:`to_json` / :func:`from_json`); the
callback and the synchronous mode read the objects.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Params:
    """The postback's parameters, normalised and fitted to their columns."""

    status: str
    sum: Decimal
    sum_sent: bool
    action_id: str
    ip: str
    comment: str
    currency: str
    custom_fields: dict[str, str]
    # The status as sent (a code or the advertiser's own word), fitted to its column.
    advertiser_status: str = ""


@dataclass(frozen=True)
class ClickSeen:
    """The postback's click: what its conversion keeps of it (the click row goes at retention)."""

    id: str  # the clickid (the click's primary key)
    offer_id: int
    partner_id: int
    country: str
    created_at: datetime
    ip: str = ""
    subs: list[str] = field(default_factory=list)  # sub1..sub8


@dataclass(frozen=True)
class OfferTerms:
    """What the click's offer says of a new conversion."""

    currency: str
    hold_period: int
    default_status: str


@dataclass(frozen=True)
class GoalPayout:
    """The goal (the offer's, else as sent) and, where a rule matched, the money."""

    goal: str
    goal_id: int | None = None
    revenue: Decimal = Decimal(0)
    payout: Decimal = Decimal(0)
    # The goal allows repeat events: a new action_id is a new conversion of the click.
    multiple: bool = False


@dataclass(frozen=True)
class Existing:
    """The conversions found, before the callback's locks, for the postback's keys."""

    conversion_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class CapUse:
    """What each cap over the postback's offer uses in the period of now.

    ``uses`` is ``[[cap_id, period_key, used], ...]``: the callback makes a
    missing counter from it instead of counting again, for the same period.
    """

    uses: list[tuple[int, str, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class Amount:
    """The postback's sum in its offer's currency, and as sent (``converted`` when they differ)."""

    sum: Decimal
    original_sum: Decimal
    original_currency: str
    rate: Decimal
    converted: bool = False


@dataclass(frozen=True)
class Review:
    """The reason of the first matching ``pending`` rule ("" when none matched)."""

    reason: str = ""


@dataclass(frozen=True)
class Verdict:
    reject: str = ""
    decline: str = ""
    data: typing.Any = None


NOTHING = Verdict()
Verdicts = dict[str, Verdict]
# The data class each check's verdicts carry.
DATA = {
    "params": Params,
    "click": ClickSeen,
    "offer": OfferTerms,
    "payout": GoalPayout,
    "duplicate": Existing,
    "cap": CapUse,
    "currency": Amount,
    "rules": Review,
}


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def to_json(verdicts: Verdicts) -> dict[str, dict]:
    """A check's verdicts as JSON: ``{id: {"reject"?, "decline"?, "data"?}}``."""
    out = {}
    for postback_id, verdict in verdicts.items():
        plain = {}
        if verdict.reject:
            plain["reject"] = str(verdict.reject)
        if verdict.decline:
            plain["decline"] = str(verdict.decline)
        if verdict.data is not None:
            plain["data"] = _plain(dataclasses.asdict(verdict.data))
        out[postback_id] = plain
    return out


def _typed(kind, value):
    if kind is Decimal:
        return Decimal(value)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return [_typed(item, v) for v in value]
    if typing.get_origin(kind) is tuple:
        return tuple(_typed(k, v) for k, v in zip(typing.get_args(kind), value, strict=True))
    return value


def from_json(check: str, plain: dict[str, dict] | None) -> Verdicts:
    """A check's verdicts back from :func:`to_json`.

    A field a data class no longer has is left out, and one it gained takes its
    default: a chord published by the previous version still settles.
    """
    kind = DATA.get(check)
    hints = typing.get_type_hints(kind) if kind else {}
    verdicts = {}
    for postback_id, item in (plain or {}).items():
        data = item.get("data")
        if data is not None and kind is not None:
            data = kind(
                **{name: _typed(hints[name], v) for name, v in data.items() if name in hints}
            )
        verdicts[postback_id] = Verdict(item.get("reject", ""), item.get("decline", ""), data)
    return verdicts
