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
