"""The local lab: a Debian 12 VM under QEMU that stands in for a Compute Engine VM.

Public API (documented in tests/lab/README.md):
    LabVM, LabGitRemote, LabError, LabSSHError, make_blank_disk, grow_disk, ensure_image
"""

from tests.lab.disks import grow_disk, make_blank_disk, parse_size
from tests.lab.errors import LabError
from tests.lab.gitremote import LabGitRemote
from tests.lab.image import LabImage, ensure_image
from tests.lab.vm import DISK_NAME, LabSSHError, LabVM

__all__ = [
    "DISK_NAME",
    "LabError",
    "LabGitRemote",
    "LabImage",
    "LabSSHError",
    "LabVM",
    "ensure_image",
    "grow_disk",
    "make_blank_disk",
    "parse_size",
]
