"""A postback's parameters: how each is read, normalised, validated and fitted to its column.

One table, one line per parameter: the names it is sent under (the first
present wins), its normaliser, the column its value is stored in and the
DESIGN.md rejection for a value the normaliser refuses. A value is normalised
first, then validated, then cut to its column, because normalising can grow
it ("İ".lower() and "ß".upper() are two characters each). Column lengths come
from the models, never repeated here. The raw values stay in Postback.params.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from django.db import models

from conversions.models import CLICKID_PATTERN, Conversion, Postback
from conversions.outcomes import Rejection

from .addresses import valid_ip

CLICKID_RE = re.compile(f"^{CLICKID_PATTERN}$", re.IGNORECASE)
STATUS_CODES = {"1": "approved", "2": "pending", "3": "declined", "5": "hold"}
MAX_SUM = Decimal("1e11")
CUSTOM_FIELDS = tuple(f"custom_field{i}" for i in range(1, 8))
# Custom fields live in a JSON column; this bounds each like a column would.
CUSTOM_FIELD_LENGTH = 255


class Rejected(ValueError):
    """A parameter's value is invalid; the message is DESIGN.md's rejection."""


def raw(sent: dict, *names: str) -> str:
    """First value of the first parameter present in ``sent``, as a stripped string."""
    for name in names:
        value = sent.get(name)
        if isinstance(value, list):
            value = value[0] if value else ""
        if value is not None and value != "":
            return str(value).strip()
    return ""


@cache
def max_length(model: type[models.Model], field: str) -> int:
    return model._meta.get_field(field).max_length


def fit(value: str, model: type[models.Model], field: str) -> str:
    """``value`` cut to the length of ``model.field``: stored whatever its length."""
    return value[: max_length(model, field)]


def parse_sum(text: str) -> Decimal | None:
    """A non-negative finite amount below MAX_SUM, to four places; None if it is not one."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value >= MAX_SUM:
        return None
    return value.quantize(Decimal("0.0001"))


# Normalisers: the stripped raw value in, the value the pipeline uses out;
# ValueError (or Rejected) for a value that cannot be one.


def _text(value: str) -> str:
    return value


def _clickid(value: str) -> str:
    if not CLICKID_RE.match(value):
        raise ValueError(value)
    return value.lower()


def _status(value: str) -> str | None:
    if not value:
        return None
    if value not in STATUS_CODES:
        raise ValueError(value)
    return STATUS_CODES[value]


def _sum(value: str) -> Decimal:
    if not value:
        return Decimal(0)
    amount = parse_sum(value)
    if amount is None:
        raise ValueError(value)
    return amount


def _goal(value: str) -> str:
    # Goals are matched case-insensitively (DESIGN.md); "1" when none is sent.
    return (value or "1").lower()


def _currency(value: str) -> str | None:
    """An ISO 4217 code (three ASCII letters, any case), else None: no known currency.

    None is what the conversion of other currencies (ExchangeRate) will see
    for a currency it cannot know; today the offer's currency is used.
    """
    if len(value) == 3 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def _ip(value: str) -> str:
    return valid_ip(value) or ""


@dataclass(frozen=True)
class Param:
    names: tuple[str, ...]
    normalise: Callable[[str], object] = _text
    # The column the value is stored in: a normalised string is cut to its length.
    column: tuple[type[models.Model], str] | None = None
    length: int | None = None  # for a value with no column of its own
    invalid: str = ""  # the rejection for a value the normaliser refuses
    missing: str = ""  # the rejection for a mandatory parameter not sent

    def fit(self, value):
        if not isinstance(value, str):
            return value
        if self.column:
            return fit(value, *self.column)
        return value[: self.length] if self.length else value


PARAMS: dict[str, Param] = {
    "clickid": Param(
        ("clickid", "click_id"),
        _clickid,
        invalid=Rejection.INVALID_CLICKID,
        missing=Rejection.MISSING_CLICKID,
    ),
    "status": Param(("status",), _status, invalid=Rejection.INVALID_STATUS),
    "sum": Param(("sum",), _sum, invalid=Rejection.INVALID_SUM),
    "goal": Param(("goal",), _goal, column=(Conversion, "goal")),
    "action_id": Param(("action_id",), column=(Conversion, "action_id")),
    "ip": Param(("ip",), _ip),
    "comment": Param(("comment",), column=(Conversion, "comment")),
    "currency": Param(("currency",), _currency),
    **{name: Param((name,), length=CUSTOM_FIELD_LENGTH) for name in CUSTOM_FIELDS},
}


def normalised(sent: dict, name: str):
    """The parameter ``name`` of ``sent`` normalised (not cut); Rejected if it is invalid."""
    spec = PARAMS[name]
    text = raw(sent, *spec.names)
    if spec.missing and not text:
        raise Rejected(spec.missing)
    try:
        return spec.normalise(text)
    except ValueError:
        raise Rejected(spec.invalid) from None


def value(sent: dict, name: str):
    """The parameter ``name`` of ``sent`` normalised and fitted to its column."""
    return PARAMS[name].fit(normalised(sent, name))


def postback_columns(params: dict) -> dict[str, str]:
    """The values the accept path copies out of ``params`` into the Postback row, fitted."""
    return {
        "clickid": fit(
            _first(params.get("clickid") or params.get("click_id")), Postback, "clickid"
        ),
        "action_id": fit(_first(params.get("action_id")), Postback, "action_id"),
    }


def _first(value) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""
