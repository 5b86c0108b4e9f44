"""Fetching remote audio (`--allow-remote-audio`) without turning the server into a proxy or a scanner.

The host is resolved once; every address must be public (no loopback, private, link-local,
multicast, reserved or unspecified address), and the connection goes to the address that was
checked, with the original Host header and TLS name, so a second DNS answer cannot rebind it.
Redirects are not followed, the environment's proxies are ignored, the whole fetch has one
deadline, and every failure reads the same, so the answers say nothing about what is behind the URL.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import httpx

from assistant.errors import MurmurScopeError

Resolver = Callable[[str, int], list[str]]
READ_TIMEOUT_S = 5.0  # one read; the deadline bounds them all


class RemoteAudioError(MurmurScopeError):
    pass


@dataclass(frozen=True)
class RemoteAudio:
    data: bytes
    suffix: str


def failure(max_bytes: int) -> RemoteAudioError:
    return RemoteAudioError(f"the audio URL could not be fetched (it must be a public http(s) URL that answers "
                            f"200 with at most {max_bytes / 2**20:g} MB within the time limit)")


def resolve(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def fetch_audio(url: str, max_bytes: int, deadline_s: float, resolver: Resolver = resolve,
                allow: Callable[[str], bool] = is_public) -> RemoteAudio:
    end = time.monotonic() + deadline_s
    try:
        return _fetch(url, max_bytes, end, resolver, allow)
    except (RemoteAudioError, httpx.HTTPError, OSError, ValueError, UnicodeError):
        raise failure(max_bytes) from None


def _fetch(url: str, max_bytes: int, end: float, resolver: Resolver, allow: Callable[[str], bool]) -> RemoteAudio:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise failure(max_bytes)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolver(parts.hostname, port)
    if not addresses or not all(allow(a) for a in addresses):
        raise failure(max_bytes)
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    target = parts._replace(netloc=f"{literal}:{port}").geturl()
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    timeout = httpx.Timeout(min(READ_TIMEOUT_S, max(0.01, end - time.monotonic())))
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout) as client:
        request = client.build_request("GET", target, headers={"Host": host_header},
                                       extensions={"sni_hostname": parts.hostname})
        response = client.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise failure(max_bytes)
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes or time.monotonic() > end:
                    raise failure(max_bytes)
        finally:
            response.close()
    return RemoteAudio(bytes(data), PurePosixPath(parts.path).suffix.lower() or ".wav")
