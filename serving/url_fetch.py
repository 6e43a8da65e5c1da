"""Fetching the image behind ``{"url": ...}`` without becoming a proxy into the network.

Anyone who can call the endpoint chooses the URL, so each hop is checked:

1. only ``http`` and ``https``;
2. the host is resolved once, within the connect timeout, and **every** address
   must be public (not loopback, private, link-local, CGNAT, multicast,
   reserved, unspecified, and so not the cloud metadata service at
   169.254.169.254 / fd00:ec2::254). An IPv6 address that embeds an IPv4 one is
   judged by that IPv4 address (all of them for Teredo's server and client):
   IPv4-mapped ``::ffff:0:0/96``, IPv4-translated ``::ffff:0:0:0/96``,
   IPv4-compatible ``::/96``, NAT64 ``64:ff9b::/96`` (the last 32 bits), 6to4
   ``2002::/16`` and Teredo ``2001::/32``; the local-use NAT64 prefix
   ``64:ff9b:1::/48`` is refused outright, as where its IPv4 sits depends on
   the local network. No public image host needs these forms, so in doubt they
   are refused. Refusals name the host, never the address it resolved to;
3. the connection goes to the address that was checked (DNS pinning, so a
   second lookup cannot rebind the name to an internal address), with the
   original name for TLS verification and the Host header;
4. redirects are followed by hand, at most ``MAX_REDIRECTS``, each checked again;
5. connect and read timeouts and a total deadline: each read's timeout is
   shrunk to the time left and the deadline is checked between reads, and at
   the deadline a watchdog shuts the socket, so a server dripping its body,
   status line or headers cannot hold the worker; a download size limit, and an
   ``image/*`` content type.

``DOGOPS_FETCH_ALLOW`` exempts named hosts (``files``, ``files:8000``) or
networks (``127.0.0.1/32``) from step 2, for a local development file server.
"""

import concurrent.futures
import dataclasses
import http.client
import ipaddress
import socket
import threading
import time
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3

from .errors import FetchError

MAX_REDIRECTS = 3
METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
LAST_32_BITS_IPV4 = [ipaddress.ip_network(net) for net in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")]
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="url-fetch-resolve")


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """Limits and exemptions of a fetch."""

    allow: tuple[str, ...] = ()
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0  # a deadline for the whole fetch, redirects included
    max_bytes: int = 6 * 1024 * 1024


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address carries (module docstring, step 2); empty if none."""
    if address.ipv4_mapped:
        return (address.ipv4_mapped,)
    if address.sixtofour:
        return (address.sixtofour,)
    if address.teredo:
        return address.teredo
    if any(address in network for network in LAST_32_BITS_IPV4):
        return (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF),)
    return ()


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a public unicast address a server may fetch from."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL:
            return False
        if embedded := _embedded_ipv4(address):
            return all(map(is_public, embedded))
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


def resolve_checked(host: str, port: int, allow: tuple[str, ...] = (), timeout: float = 3.0) -> str:
    """Resolve ``host`` within ``timeout`` s and return one address to connect to, or raise FetchError
    if the lookup fails or any address is off-limits."""
    try:
        infos = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(timeout)
    except concurrent.futures.TimeoutError:
        raise FetchError(f"could not resolve host {host!r} within {timeout:g} s") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"cannot resolve host {host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not is_public(address) and not _allowed(host, port, address, allow):
            raise FetchError(f"refusing to fetch from host {host!r}: it resolves to a non-public address")
    return str(addresses[0])


def _time_left(deadline: float, policy: FetchPolicy) -> float:
    """Seconds left before ``deadline``, or FetchError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"the image download took longer than {policy.total_timeout:g} s")
    return left


def _connection(scheme: str, host: str, address: str, port: int, timeout: float) -> urllib3.connection.HTTPConnection:
    if scheme == "https":
        return urllib3.connection.HTTPSConnection(address, port, timeout=timeout, server_hostname=host,
                                                  assert_hostname=host, cert_reqs="CERT_REQUIRED",
                                                  ca_certs=certifi.where())
    return urllib3.connection.HTTPConnection(address, port, timeout=timeout)


def fetch_image(url: str, policy: FetchPolicy = FetchPolicy()) -> bytes:
    """Download the image at ``url`` under ``policy``; every refusal is a FetchError."""
    if not isinstance(url, str) or len(url) > 2048:
        raise FetchError("url must be a string of at most 2048 characters")
    deadline = time.monotonic() + policy.total_timeout
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
        address = resolve_checked(host, port, policy.allow, min(policy.connect_timeout, _time_left(deadline, policy)))
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = _connection(parts.scheme, host, address, port,
                                 min(policy.connect_timeout, _time_left(deadline, policy)))
        watchdog = None
        try:
            connection.connect()
            sock = connection.sock  # kept: http.client drops it from the connection when the server closes
            watchdog = threading.Timer(_time_left(deadline, policy), _cut, (sock,))
            watchdog.start()
            connection.request("GET", path, headers={"Host": host_header, "Accept": "image/*"},
                               preload_content=False, decode_content=False)
            connection.timeout = min(policy.read_timeout, _time_left(deadline, policy))
            response = connection.getresponse()
            try:
                if response.status in (301, 302, 303, 307, 308):
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(f"redirect without a Location from {host}")
                    url = urljoin(url, location)
                    continue
                return _read_image(response, sock, host, policy, deadline)
            finally:
                response.close()
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            _time_left(deadline, policy)  # a read cut short by the deadline says so
            raise FetchError(f"fetching from {host} failed: {type(exc).__name__}") from None
        finally:
            if watchdog:
                watchdog.cancel()
            connection.close()
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _cut(sock: socket.socket) -> None:
    """At the deadline: end whatever read is under way (a dripped status line or header included)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass


def _read_image(response, sock: socket.socket, host: str, policy: FetchPolicy, deadline: float) -> bytes:
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
    while not response.closed:  # closed at the end of the body, and then so is the socket
        sock.settimeout(min(policy.read_timeout, _time_left(deadline, policy)))
        chunk = response.read1(64 * 1024)  # one receive, unlike read(), which waits for all 64 KiB
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"the image is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
