"""Which URLs the server itself may fetch, and a streamed GET that follows that rule on every hop.

The hosts of ``WAVESPEED_BASE_URL`` and ``VTRIX_BASE_URL`` are the operator's configuration and
are trusted as configured, even on loopback (the emulator and the tests live there). Any other URL
must be ``https`` and its host must resolve only to global unicast addresses: nothing private,
loopback, link-local, shared, reserved or multicast. The request is then sent to the address that
was checked (the TLS name and ``Host`` stay the original host), so a second DNS answer cannot
swap in a private address. Redirects are followed by hand, each hop checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from server.errors import WanMcpError
from server.providers.http import safe_url
from server.settings import Settings

MAX_REDIRECTS = 5

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
Origin = tuple[str, str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(WanMcpError):
    """A download was refused or failed. ``retryable``: trying again later may work."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class UnsafeURL(FetchError):
    """The URL is not one the server may fetch (scheme, or where its host resolves)."""


async def system_resolver(host: str, port: int) -> Sequence[str]:
    """Every address ``host`` resolves to, via the system resolver (off the event loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def origin_of(url: httpx.URL) -> Origin:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host.lower(), port)


def is_public(address: IPAddress) -> bool:
    """True for a global unicast address (an IPv4-mapped IPv6 address is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send a request for a checked URL."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict[str, str])
    extensions: dict[str, Any] = field(default_factory=dict[str, Any])


class UrlPolicy:
    """The rule for URLs this server fetches itself (results, upload tickets)."""

    def __init__(self, trusted: Iterable[str], resolver: Resolver | None = None) -> None:
        self._trusted = frozenset(origin_of(httpx.URL(url)) for url in trusted)
        self._resolve = resolver or system_resolver

    @classmethod
    def from_settings(cls, settings: Settings, resolver: Resolver | None = None) -> UrlPolicy:
        """Trust the two configured provider API roots."""
        return cls((settings.wavespeed_base_url, settings.vtrix_base_url), resolver)

    async def check(self, url: httpx.URL | str) -> Target:
        """Where a request for ``url`` may go.

        Raises:
            UnsafeURL: not a trusted origin, and not ``https`` to public addresses only.
            FetchError: the host could not be resolved (retryable).
        """
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise UnsafeURL("The video URL could not be parsed.") from exc
        shown = safe_url(str(parsed))
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise UnsafeURL(f"Refused to fetch {shown}: only http(s) URLs with a host are fetched.")
        if origin_of(parsed) in self._trusted:
            return Target(parsed)
        if parsed.scheme != "https":
            raise UnsafeURL(f"Refused to fetch {shown}: a URL outside the provider's own host must be https.")
        host = parsed.host
        try:
            addresses = [ipaddress.ip_address(a) for a in await self._resolve(host, origin_of(parsed)[2])]
        except OSError as exc:
            raise FetchError(f"Could not resolve {host} ({exc}).", retryable=True) from exc
        except ValueError as exc:
            raise UnsafeURL(f"Refused to fetch {shown}: its host resolved to something unreadable.") from exc
        if not addresses:
            raise FetchError(f"Could not resolve {host}.", retryable=True)
        for address in addresses:
            if not is_public(address):
                raise UnsafeURL(
                    f"Refused to fetch {shown}: {host} resolves to {address}, which is not a public address."
                )
        pinned = addresses[0]
        return Target(
            parsed.copy_with(host=str(pinned)),
            headers={"Host": parsed.netloc.decode("ascii")},
            extensions={"sni_hostname": host},
        )


@asynccontextmanager
async def open_checked(
    client: httpx.AsyncClient,
    policy: UrlPolicy,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncGenerator[httpx.Response]:
    """A streamed GET of ``url`` whose every hop passes ``policy``; the response is not a redirect.

    Raises:
        UnsafeURL: a hop was refused; FetchError: too many redirects.
        httpx.TransportError: the connection failed.
    """
    current = httpx.URL(url)
    for _ in range(max_redirects + 1):
        target = await policy.check(current)
        request = client.build_request(
            "GET", target.url, headers={**(headers or {}), **target.headers}, extensions=target.extensions
        )
        response = await client.send(request, stream=True, follow_redirects=False)
        if response.is_redirect:
            await response.aclose()
            current = current.join(response.headers["location"])
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    raise FetchError(f"Gave up after {max_redirects} redirects from {safe_url(url)}.")
