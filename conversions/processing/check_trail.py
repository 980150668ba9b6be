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

from .checks import DECLINE_ORDER, REJECT_ORDER
from .statuses import CAP_REACHED

Verdicts = dict[str, dict]


def _reject(verdict: dict) -> str:
    return verdict.get("reject", "")


def _decline(verdict: dict) -> str:
    return verdict.get("decline", "")


def _data(verdict: dict | None) -> dict:
    return (verdict or {}).get("data") or {}


def _money(value) -> str:
    """3.5000 as 3.50, 0.0125 as 0.0125."""
    text = f"{Decimal(str(value or 0)).normalize():f}"
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


def _passed(name: str, verdicts: Verdicts, pb: dict, conversion: Conversion | None) -> str:
    """What a check found, for a check that passed (``conversion``: the one it updated)."""
    data = _data(verdicts.get(name))
    click = _data(verdicts.get("click"))
    if name == "params":
        sent = f"status {data.get('status') or '(none sent)'}, sum {_money(data.get('sum'))}"
        return sent + (f" {data['currency']}" if data.get("currency") else "")
    if name == "click":
        return f"offer {click.get('offer_id')}, partner {click.get('partner_id')}"
    if name == "offer":
        return (
            f"running; default status {data.get('default_status')}, "
            f"hold {data.get('hold_period', 0)} h"
        )
    if name == "secure":
        return "code accepted (or none asked for)"
    if name == "ip":
        return f"{pb.get('ip') or 'no address'} allowed"
    if name == "partner":
        return "partner active"
    if name == "lifespan" and (created := click.get("created_at")):
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        age = datetime.fromisoformat(pb["received_at"]) - created
        return f"click {_age(max(age, timedelta(0)).total_seconds())} old"
    if name == "payout":
        revenue, payout = _money(data.get("revenue")), _money(data.get("payout"))
        return f"goal {data.get('goal')}: revenue {revenue}, payout {payout}"
    if name == "duplicate":
        if conversion is not None:
            return f"updates pending conversion #{conversion.pk}"
        return "no conversion yet for this click and goal"
    if name == "cap":
        return "not reached"
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
        if row.state == Postback.State.REJECTED and _reject(verdicts[name]) == row.error:
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
            and _decline(verdicts[name]) == reason
        ):
            said(name, False, reason)
            return trail
        if name != "params":
            said(name, True)
    if reason == CAP_REACHED:
        said("cap", False, reason)
    else:
        said("cap", True)
    return trail
