"""The bundle a VM provisions itself from: build it (ansible/bundle.yml) and check it.

`make bundle` (or `python -m infra.bundle`) builds `dist/super-spine-bundle.tar`: the roles,
site.yml, the shared templates and one archive of wheels (the agent, its dependencies and a
pinned ansible-core). The Pulumi program uploads it under a name made from its digest, and the
VM refuses any file whose sha256 differs from the one in its metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "dist" / "super-spine-bundle.tar"
# Members the startup script needs; anything less is not a bundle.
REQUIRED_MEMBERS = ("bundle.json", "wheelhouse.tar", "ansible/site.yml")
# A bundle is a few tens of MB; a much larger file is a mistake (and a slow boot).
MAX_BUNDLE_BYTES = 512 * 1024 * 1024


class BundleError(ValueError):
    """The file is not a usable bundle; the message says why in one line."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    sha256: str
    agent_wheel: str
    ansible_core: str

    @property
    def object_name(self) -> str:
        """Content-addressed: a new bundle is a new object, hence a new instance template."""
        return f"super-spine-bundle-{self.sha256[:16]}.tar"


def inspect(path: Path) -> Bundle:
    """Read a bundle's description and digest; BundleError when it is not one."""
    if not path.is_file():
        raise BundleError(f"{path} does not exist; build it with `make bundle`")
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path} is larger than {MAX_BUNDLE_BYTES // 2**20} MiB")
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            missing = [m for m in REQUIRED_MEMBERS if m not in names]
            if missing:
                raise BundleError(f"{path} lacks {', '.join(missing)}; rebuild it: make bundle")
            member = tar.extractfile("bundle.json")
            described = json.load(member) if member else {}
    except (tarfile.TarError, json.JSONDecodeError, OSError, UnicodeDecodeError):
        raise BundleError(f"{path} is not a bundle tar; rebuild it: make bundle") from None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    try:
        return Bundle(path, digest.hexdigest(), described["agent_wheel"], described["ansible_core"])
    except (KeyError, TypeError):
        raise BundleError(f"{path}: bundle.json lacks agent_wheel or ansible_core") from None


def build(out: Path = DEFAULT_BUNDLE) -> Bundle:
    """Run ansible/bundle.yml (builds the wheel, downloads the wheels from PyPI) into `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"
    proc = subprocess.run(
        [str(ansible_playbook), "bundle.yml", "-e", f"bundle_out={out.resolve()}"],
        cwd=ROOT / "ansible", capture_output=True, text=True, check=False, timeout=1800,
    )
    if proc.returncode != 0:
        raise BundleError(f"ansible/bundle.yml failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return inspect(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.bundle", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_BUNDLE)
    args = parser.parse_args(argv)
    try:
        bundle = build(args.out)
    except BundleError as error:
        print(f"bundle: {error}", file=sys.stderr)
        return 2
    print(f"{bundle.path} sha256={bundle.sha256} agent={bundle.agent_wheel} "
          f"ansible-core={bundle.ansible_core}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
