from offers.macros import PARTNER_POSTBACK_MACROS, validate_macros


def validate_postback_url(value: str) -> None:
    validate_macros(value, PARTNER_POSTBACK_MACROS)
