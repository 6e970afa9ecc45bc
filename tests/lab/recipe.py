"""The lab VM image recipe: everything that decides what the image contains.

The cache key is a hash of this file's text, so any change here builds a new image and nothing
else does (edits to the builder or boot code keep the cached image).
"""

from __future__ import annotations

SUITE = "bookworm"
ROOT_LABEL = "spine-root"
HOSTNAME = "super-spine-lab"
IMAGE_SIZE = "3G"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

# The VM has no internet: anything the roles or the tests run on the guest must be here.
# GCE's Debian 12 image has all of these (plus the guest agent, replaced by the udev rule below).
PACKAGES = [
    # boot and basics (LAB.md)
    "systemd", "systemd-sysv", "udev", "dbus", "libpam-systemd", "openssh-server",
    "linux-image-amd64", "kmod", "iproute2", "ca-certificates", "sudo",
    # Ansible targets: python, venv for the agent, apt module, become to an unprivileged user
    "python3", "python3-venv", "python3-apt", "acl", "git",
    # the disk role: detect, format, mount, grow (whole-disk ext4 or partitions)
    "e2fsprogs", "xfsprogs", "util-linux", "fdisk", "parted", "cloud-guest-utils",
    # what tests and humans reach for on the guest
    "procps", "curl", "less", "psmisc", "lsof", "netcat-openbsd", "file", "jq",
]

# Kernel module trees a virtio VM never loads (~300 MB of the ~400 MB of modules).
PRUNE_MODULE_DIRS = [
    "sound", "drivers/gpu", "drivers/media", "drivers/net/wireless", "drivers/net/ethernet",
    "drivers/infiniband", "drivers/staging", "drivers/bluetooth", "net/bluetooth",
    "net/wireless", "net/mac80211", "drivers/iio", "drivers/isdn", "drivers/mtd", "drivers/nfc",
    "drivers/thunderbolt", "drivers/net/can", "drivers/hwmon", "drivers/w1", "drivers/leds",
    "drivers/video/fbdev", "drivers/usb", "drivers/input/touchscreen", "drivers/input/joystick",
    "drivers/input/tablet", "drivers/input/misc", "drivers/platform/chrome",
    "drivers/net/usb", "drivers/net/wwan", "drivers/net/ieee802154", "drivers/net/hamradio",
    "drivers/atm", "drivers/firewire", "drivers/pcmcia", "drivers/memstick", "drivers/mmc",
    "drivers/spi", "drivers/i3c", "drivers/power/supply", "drivers/regulator",
    "drivers/scsi/lpfc", "drivers/scsi/qla2xxx", "drivers/scsi/qla4xxx", "drivers/scsi/mpt3sas",
    "drivers/scsi/megaraid", "drivers/scsi/bfa", "drivers/scsi/be2iscsi", "drivers/scsi/aacraid",
    "drivers/scsi/aic7xxx", "drivers/scsi/bnx2fc", "drivers/scsi/bnx2i", "drivers/scsi/cxgbi",
    "drivers/scsi/fnic", "drivers/scsi/smartpqi", "drivers/scsi/pm8001", "drivers/scsi/qedf",
    "drivers/scsi/qedi", "drivers/scsi/csiostor", "drivers/scsi/mpi3mr", "drivers/scsi/elx",
    "drivers/net/fddi", "drivers/net/arcnet", "drivers/media", "drivers/crypto/qat",
    "drivers/misc", "drivers/mfd", "drivers/edac", "drivers/hid",
    # q35's AHCI/SMBus and -cpu max's SVM flag would load these at every boot for nothing
    "arch/x86/kvm", "drivers/ata", "drivers/i2c", "drivers/char/tpm", "drivers/acpi/nfit",
    "drivers/char/ipmi", "drivers/virt", "drivers/input/mouse", "drivers/input/keyboard",
]

# Units a throwaway TCG VM does not need; each costs seconds of emulated CPU at boot.
MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "systemd-networkd-wait-online.service",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "systemd-binfmt.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount", "modprobe@drm.service",
    "modprobe@efi_pstore.service", "modprobe@fuse.service", "modprobe@dm_mod.service",
    "modprobe@loop.service", "systemd-pstore.service", "getty@tty1.service",
    "systemd-update-utmp-runlevel.service", "systemd-journal-flush.service",
    "systemd-hwdb-update.service", "ldconfig.service",
    "systemd-journal-catalog-update.service",
]

# Kernel command line: LAB.md's root=LABEL; quiet (every console byte is an emulated UART
# write), no mitigations or clocksource watchdog (pure cost under TCG), panic -> QEMU exits.
KERNEL_CMDLINE = (
    f"root=LABEL={ROOT_LABEL} rw console=ttyS0 quiet systemd.show_status=auto panic=-1 "
    "mitigations=off tsc=reliable no_timer_check nowatchdog 8250.nr_uarts=1"
)

# GCE's guest agent runs the `startup-script` metadata at every boot. The lab's stand-in does
# the same when the kernel command line names a metadata server (LabVM(metadata_url=...)):
# fetch the script from it and run it, logging to the journal. Without it, nothing runs.
METADATA_CMDLINE_KEY = "ssk.metadata"
STARTUP_RUNNER = r"""#!/bin/bash
# Lab stand-in for google_metadata_script_runner startup (tests/lab/recipe.py).
set -u
url=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^ssk\.metadata=//p')
[ -n "$url" ] || exit 0
script=$(mktemp)
for i in $(seq 1 60); do
  if curl -sf -H 'Metadata-Flavor: Google' -o "$script" \
      "$url/instance/attributes/startup-script"; then
    echo "startup-script: running"
    bash "$script"
    rc=$?
    echo "startup-script: finished with exit code $rc"
    exit 0
  fi
  sleep 2
done
echo "startup-script: metadata server $url did not answer"
"""

# Files written into the rootfs (path -> content). Keys are absolute guest paths.
FILES: dict[str, str] = {
    "/usr/local/sbin/lab-startup-script-runner": STARTUP_RUNNER,
    "/etc/systemd/system/lab-startup-script.service": (
        "[Unit]\nDescription=Lab stand-in for GCE's startup-script runner\n"
        "After=network.target\n\n[Service]\nType=oneshot\n"
        "ExecStart=/bin/bash /usr/local/sbin/lab-startup-script-runner\n"
        "StandardOutput=journal+console\n\n[Install]\nWantedBy=multi-user.target\n"
    ),
    "/etc/hostname": f"{HOSTNAME}\n",
    "/etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n::1 localhost ip6-localhost\n",
    "/etc/fstab": f"LABEL={ROOT_LABEL} / ext4 rw,discard,errors=remount-ro 0 1\n",
    # No resolver on purpose: QEMU's user network would NAT the guest to whatever the host
    # reaches (here the Debian and PyPI mirrors), so a role that downloads would pass in the
    # lab and fail offline. Without DNS it fails here too. The host stays reachable: 10.0.2.2.
    "/etc/resolv.conf": "# no nameserver: the lab VM is offline (host: 10.0.2.2)\n",
    "/etc/systemd/network/10-lab.network": (
        "[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\nIPv6AcceptRA=no\n"
        "LinkLocalAddressing=no\n\n[DHCPv4]\nUseDNS=no\n"
    ),
    "/etc/ssh/sshd_config.d/10-lab.conf": (
        "UseDNS no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
    ),
    # GCE's guest environment names attached disks by their device name; this is its rule.
    "/etc/udev/rules.d/65-gce-disk-naming.rules": (
        'KERNEL=="sd*", ENV{DEVTYPE}=="disk", ENV{ID_SERIAL_SHORT}=="?*", '
        'SYMLINK+="disk/by-id/google-$env{ID_SERIAL_SHORT}"\n'
        'KERNEL=="sd*", ENV{DEVTYPE}=="partition", ENV{ID_SERIAL_SHORT}=="?*", '
        'SYMLINK+="disk/by-id/google-$env{ID_SERIAL_SHORT}-part%n"\n'
    ),
    # Small initrd: only what a q35 virtio VM needs to find LABEL=root (faster under TCG).
    "/etc/initramfs-tools/conf.d/lab.conf": "MODULES=list\n",
    "/etc/initramfs-tools/modules": (
        "virtio_pci\nvirtio_blk\nvirtio_scsi\nvirtio_net\nsd_mod\next4\ncrc32c_generic\n"
    ),
    "/etc/systemd/journald.conf.d/lab.conf": "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
    "/etc/default/locale": "LANG=C.UTF-8\n",
}

# Run inside the rootfs (chroot, private mount namespace) after FILES are written.
CONFIGURE_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
systemctl enable systemd-networkd.service ssh.service lab-startup-script.service
systemctl mask $MASKED_UNITS
passwd -l root
# empty machine-id: every new VM (overlay) gets its own at first boot
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# docs, man pages and apt caches are dead weight in a throwaway VM
rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/cache/apt/*.bin \
  /var/cache/apt/archives/*.deb /var/lib/apt/lists/*_Packages
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
for kver in $(ls /lib/modules); do
  depmod -a "$kver"
  update-initramfs -u -k "$kver" >/dev/null
done
"""
