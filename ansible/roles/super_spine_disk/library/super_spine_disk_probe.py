#!/usr/bin/python3
"""Ansible module of the super_spine_disk role: wait for the data disk and describe it, read-only.

One module call instead of a dozen command tasks: on a slow VM every module call costs a Python
start, and the role needs all of these facts together to decide whether it may format.
"""

from __future__ import annotations

import json
import os
import stat
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: super_spine_disk_probe
short_description: Wait for a block device and report what is on it (read-only)
description:
  - Waits until O(device) exists, then reports whether it is a block device, every signature
    C(blkid -p) and C(wipefs) find on it (filesystems, partition tables, RAID, LVM), and
    classifies it as C(blank) (nothing at all), C(ours) (ext4 carrying O(label), nothing else)
    or C(foreign) (anything else).
  - Also reports the device and filesystem sizes and what is mounted at O(mount_point).
  - Never writes to the device. Supports check mode.
options:
  device:
    description: The device path (a symlink such as /dev/disk/by-id/google-NAME is followed).
    type: path
    required: true
  timeout:
    description: Seconds to wait for the device to appear.
    type: int
    default: 60
  label:
    description: The ext4 label that marks a filesystem as ours.
    type: str
    required: true
  mount_point:
    description: The mount point to inspect.
    type: path
    required: true
author: super-spine-kit
"""

EXAMPLES = r"""
- name: Wait for the data disk and probe what is on it.
  super_spine_disk_probe:
    device: /dev/disk/by-id/google-super-spine-disk
    label: super-spine
    mount_point: /data/super-spine
  register: disk
"""

RETURN = r"""
exists: {description: The device path exists., type: bool, returned: always}
waited: {description: Seconds spent waiting for the device., type: float, returned: always}
is_block_device: {description: A block device (or a link to one)., type: bool, returned: always}
realpath: {description: The device path with symlinks resolved., type: str, returned: always}
state: {description: "blank, ours or foreign (or empty)", type: str, returned: always}
found: {description: One line per thing found on the device., type: list, returned: always}
blkid: {description: C(blkid -p -o export) as a dict., type: dict, returned: always}
signatures: {description: C(wipefs --json) signatures., type: list, returned: always}
uuid: {description: The filesystem UUID (empty if none)., type: str, returned: always}
device_bytes: {description: Size of the device., type: int, returned: always}
fs_bytes: {description: Size of the ext4 filesystem (0 when not ext4)., type: int, returned: always}
mounted: {description: Something is mounted at mount_point., type: bool, returned: always}
mounted_source: {description: The source of that mount., type: str, returned: always}
mounted_is_device: {description: The device is what is mounted there., type: bool, returned: always}
"""

# blkid exit codes: 0 found something, 2 found nothing, 8 ambivalent (several signatures).
BLKID_FOUND, BLKID_NOTHING, BLKID_AMBIVALENT = 0, 2, 8


def wait_for(path: str, timeout: int) -> float:
    """Poll for the path: udev may still be creating the by-id link after boot or attach."""
    start = time.monotonic()
    while not os.path.exists(path) and time.monotonic() - start < timeout:
        time.sleep(0.5)
    return round(time.monotonic() - start, 1)


def parse_export(text: str) -> dict[str, str]:
    """KEY=VALUE lines of `blkid -o export` as a dict."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def classify(rc: int, probe: dict[str, str], signatures: list[dict[str, Any]], label: str) -> str:
    """blank only when both tools see nothing; ours only when the sole signature is our ext4."""
    types = {str(sig.get("type", "")) for sig in signatures}
    if rc == BLKID_NOTHING and not signatures:
        return "blank"
    if (
        rc == BLKID_FOUND
        and probe.get("TYPE") == "ext4"
        and probe.get("LABEL") == label
        and "PTTYPE" not in probe
        and types == {"ext4"}
    ):
        return "ours"
    return "foreign"


def describe(rc: int, probe: dict[str, str], signatures: list[dict[str, Any]]) -> list[str]:
    """Say what is on the device, for the role's refusal message."""
    found = []
    if "TYPE" in probe:
        found.append(f"filesystem {probe['TYPE']} labelled '{probe.get('LABEL', '')}'")
    if "PTTYPE" in probe:
        found.append(f"partition table {probe['PTTYPE']}")
    if signatures:
        sigs = ", ".join(f"{sig.get('type')} at {sig.get('offset')}" for sig in signatures)
        found.append(f"wipefs signatures: {sigs}")
    if rc == BLKID_AMBIVALENT:
        found.append("several conflicting signatures (blkid -p exit 8)")
    return found


def device_size(realpath: str) -> int:
    """Bytes, from sysfs (sectors of 512 bytes whatever the logical block size)."""
    name = os.path.basename(realpath)
    try:
        with open(f"/sys/class/block/{name}/size", encoding="ascii") as handle:
            return int(handle.read().strip()) * 512
    except OSError:
        return 0


def ext4_size(module: AnsibleModule, device: str) -> int:
    """Bytes the filesystem covers, from its superblock (block count x block size)."""
    rc, out, _err = module.run_command(["dumpe2fs", "-h", device])
    if rc != 0:
        return 0
    fields = {}
    for line in out.splitlines():
        key, _sep, value = line.partition(":")
        fields[key.strip()] = value.strip()
    try:
        return int(fields["Block count"]) * int(fields["Block size"])
    except (KeyError, ValueError):
        return 0


def mount_source(mount_point: str) -> tuple[bool, str, int | None]:
    """What /proc/self/mountinfo says is mounted at mount_point: (mounted, source, st_dev)."""
    target = os.path.realpath(mount_point)
    found: tuple[bool, str, int | None] = (False, "", None)
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") != target:
                continue
            major, minor = (int(n) for n in fields[2].split(":"))
            source = fields[fields.index("-") + 2]
            found = (True, source, os.makedev(major, minor))  # the last mount on top wins
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "device": {"type": "path", "required": True},
            "timeout": {"type": "int", "default": 60},
            "label": {"type": "str", "required": True},
            "mount_point": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    device: str = module.params["device"]
    result: dict[str, Any] = {
        "changed": False,
        "exists": False,
        "waited": wait_for(device, module.params["timeout"]),
        "is_block_device": False,
        "realpath": os.path.realpath(device),
        "state": "",
        "found": [],
        "blkid": {},
        "signatures": [],
        "uuid": "",
        "device_bytes": 0,
        "fs_bytes": 0,
    }
    mounted, source, mounted_dev = mount_source(module.params["mount_point"])
    result.update(mounted=mounted, mounted_source=source, mounted_is_device=False)
    try:
        st = os.stat(device)
    except FileNotFoundError:
        module.exit_json(**result)
    result["exists"] = True
    if not stat.S_ISBLK(st.st_mode):
        module.exit_json(**result)
    result["is_block_device"] = True
    result["mounted_is_device"] = mounted and mounted_dev == st.st_rdev

    rc, out, err = module.run_command(["blkid", "--probe", "--output", "export", device])
    if rc not in (BLKID_FOUND, BLKID_NOTHING, BLKID_AMBIVALENT):
        module.fail_json(msg=f"blkid --probe {device} failed (exit {rc}): {err.strip()}", **result)
    probe = parse_export(out)
    wrc, wout, werr = module.run_command(["wipefs", "--no-act", "--json", device])
    if wrc != 0:
        module.fail_json(msg=f"wipefs {device} failed (exit {wrc}): {werr.strip()}", **result)
    signatures = json.loads(wout).get("signatures", []) if wout.strip() else []

    result.update(
        blkid=probe,
        signatures=signatures,
        state=classify(rc, probe, signatures, module.params["label"]),
        found=describe(rc, probe, signatures),
        uuid=probe.get("UUID", ""),
        device_bytes=device_size(result["realpath"]),
    )
    if probe.get("TYPE") == "ext4":
        result["fs_bytes"] = ext4_size(module, device)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
