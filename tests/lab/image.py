"""Build (or take from the cache) the lab's Debian 12 VM image.

A cached image is a directory `<cache>/<recipe hash>/` holding base.img.zst, base.img, vmlinuz,
initrd.img, id_ed25519(.pub) and build.json. It is built in a temporary directory and renamed
into place, under a file lock: a half-built image is never used and two callers never build
twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab import recipe
from tests.lab.errors import LabError

log = logging.getLogger(__name__)

REQUIRED_TOOLS = ("debootstrap", "qemu-system-x86_64", "qemu-img", "zstd", "mkfs.ext4",
                  "ssh", "ssh-keygen", "unshare", "chroot")


@dataclass(frozen=True)
class LabImage:
    """A cached, complete image: the files a boot needs."""

    directory: Path
    base: Path
    kernel: Path
    initrd: Path
    key: Path
    build_seconds: float  # how long the cold build took (recorded at build time)
    cached: bool  # True when this call found it in the cache
    setup_seconds: float  # how long this call took

    @property
    def pubkey(self) -> Path:
        return self.key.with_suffix(".pub")


def cache_root() -> Path:
    """Where images live: the user's cache dir, so a second run (or CI job) is fast."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "super-spine-kit" / "lab"


def recipe_hash() -> str:
    """Key the cache on the recipe's text, not on the builder's code."""
    text = Path(recipe.__file__).read_text()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def debian_mirror() -> str:
    """Reuse the host's configured Debian mirror (the one apt can reach here)."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        try:
            text = path.read_text()
        except OSError:
            continue
        for match in re.finditer(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            url = match.group(1)
            if url.rstrip("/").endswith("/debian") and "security" not in url:
                return url.rstrip("/")
    return recipe.DEFAULT_MIRROR


def check_tools() -> None:
    """Fail with one line naming what is missing, instead of a traceback mid-build."""
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None
               and not Path("/usr/sbin", t).exists()]
    if missing:
        raise LabError(f"missing host tools: {', '.join(missing)} (run: bash scripts/setup.sh)")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    log.debug("run: %s", " ".join(cmd))
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise LabError(f"image build step failed ({cmd[0]} exit {proc.returncode})", tail)
    return proc


def _load(directory: Path, cached: bool, started: float) -> LabImage:
    meta = json.loads((directory / "build.json").read_text())
    return LabImage(
        directory=directory,
        base=directory / "base.img",
        kernel=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        key=directory / "id_ed25519",
        build_seconds=float(meta["build_seconds"]),
        cached=cached,
        setup_seconds=time.monotonic() - started,
    )


def _ensure_unpacked(directory: Path) -> None:
    """Unpack base.img.zst next to itself if the raw image is missing (atomic rename)."""
    base = directory / "base.img"
    if base.exists():
        return
    tmp = directory / f".base.img.{os.getpid()}"
    _run(["zstd", "-q", "-d", "-f", str(directory / "base.img.zst"), "-o", str(tmp)])
    tmp.chmod(0o444)
    tmp.rename(base)


def ensure_image(progress: bool = False) -> LabImage:
    """Return the cached image for the current recipe, building it first if needed."""
    started = time.monotonic()
    root = cache_root()
    directory = root / recipe_hash()
    if (directory / "build.json").exists():
        with _locked(root / ".build.lock"):
            _ensure_unpacked(directory)
        return _load(directory, cached=True, started=started)
    check_tools()
    if os.geteuid() != 0:
        raise LabError("building the lab image needs root (debootstrap, chroot)")
    with _locked(root / ".build.lock"):
        if (directory / "build.json").exists():  # someone else built it while we waited
            _ensure_unpacked(directory)
            return _load(directory, cached=True, started=started)
        _build(root, directory, progress)
    return _load(directory, cached=False, started=started)


def _say(progress: bool, msg: str) -> None:
    log.info(msg)
    if progress:
        print(f"lab: {msg}", flush=True)


def _remove_leftovers(root: Path, current: Path) -> None:
    """Delete builds whose builder died (caller holds the lock) and images of old recipes.

    Images of other recipes are kept for a week: another checkout may still boot them.
    """
    for path in root.glob(".build-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and Path(f"/proc/{pid}").exists()):
            shutil.rmtree(path, ignore_errors=True)
    week_ago = time.time() - 7 * 86400
    for meta in root.glob("*/build.json"):
        if meta.parent != current and meta.stat().st_mtime < week_ago:
            shutil.rmtree(meta.parent, ignore_errors=True)


def _build(root: Path, directory: Path, progress: bool) -> None:
    started = time.monotonic()
    _remove_leftovers(root, directory)
    work = root / f".build-{directory.name}-{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        mirror = debian_mirror()
        _say(progress, f"building the VM image with debootstrap from {mirror} (2-3 min)")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(recipe.PACKAGES)}",
              f"--cache-dir={debs}", recipe.SUITE, str(rootfs), mirror])
        _say(progress, "configuring the image")
        _configure(rootfs, work)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise LabError("image build: no kernel or initrd in the rootfs /boot")
        shutil.copy2(kernels[-1], work / "vmlinuz")
        shutil.copy2(initrds[-1], work / "initrd.img")
        _say(progress, "writing base.img (ext4) and compressing it")
        base = work / "base.img"
        _run(["truncate", "-s", recipe.IMAGE_SIZE, str(base)])
        _run(["mkfs.ext4", "-q", "-F", "-L", recipe.ROOT_LABEL, "-d", str(rootfs), str(base)])
        shutil.rmtree(rootfs)
        _run(["zstd", "-q", "-3", "-T0", str(base), "-o", str(work / "base.img.zst")])
        base.chmod(0o444)
        build_seconds = time.monotonic() - started
        (work / "build.json").write_text(json.dumps({
            "recipe": directory.name, "mirror": mirror, "build_seconds": round(build_seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2) + "\n")
        if directory.exists():  # a stale incomplete dir (no build.json): replace it
            shutil.rmtree(directory)
        work.rename(directory)
        _say(progress, f"image built in {build_seconds:.0f}s: {directory}")
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _configure(rootfs: Path, work: Path) -> None:
    for guest_path, content in recipe.FILES.items():
        target = rootfs / guest_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(content)
    # the ssh key for root (the private half stays in the cache, next to the image)
    key = work / "id_ed25519"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "super-spine-lab", "-f", str(key)])
    ssh_dir = rootfs / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    # prune kernel modules before the initrd is rebuilt (depmod runs in the script)
    for mod_root in (rootfs / "lib" / "modules").glob("*/kernel"):
        for rel in recipe.PRUNE_MODULE_DIRS:
            shutil.rmtree(mod_root / rel, ignore_errors=True)
    # chroot in a private mount namespace: /proc, /sys and /dev vanish with the process, so a
    # failed step can never leave host mounts under a tree we later delete
    script = (
        f"mount -t proc proc {rootfs}/proc && mount -t sysfs sys {rootfs}/sys && "
        f"mount --bind /dev {rootfs}/dev && chroot {rootfs} /bin/sh -c \"$1\""
    )
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
          recipe.CONFIGURE_SCRIPT],
         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
              "MASKED_UNITS": " ".join(recipe.MASKED_UNITS)})
