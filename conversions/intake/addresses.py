import functools
import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def valid_ip(value: str | None) -> str | None:
    """The address normalised, or None; an IPv6 zone (``fe80::1%eth0``) is dropped.

    The zone only means something on the sender's host, and PostgreSQL's inet
    refuses it.
    """
    address = _address(value)
    return None if address is None else str(address)


def _address(value: str | None) -> IPAddress | None:
    try:
        address = ipaddress.ip_address((value or "").strip())
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        address = ipaddress.ip_address(str(address).split("%", 1)[0])
    return address


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the nearest X-Forwarded-For hop when the peer is a trusted proxy.

    Steps: each proxy appends the address it was connected from, so only the
    right end of the header is written by proxies we trust; what is left of
    it the client wrote. Walk the hops from the right, skipping trusted
    proxies; the first hop that is not one is the client. The whole header
    is walked (no hop limit, which a client could pad past), lazily: the walk
    stops at that first untrusted hop, and a hop repeated is judged once. The
    header's size is bounded by the web server and the proxies in front.
    """
    remote = _address(request.META.get("REMOTE_ADDR"))
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if remote is None or not (forwarded and settings.TRUSTED_PROXIES):
        return None if remote is None else str(remote)
    trusted = _networks(tuple(settings.TRUSTED_PROXIES))
    if not _in(remote, trusted):
        return str(remote)
    proxies = set()
    for hop in _hops_from_the_right(forwarded):
        if hop in proxies:
            continue
        address = _address(hop)
        if address is None:
            break
        if not _in(address, trusted):
            return str(address)
        proxies.add(hop)
    return str(remote)


def _hops_from_the_right(header: str) -> Iterator[str]:
    """The comma-separated hops of ``header``, last first, without splitting all of it."""
    end = len(header)
    while end >= 0:
        start = header.rfind(",", 0, end)
        yield header[start + 1 : end]
        end = start


@functools.lru_cache(maxsize=8)
def _networks(items: tuple[str, ...]) -> tuple:
    """TRUSTED_PROXIES parsed once (entries that are no address or network are ignored)."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _in(address: IPAddress, networks: tuple) -> bool:
    return any(address in network for network in networks)
