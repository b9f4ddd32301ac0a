# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""The one host:port parser, for the image's entrypoint and preflight and for the host side (stdlib only).

Part of fleetbake.worker, which is copied into every Linux worker image.
"""

from __future__ import annotations

import ipaddress
import re

# Underscores too: Docker and compose service names have them.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def parse_hostport(value: str, default_port: int | None) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`; ValueError with the reason otherwise."""
    raw = value.strip()
    if not raw:
        raise ValueError("is empty: expected host or host:port")
    if raw.startswith("["):
        match = re.fullmatch(r"\[([^\[\]]*)\](?::(.*))?", raw)
        if not match:
            raise ValueError(f"{value!r} is not [IPv6 address]:port")
        host, port = match.group(1), match.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    else:
        if raw.count(":") > 1:
            raise ValueError(f"{value!r}: an IPv6 address needs brackets, as in [2001:db8::1]:9020")
        host, sep, port = raw.partition(":")
        if sep and not port:
            raise ValueError(f"{value!r} has an empty port")
        port = port if sep else None
        if not host:
            raise ValueError(f"{value!r} has an empty host")
        _check_host(value, host)
    if port is None:
        return host, default_port
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: port {port!r} is not a number from 1 to 65535")
    return host, int(port)


def _check_host(value: str, host: str) -> None:
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        raise ValueError(f"{value!r}: {host!r} is not an IPv4 address")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{value!r}: {host!r} is not a host name")
