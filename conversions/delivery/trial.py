"""A partner postback's test call: one request through the address guard, recorded nowhere.

A manager checking a partner's URL sees what would be sent and what the
partner answered, without a conversion event: no delivery row is written and
the postback's failure count does not move.
"""

from django.conf import settings
from django.utils import timezone

from conversions.models import Conversion
from offers.macros import SUBS, fill
from partners.models import PartnerPostback

from . import tracker_call
from .deliveries import STATUS_CODES, STORED_RESPONSE_CHARS, macro_values

SAMPLE_CLICKID = "0123456789abcdef01234567"


def sample_values(pp: PartnerPostback) -> dict[str, object]:
    """Macro values that look like a real conversion of this postback's scope."""
    now = timezone.now()
    status = pp.statuses[0] if pp.statuses else Conversion.Status.APPROVED
    values = {
        "clickid": SAMPLE_CLICKID,
        "conversion_id": 0,
        "transactionid": "test",
        "offer_id": pp.offer_id or 0,
        "pid": pp.partner_id,
        "goal": pp.goal.value if pp.goal_id else "1",
        "status": STATUS_CODES[status],
        "sum": "0.00",
        "revenue": "0.00",
        "currency": pp.offer.currency if pp.offer_id else "USD",
        "ip": "203.0.113.1",
        "date": timezone.localtime(now).date().isoformat(),
        "timestamp": int(now.timestamp()),
    }
    values.update((sub, f"test-{sub}") for sub in SUBS)
    return values


def send_test(pp: PartnerPostback, conversion: Conversion | None = None) -> dict:
    """Send ``pp`` once, filled from ``conversion`` or sample values; what was sent and answered."""
    values = macro_values(conversion) if conversion is not None else sample_values(pp)
    url = fill(pp.url, values)
    result = tracker_call.call(
        pp.method,
        url,
        timeout=settings.PARTNER_POSTBACK_TIMEOUT,
        allow_private=settings.PARTNER_POSTBACK_ALLOW_PRIVATE,
        allowed_targets=settings.PARTNER_POSTBACK_ALLOWED_TARGETS,
    )
    return {
        "url": url,
        "method": pp.method,
        "status_code": result.status_code,
        "response": result.body.decode("utf-8", errors="replace")[:STORED_RESPONSE_CHARS],
        "error": result.error,
        "duration_ms": result.duration_ms,
    }
