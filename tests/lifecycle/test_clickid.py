"""A clickid names its UTC day and stays 24 lowercase hex, unguessable."""

import re
from datetime import UTC, datetime

from conversions.models import CLICKID_PATTERN, clickid_day, day_number, new_clickid


def test_a_clickid_is_24_lowercase_hex_with_its_day_in_front():
    at = datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
    clickid = new_clickid(at)
    assert re.fullmatch(CLICKID_PATTERN, clickid)
    assert clickid_day(clickid) == day_number(at) == (at - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert clickid_day(new_clickid(datetime(2026, 3, 2, tzinfo=UTC))) == day_number(at) + 1


def test_the_rest_is_random_and_the_default_is_now():
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    many = {new_clickid(at) for _ in range(1000)}
    assert len(many) == 1000
    assert len({c[4:] for c in many}) == 1000
    assert clickid_day(new_clickid()) == day_number(datetime.now(UTC))
