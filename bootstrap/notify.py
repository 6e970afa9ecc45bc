"""sd_notify for `Type=notify` units.

systemd documents the protocol (one datagram to $NOTIFY_SOCKET) as stable and suggests
reimplementing it rather than linking libsystemd; the PyPI wrappers add nothing and are
unmaintained, so these few lines are ours.
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send e.g. "READY=1" or "STOPPING=1". False when not running under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode())
    return True
