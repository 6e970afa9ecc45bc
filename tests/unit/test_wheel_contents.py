"""The agent's wheel (what the role installs on a VM and the image installs) holds every module
of bootstrap/: a package missing from it fails only on a VM or in the image, far from here."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_bootstrap_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path),
         str(REPO)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("super_spine_kit-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    on_disk = {
        str(path.relative_to(REPO))
        for path in (REPO / "bootstrap").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert on_disk - shipped == set()
