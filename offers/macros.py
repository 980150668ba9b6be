"""{macro} substitution in offer landing URLs and partner postback URLs."""

import re
from collections.abc import Mapping
from urllib.parse import quote

from django.core.exceptions import ValidationError

MACRO_RE = re.compile(r"\{(\w+)\}")
SUBS = tuple(f"sub{i}" for i in range(1, 9))
CLICK_MACROS = frozenset({"clickid", "offer_id", "pid", *SUBS})
PARTNER_POSTBACK_MACROS = frozenset(
    {
        "clickid",
        "conversion_id",
        "transactionid",
        "offer_id",
        "pid",
        "goal",
        "status",
        "sum",
        "revenue",
        "currency",
        *SUBS,
        "ip",
        "date",
        "timestamp",
        "advertiser_status",
        "original_sum",
        "original_currency",
        "ctit",
    }
)


def fill(template: str, values: Mapping[str, object]) -> str:
    """Replace each ``{name}`` found in ``values`` with its URL-encoded value."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        value = values[name]
        return quote("" if value is None else str(value), safe="")

    return MACRO_RE.sub(replace, template)


def unknown_macros(template: str, known: frozenset[str]) -> list[str]:
    return sorted({name for name in MACRO_RE.findall(template) if name not in known})


def validate_macros(template: str, known: frozenset[str]) -> None:
    if unknown := unknown_macros(template, known):
        raise ValidationError(
            "Unknown macro(s): %(names)s. Known: %(known)s.",
            code="unknown_macro",
            params={
                "names": ", ".join(f"{{{n}}}" for n in unknown),
                "known": " ".join(f"{{{n}}}" for n in sorted(known)),
            },
        )


def validate_offer_url(value: str) -> None:
    validate_macros(value, CLICK_MACROS)
