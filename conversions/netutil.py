import ipaddress

from django.conf import settings
from django.http import HttpRequest

from offers.validators import ip_allowed


def valid_ip(value: str | None) -> str | None:
    """The address normalised, or None; an IPv6 zone (``fe80::1%eth0``) is dropped.

    The zone only means something on the sender's host, and PostgreSQL's inet
    refuses it.
    """
    try:
        address = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        address = ipaddress.ip_address(str(address).split("%", 1)[0])
    return str(address)


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the nearest X-Forwarded-For hop when the peer is a trusted proxy.

    Hops are read right to left, skipping trusted proxies, so a client cannot
    choose its own address by sending a forged header.
    """
    remote = valid_ip(request.META.get("REMOTE_ADDR"))
    trusted = settings.TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if not (trusted and forwarded and remote and ip_allowed(remote, trusted)):
        return remote
    for hop in reversed(forwarded.split(",")[:32]):
        hop_ip = valid_ip(hop)
        if hop_ip is None:
            break
        if not ip_allowed(hop_ip, trusted):
            return hop_ip
    return remote
