import ipaddress
import re

from django.core.exceptions import ValidationError

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")


def validate_currency(value: str) -> None:
    if not CURRENCY_RE.match(value or ""):
        raise ValidationError("Enter an ISO 4217 currency code, e.g. USD.", code="currency")


def validate_country(value: str) -> None:
    if value and not COUNTRY_RE.match(value):
        raise ValidationError("Enter an ISO 3166 alpha-2 country code, e.g. US.", code="country")


def validate_ip_list(value) -> None:
    """A list of IP addresses or CIDR networks (empty = any)."""
    if not isinstance(value, list):
        raise ValidationError("Enter a list of IP addresses or CIDR networks.", code="ip_list")
    for item in value:
        try:
            ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            raise ValidationError(
                "%(item)s is not an IP address or CIDR network.",
                code="ip_list",
                params={"item": item},
            ) from None


def ip_allowed(ip: str | None, networks: list[str]) -> bool:
    """True when ``networks`` is empty (any) or ``ip`` falls in one of them."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    for item in networks:
        try:
            if address in ipaddress.ip_network(str(item).strip(), strict=False):
                return True
        except ValueError:
            continue
    return False


# A conversion's statuses (conversions.models.Conversion.Status; offers builds on nothing).
STATUS_WORDS = ("approved", "pending", "declined", "hold")
# The postback's numeric status codes: they always mean the same, whatever a map says.
STATUS_CODES = ("1", "2", "3", "5")
STATUS_WORD_LENGTH = 64


def validate_status_map(value) -> None:
    """An object of the advertiser's status words to approved, pending, declined or hold.

    Words are matched case-insensitively, so two that differ only in case are
    one word twice; the numeric codes 1/2/3/5 always work and cannot be mapped.
    """
    if not isinstance(value, dict):
        raise ValidationError(
            'Enter an object of status words, e.g. {"sale": "approved"}.', code="status_map"
        )
    seen = set()
    for word, status in value.items():
        key = word.strip().casefold() if isinstance(word, str) else ""
        if not key or len(word) > STATUS_WORD_LENGTH:
            raise ValidationError(
                "%(word)r is not a status word (1 to %(max)s characters).",
                code="status_map",
                params={"word": word, "max": STATUS_WORD_LENGTH},
            )
        if key in STATUS_CODES:
            raise ValidationError(
                "%(word)s is a status code that always means the same; map words only.",
                code="status_map",
                params={"word": word},
            )
        if key in seen:
            raise ValidationError(
                "%(word)s is given twice (words match case-insensitively).",
                code="status_map",
                params={"word": word},
            )
        seen.add(key)
        if status not in STATUS_WORDS:
            raise ValidationError(
                "%(word)s maps to %(status)r; a word maps to one of %(known)s.",
                code="status_map",
                params={"word": word, "status": status, "known": ", ".join(STATUS_WORDS)},
            )


def validate_positive_rate(value) -> None:
    if value is None or not value.is_finite() or value <= 0:
        raise ValidationError("A rate is above 0.", code="rate")
