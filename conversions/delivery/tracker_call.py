"""One guarded HTTP call to a partner's tracker.

A partner postback URL is outside input that our servers call, so the call
is fenced: http/https only; the host is resolved once, every address it
resolves to is checked, and the connection goes to the checked address (no
second lookup an attacker's DNS could answer differently); no redirects are
followed; timeouts on connect and read and on the whole call; at most
MAX_RESPONSE_BYTES of the answer are read.
"""

import ipaddress
import socket
import time
from collections.abc import Collection
from dataclasses import dataclass

import httpx

MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "affise-postbacks/1 (+partner postback)"
# Addresses of one host tried in turn when a connection is refused.
MAX_ADDRESSES = 3


@dataclass
class Result:
    """What one call came to. ``retry``: a failure worth trying again later."""

    status_code: int | None = None
    body: bytes = b""
    error: str = ""
    retry: bool = False
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


class Refused(Exception):
    """The URL may not be called at all (scheme, address): never retried."""


class LookupFailed(Exception):
    """The host name did not resolve: retried, DNS may come back."""


NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries, which a relay or gateway would reach.

    6to4 (2002:aabb:ccdd::/48), Teredo (2001::/32: its server and its client,
    the client's bits inverted) and NAT64's well-known prefix (64:ff9b::a.b.c.d).
    """
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    if ip in NAT64_PREFIX:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def blocked_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local (cloud metadata), reserved, multicast, unspecified.

    An IPv6 address that embeds an IPv4 address is judged by that address too:
    the standard library's tables call some of these ranges global (6to4 on
    Python 3.11), and a relay would deliver the call to the IPv4 address.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            # The socket dials the IPv4 address itself.
            return blocked_address(ip.ipv4_mapped)
        if any(blocked_address(inner) for inner in embedded_ipv4(ip)):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        # Shared address space (100.64/10) and the like: not private, not global either.
        or not ip.is_global
    )


def _address_and_port(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def resolve(
    host: str, port: int, allow_private: bool, allowed_targets: Collection[str] = ()
) -> list[str]:
    """Resolve ``host`` and check every address; returns the addresses to connect to.

    ``allowed_targets`` names non-public ``address:port`` pairs that pass all
    the same (PARTNER_POSTBACK_ALLOWED_TARGETS: the app's own address in the
    demo); only that exact address and port, nothing else on the host.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise LookupFailed(f"Cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise LookupFailed(f"Cannot resolve {host}: no address")
    if not allow_private:
        for address in addresses:
            # Scoped IPv6 addresses come back as "fe80::1%eth0".
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if _address_and_port(ip, port) in allowed_targets:
                continue
            if blocked_address(ip):
                raise Refused(f"Refused: {host} resolves to {address}, a non-public address")
    return addresses


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _requests(
    method: str, url: str, allow_private: bool, allowed_targets: Collection[str]
) -> list[tuple[httpx.URL, dict, dict]]:
    """(target URL, headers, request arguments) for each checked address of ``url``'s host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Refused(f"Refused: invalid URL ({exc})") from exc
    if parsed.scheme not in ("http", "https"):
        raise Refused("Refused: only http and https URLs are called")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise Refused("Refused: the URL has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    headers = {
        "Host": parsed.netloc.decode("ascii"),
        "User-Agent": USER_AGENT,
        # Raw bytes only: a compressed answer could inflate past the size cap.
        "Accept-Encoding": "identity",
    }
    kwargs: dict = {}
    if parsed.scheme == "https" and not _is_ip_literal(host):
        kwargs["extensions"] = {"sni_hostname": host}
    if method == "POST":
        # POST sends the URL's query string as the form body.
        kwargs["content"] = parsed.query
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        parsed = parsed.copy_with(query=None)
    # Connect to the addresses just checked; the Host header and the TLS name
    # stay the partner's, so virtual hosting and certificate checks work as usual.
    return [
        (parsed.copy_with(host=address), headers, kwargs)
        for address in resolve(host, port, allow_private, allowed_targets)[:MAX_ADDRESSES]
    ]


def _classify(result: Result, response: httpx.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    if 300 <= code < 400:
        location = response.headers.get("location", "")[:300]
        result.error = f"HTTP {code}: redirect to {location or '(no location)'} not followed"
    else:
        result.error = f"HTTP {code}"
        # 5xx is the partner's trouble and may pass; 4xx is our request and will not.
        result.retry = code >= 500


def _send(client, result, method, target, headers, kwargs, started, timeout) -> None:
    with client.stream(method, target, headers=headers, **kwargs) as response:
        result.status_code = response.status_code
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) >= MAX_RESPONSE_BYTES:
                break
            # The read timeout is per read: a server dripping bytes is cut off here.
            if time.monotonic() - started > 2 * timeout:
                raise httpx.ReadTimeout("response too slow")
        result.body = bytes(body[:MAX_RESPONSE_BYTES])
        _classify(result, response)


def call(
    method: str,
    url: str,
    *,
    timeout: float,
    allow_private: bool,
    allowed_targets: Collection[str] = (),
) -> Result:
    """Make the call and classify it. Never raises for anything the partner's side does."""
    started = time.monotonic()
    result = Result()
    try:
        requests = _requests(method, url, allow_private, allowed_targets)
        limits = httpx.Timeout(timeout, connect=min(timeout, 5.0))
        # trust_env=False: no proxy from the environment between us and the checked address.
        with httpx.Client(timeout=limits, follow_redirects=False, trust_env=False) as client:
            for number, (target, headers, kwargs) in enumerate(requests, 1):
                try:
                    _send(client, result, method, target, headers, kwargs, started, timeout)
                    break
                except httpx.ConnectError:
                    # Nothing was sent: the host's next address may answer (IPv6 vs IPv4).
                    if number == len(requests):
                        raise
    except Refused as exc:
        result.error = str(exc)
    except LookupFailed as exc:
        result.error, result.retry = str(exc), True
    except httpx.TimeoutException as exc:
        result.error, result.retry = f"Timeout: {exc.__class__.__name__} {exc}".strip(), True
    except httpx.TransportError as exc:
        result.error, result.retry = f"{exc.__class__.__name__}: {exc}", True
    except httpx.HTTPError as exc:
        result.error = f"{exc.__class__.__name__}: {exc}"
    result.error = result.error[:512]
    result.duration_ms = int((time.monotonic() - started) * 1000)
    return result
