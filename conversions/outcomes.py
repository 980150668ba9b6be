"""Every outcome string of a postback and a conversion (DESIGN.md, "Outcomes"), once.

A rejected postback's ``error`` is a :class:`Rejection`; a declined (or,
over a pending cap, pending) conversion's ``reason`` is a :class:`Decline`.
Both are ``str`` enums: stored, compared and sent as the exact strings.
The order of each is DESIGN.md's, the order the admin's filters list them in
(:data:`DECLINES_GIVEN`: the reasons this version gives).
"""

from enum import StrEnum


class Rejection(StrEnum):
    MISSING_CLICKID = "Missing mandatory parameter clickid"
    INVALID_CLICKID = "Click_id: invalid format"
    INVALID_STATUS = "Invalid parameter status"
    INVALID_SUM = "Invalid parameter sum"
    CLICK_NOT_FOUND = "Click not found"
    OFFER_DISABLED = "Offer disabled"
    ACCESS_DENIED = "Access denied"
    IP_DENIED = "Current IP-address is denied"
    STATUS_NOT_PENDING = "Conversion status is not pending"
    CONVERSION_EXISTS = "Conversion exists"


class Decline(StrEnum):
    PARTNER_DISABLED = "Partner is disabled"
    PARTNER_BANNED = "Partner is banned"
    CLICK_EXPIRED = "Click session lifespan is expired"
    CLICK_TOO_YOUNG = "Min click session lifespan is not reached"
    PAYMENTS_NOT_FOUND = "Payments not found"
    EXCHANGE_RATE_NOT_FOUND = "Exchange rate not found"
    BY_ADVERTISER = "Declined via advertiser's postback"
    CAP_REACHED = "Cap is reached"
    BY_MANAGER = "Rejected by a manager"


# The decline reasons this version gives (the admin's reason filter offers these).
DECLINES_GIVEN = tuple(
    reason for reason in Decline if reason is not Decline.EXCHANGE_RATE_NOT_FOUND
)
