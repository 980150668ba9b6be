"""Converting a postback's sum into its offer's currency (DESIGN.md, ExchangeRate).

A postback whose ``currency`` is not its offer's has its ``sum`` converted
with the newest rate on or before the day it was received (UTC): the pair's
rate as stored (one base is ``rate`` of quote), else the inverse of the
reverse pair's. One small query per pair and day of a batch (served by the
rates' unique index), none for a batch all in its offers' currencies.
"""

from datetime import date, datetime
from decimal import Decimal

from django.db.models import Q

from conversions.intake.params import MAX_SUM
from offers.models import RATE, ExchangeRate

CENT = Decimal("0.0001")
RATE_PLACES = Decimal(1).scaleb(-RATE["decimal_places"])


def day_of(received_at: str) -> date:
    """The day a postback was received (its rates are that day's or older)."""
    return datetime.fromisoformat(received_at).date()


def rate_on(base: str, quote: str, day: date) -> Decimal | None:
    """One ``base`` in ``quote`` on ``day``: the newest rate known on or before it.

    The pair as stored, or the inverse of the reverse pair's; on a day both
    are known, the pair as stored.
    """
    rows = list(
        ExchangeRate.objects.filter(
            Q(base=base, quote=quote) | Q(base=quote, quote=base), date__lte=day
        )
        .order_by("-date")
        .values_list("date", "base", "rate")[:2]
    )
    if not rows:
        return None
    newest = [row for row in rows if row[0] == rows[0][0]]
    direct = [rate for _, row_base, rate in newest if row_base == base]
    if direct:
        return direct[0]
    return (Decimal(1) / newest[0][2]).quantize(RATE_PLACES)


class Rates:
    """Rates looked up once per pair and day, for one batch."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, date], Decimal | None] = {}

    def rate(self, base: str, quote: str, day: date) -> Decimal | None:
        key = (base, quote, day)
        if key not in self._known:
            self._known[key] = rate_on(base, quote, day)
        return self._known[key]


def convert(amount: Decimal, rate: Decimal) -> Decimal | None:
    """``amount`` times ``rate``, to the cent's hundredth; None past what a sum may be."""
    converted = (amount * rate).quantize(CENT)
    return converted if converted < MAX_SUM else None
