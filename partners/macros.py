from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from offers.macros import PARTNER_POSTBACK_MACROS, validate_macros


def validate_postback_url(value: str) -> None:
    """Known macros only, and an http or https URL: nothing else is ever called."""
    validate_macros(value, PARTNER_POSTBACK_MACROS)
    if urlsplit(value).scheme.lower() not in ("http", "https"):
        raise ValidationError("Only http and https URLs can be called.", code="scheme")
