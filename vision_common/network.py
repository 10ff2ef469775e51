"""Bind-address facts shared by the API server and the app."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True when a server bound to ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
