"""A postback's check trail and timeline, as the panel and the API show them."""

from datetime import datetime

from django.utils.html import format_html, format_html_join

from conversions.models import Postback

# DESIGN.md's check names, in the order they decide a postback: the rejections
# first, then the declines, then what settles a new conversion.
CHECK_ORDER = (
    "params",
    "click",
    "offer",
    "secure",
    "ip",
    "duplicate",
    "partner",
    "lifespan",
    "payout",
    "currency",
    "rules",
    "cap",
)


def ordered_checks(checks: dict) -> list[tuple[str, dict]]:
    """The trail in deciding order (a JSON object's own order is not kept by every database)."""
    rank = {name: i for i, name in enumerate(CHECK_ORDER)}
    return sorted((checks or {}).items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def _ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def timeline(postback: Postback) -> dict:
    """When the postback was received, dispatched and processed, and how long each step took."""
    return {
        "received_at": postback.received_at,
        "dispatched_at": postback.dispatched_at,
        "processed_at": postback.processed_at,
        "queued_ms": _ms(postback.received_at, postback.dispatched_at),
        "checked_ms": _ms(postback.dispatched_at, postback.processed_at),
        "total_ms": _ms(postback.received_at, postback.processed_at),
    }


def duration(ms: int | None) -> str:
    """1234 ms as "1.234 s", 56 as "56 ms", an hour and more in minutes."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 3_600_000:
        return f"{ms / 1000:.3f} s"
    return f"{ms / 60_000:.0f} min"


def trail_html(checks: dict) -> str:
    """The trail as a readable list: ✓ or ✗, the check, what it said."""
    if not checks:
        return format_html('<p class="trail-empty">{}</p>', "No checks recorded yet.")
    return format_html(
        '<ul class="check-trail" style="list-style:none;margin:0;padding:0">{}</ul>',
        format_html_join(
            "",
            '<li class="check {}" data-check="{}" style="padding:2px 0;margin:0">'
            '<span style="color:{};font-weight:bold;display:inline-block;width:1.4em">{}</span>'
            "<strong>{}</strong>{}{}</li>",
            (
                (
                    "check-ok" if verdict.get("ok") else "check-failed",
                    name,
                    "#2e7d32" if verdict.get("ok") else "#c62828",
                    "✓" if verdict.get("ok") else "✗",
                    name,
                    ": " if verdict.get("detail") else "",
                    verdict.get("detail", ""),
                )
                for name, verdict in ordered_checks(checks)
            ),
        ),
    )
