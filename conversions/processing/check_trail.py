"""A postback's check trail (DESIGN.md "Check trail"): what each check said, and which decided.

Built by the callback once a postback is settled, from the checks' verdicts
and the outcome: ``{"<check>": {"ok": bool, "detail": str}}``. The checks are
listed in the order they decide, up to the one that decided: it alone has
``ok`` false, its ``detail`` the postback's error or the conversion's reason.
Checks after it are left out (they decided nothing). A status update of an
existing conversion passes the rejections and the duplicate check; the
declines and caps apply to new conversions only.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from conversions.models import Conversion, Postback
from conversions.outcomes import Decline

from .checks import DECLINE_ORDER, REJECT_ORDER
from .verdicts import NOTHING, Verdict

Verdicts = dict[str, Verdict]


def _money(value: Decimal) -> str:
    """3.5000 as 3.50, 0.0125 as 0.0125."""
    text = f"{Decimal(value).normalize():f}"
    whole, _, fraction = text.partition(".")
    return f"{whole}.{fraction.ljust(2, '0')}"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172_800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86_400} days"


def _passed(name: str, verdicts: Verdicts, pb: dict, updated: Conversion | None) -> str:
    """What a check found, for a check that passed (``updated``: the conversion it updated)."""
    data = verdicts.get(name, NOTHING).data
    click = verdicts["click"].data
    if name == "params" and data is not None:
        sent = f"status {data.status or '(none sent)'}, sum {_money(data.sum)}"
        return sent + (f" {data.currency}" if data.currency else "")
    if name == "click" and click is not None:
        return f"offer {click.offer_id}, partner {click.partner_id}"
    if name == "offer" and data is not None:
        return f"running; default status {data.default_status}, hold {data.hold_period} h"
    if name == "secure":
        return "code accepted (or none asked for)"
    if name == "ip":
        return f"{pb.get('ip') or 'no address'} allowed"
    if name == "partner":
        return "partner active"
    if name == "lifespan" and click is not None:
        age = datetime.fromisoformat(pb["received_at"]) - click.created_at
        return f"click {_age(max(age, timedelta(0)).total_seconds())} old"
    if name == "payout" and data is not None:
        return f"goal {data.goal}: revenue {_money(data.revenue)}, payout {_money(data.payout)}"
    if name == "duplicate":
        if updated is not None:
            return f"updates pending conversion #{updated.pk}"
        return "no conversion yet for this click and goal"
    if name == "cap":
        return "not reached"
    if name == "currency" and data is not None and data.converted:
        return (
            f"{_money(data.original_sum)} {data.original_currency} at {data.rate.normalize():f}"
            f" = {_money(data.sum)}"
        )
    if name == "rules" and data is not None and data.reason:
        return f"pending for review: {data.reason}"
    return "passed"


def build(verdicts: Verdicts, row: Postback, pb: dict, *, new: bool) -> dict[str, dict]:
    """The trail of a settled postback. ``new``: it made a new conversion (else updated one)."""
    trail: dict[str, dict] = {}

    updated = None if new else row.conversion

    def said(name: str, ok: bool, detail: str = "") -> None:
        trail[name] = {"ok": ok, "detail": detail or _passed(name, verdicts, pb, updated)}

    if row.state == Postback.State.FAILED:
        return trail
    for name in REJECT_ORDER:
        if row.state == Postback.State.REJECTED and verdicts[name].reject == row.error:
            said(name, False, row.error)
            return trail
        said(name, True)
    if row.state == Postback.State.REJECTED:
        # Not a chord check's verdict: the callback found the conversion under its locks.
        said("duplicate", False, row.error)
        return trail
    said("duplicate", True)
    conversion = row.conversion
    if not new or conversion is None:
        return trail
    reason = conversion.reason
    for name in DECLINE_ORDER:
        if (
            reason
            and conversion.status == Conversion.Status.DECLINED
            and verdicts[name].decline == reason
        ):
            said(name, False, reason)
            return trail
        if name != "params":
            said(name, True)
    if reason == Decline.CAP_REACHED:
        said("cap", False, reason)
    else:
        said("cap", True)
    return trail
