"""Host-side helpers for the raw disk images tests attach as the VM's persistent disk."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from tests.lab.errors import LabError

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(size: str | int) -> int:
    """Bytes from '2G', '512M', '10737418240' (binary units, like qemu-img and truncate)."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([BKMGT]?)(?:i?B)?\s*", size.upper())
        if not match:
            raise LabError(f"bad disk size {size!r}: use a number with K, M, G or T (e.g. 2G)")
        value = int(match.group(1)) * _UNITS[match.group(2)]
    if value <= 0:
        raise LabError(f"bad disk size {size!r}: must be positive")
    return value


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise LabError(f"disk image directory does not exist: {path.parent}")


def make_blank_disk(path: Path, size: str | int = "2G", *, overwrite: bool = False) -> Path:
    """Create a sparse, all-zero raw image: what a freshly created persistent disk looks like."""
    path = Path(path)
    _check_parent(path)
    if path.exists() and not overwrite:
        raise LabError(f"disk image already exists: {path} (pass overwrite=True to replace it)")
    nbytes = parse_size(size)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.truncate(nbytes)
    tmp.replace(path)
    return path


def grow_disk(path: Path, new_size: str | int) -> int:
    """Grow a raw image in place (a `gcloud compute disks resize`); never shrinks.

    The guest sees the new size after `LabVM.reboot()` or a new `boot()`: QEMU reads the size
    when it opens the image, and reboot() restarts QEMU.
    """
    path = Path(path)
    if not path.is_file():
        raise LabError(f"disk image does not exist: {path}")
    nbytes = parse_size(new_size)
    current = path.stat().st_size
    if nbytes < current:
        raise LabError(f"refusing to shrink {path} from {current} to {nbytes} bytes")
    os.truncate(path, nbytes)
    return nbytes


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A port that is free now (the caller retries if someone takes it before QEMU binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port(port: int | None, what: str) -> None:
    """One clear line for a port the caller asked for but cannot have."""
    if port is None:
        return
    if not 0 < port < 65536:
        raise LabError(f"{what} port {port} is not a valid TCP port")
    if port_in_use(port):
        raise LabError(f"{what} port {port} on 127.0.0.1 is already in use")
