"""Helpers shared by the bench cases and the fault test: postback urls, waiting, statistics."""

import statistics
import time
import uuid

FINAL = ("accepted", "rejected", "failed")


def postback_urls(base_url: str, clickids: list[str], count: int, tag: str) -> list[str]:
    """``count`` postbacks with unique action ids ``<tag>-<n>``, spread over ``clickids``."""
    return [
        f"{base_url}/postback?clickid={clickids[i % len(clickids)]}&action_id={tag}-{i}&sum=1.5"
        for i in range(count)
    ]


def new_tag(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def median_spread(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def unfinished() -> int:
    from conversions.models import Postback

    return Postback.objects.exclude(state__in=FINAL).count()


def wait_drained(expected: int, timeout: float, poll: float = 0.2) -> float | None:
    """Seconds until ``expected`` postbacks are final and nothing waits; None on timeout."""
    from conversions.models import Postback

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        final = Postback.objects.filter(state__in=FINAL).count()
        if final >= expected and unfinished() == 0:
            return time.monotonic() - started
        time.sleep(poll)
    return None
