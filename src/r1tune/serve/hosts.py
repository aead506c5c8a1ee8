"""Host-header checks shared by `r1tune serve` and `r1tune board`, kept free of torch so the board starts fast.

    is_loopback_host(b"localhost:8000")   # True
    is_loopback_host(b"evil.example")     # False: a rebinding page's own name
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: bytes) -> bool:
    """Whether a Host header names a loopback address (localhost, 127.x.x.x, [::1]), with or without a port."""
    try:
        host = host.decode("ascii").lower()
    except UnicodeDecodeError:
        return False
    bracketed = host.startswith("[")
    if bracketed:
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        port = port[1:]
    else:
        name, _, port = host.partition(":")
    if port and not port.isdigit():
        return False
    if name == "localhost" and not bracketed:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback and (address.version == 6) == bracketed
