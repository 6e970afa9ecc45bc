"""A local base image for the agent's Containerfile: no registry can be reached here.

debootstrap makes a Debian 12 root filesystem with python3 (and venv, git, CA certificates:
what the official python slim image offers the Containerfile), packed as a zstd tarball under
the user's cache dir and keyed by a hash of the recipe below. `podman import` turns it into
`localhost/super-spine-test-base:<hash>`. A cold build takes about 2 minutes once; after that
the import takes seconds, and an image already imported takes nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.container.podman import podman
from tests.lab.image import debian_mirror

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
# Slims the rootfs as the official slim images do; apt's lists are not needed to run.
PRUNE = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info")
RECIPE = json.dumps({"suite": SUITE, "variant": "minbase", "packages": PACKAGES, "prune": PRUNE})
IMAGE_NAME = "localhost/super-spine-test-base"


def recipe_hash() -> str:
    return hashlib.sha256(RECIPE.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "super-spine-kit" / "container-base"


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """One builder at a time (other checkouts on this machine share the cache)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}\n{tail}")


def _build_tarball(target: Path) -> float:
    """debootstrap into a scratch dir, prune, tar | zstd into target; returns the seconds."""
    started = time.monotonic()
    work = target.parent / f".build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              f"--cache-dir={debs}", SUITE, str(rootfs), debian_mirror()])
        for rel in PRUNE:
            shutil.rmtree(rootfs / rel, ignore_errors=True)
        partial = work / "rootfs.tar.zst"
        _run(["sh", "-c", 'tar -C "$1" --numeric-owner -cf - . | zstd -q -3 -T0 -o "$2"',
              "sh", str(rootfs), str(partial)])
        partial.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.monotonic() - started


def ensure_base_image() -> tuple[str, dict[str, float | bool]]:
    """Return the local base image reference, and how long getting it took (and whether cached)."""
    started = time.monotonic()
    ref = f"{IMAGE_NAME}:{recipe_hash()}"
    if podman("image", "exists", ref, check=False).returncode == 0:
        return ref, {"cached": True, "seconds": time.monotonic() - started}
    directory = cache_dir() / recipe_hash()
    tarball = directory / "rootfs.tar.zst"
    with _exclusive(cache_dir() / ".lock"):
        built = None
        if not tarball.exists():
            directory.mkdir(parents=True, exist_ok=True)
            built = _build_tarball(tarball)
        if podman("image", "exists", ref, check=False).returncode != 0:
            with subprocess.Popen(["zstd", "-q", "-dc", str(tarball)],
                                  stdout=subprocess.PIPE) as unpack:
                podman("import", "-", ref, stdin=unpack.stdout)
            if unpack.returncode != 0:  # known only once the with block has waited for it
                raise RuntimeError(f"zstd could not unpack {tarball}")
    return ref, {"cached": built is None, "seconds": time.monotonic() - started}
