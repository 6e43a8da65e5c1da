"""Fetching the image behind ``{"url": ...}`` without becoming a proxy into the network.

Anyone who can call the endpoint chooses the URL, so each hop is checked:

1. only ``http`` and ``https``;
2. the host is resolved once and **every** address must be public (not
   loopback, private, link-local, CGNAT, multicast, reserved, unspecified,
   and so not the cloud metadata service at 169.254.169.254 / fd00:ec2::254);
   IPv4-mapped IPv6 addresses are judged by their IPv4 address;
3. the connection goes to the address that was checked (DNS pinning, so a
   second lookup cannot rebind the name to an internal address), with the
   original name for TLS verification and the Host header;
4. redirects are followed by hand, at most ``MAX_REDIRECTS``, each checked again;
5. connect, read and total timeouts, a download size limit, and an ``image/*``
   content type.

``DOGOPS_FETCH_ALLOW`` exempts named hosts (``files``, ``files:8000``) or
networks (``127.0.0.1/32``) from step 2, for a local development file server.
"""

import dataclasses
import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from .errors import FetchError

MAX_REDIRECTS = 3
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """Limits and exemptions of a fetch."""

    allow: tuple[str, ...] = ()
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0  # bounds a slow drip of bytes, which per-read timeouts do not
    max_bytes: int = 6 * 1024 * 1024


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address a server may fetch from."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast and address not in METADATA_ADDRESSES


def _allowed(host: str, port: int, address, allow: tuple[str, ...]) -> bool:
    for entry in allow:
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif entry.lower() in (host.lower(), f"{host.lower()}:{port}"):
            return True
    return False


def resolve_checked(host: str, port: int, allow: tuple[str, ...] = ()) -> str:
    """Resolve ``host`` and return one address to connect to, or raise FetchError if any is off-limits."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not is_public(address) and not _allowed(host, port, address, allow):
            raise FetchError(f"refusing to fetch from {host} ({address}): not a public address")
    return str(addresses[0])


def _pool(scheme: str, host: str, address: str, port: int, policy: FetchPolicy) -> urllib3.HTTPConnectionPool:
    timeout = urllib3.Timeout(connect=policy.connect_timeout, read=policy.read_timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def fetch_image(url: str, policy: FetchPolicy = FetchPolicy()) -> bytes:
    """Download the image at ``url`` under ``policy``; every refusal is a FetchError."""
    if not isinstance(url, str) or len(url) > 2048:
        raise FetchError("url must be a string of at most 2048 characters")
    started = time.monotonic()
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http and https URLs can be fetched, not {parts.scheme or 'no scheme'!r}")
        try:
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("url has an invalid port") from None
        if not host:
            raise FetchError("url has no host")
        address = resolve_checked(host, port, policy.allow)
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            with _pool(parts.scheme, host, address, port, policy) as pool:
                response = pool.urlopen("GET", path, headers={"Host": host_header, "Accept": "image/*"},
                                        redirect=False, preload_content=False)
                try:
                    if response.status in (301, 302, 303, 307, 308):
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchError(f"redirect without a Location from {host}")
                        url = urljoin(url, location)
                        continue
                    return _read_image(response, host, policy, started)
                finally:
                    response.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"fetching from {host} failed: {type(exc).__name__}") from None
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _read_image(response, host: str, policy: FetchPolicy, started: float) -> bytes:
    max_bytes = policy.max_bytes
    if response.status != 200:
        raise FetchError(f"{host} answered HTTP {response.status}")
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if not content_type.startswith("image/"):
        raise FetchError(f"{host} sent {content_type or 'no content type'}, not an image")
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"the image is {int(declared)} bytes; the limit is {max_bytes}")
    chunks, size = [], 0
    for chunk in response.stream(64 * 1024):
        size += len(chunk)
        if time.monotonic() - started > policy.total_timeout:
            raise FetchError(f"fetching from {host} took over {policy.total_timeout:g} s")
        if size > max_bytes:
            raise FetchError(f"the image is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
