"""Pulumi entry point: read config, build the chosen topology, export its outputs.

Pulumi runs this file with `infra/` as the working directory (Pulumi.yaml: `main: infra/`),
so `infra` itself is not importable from here. Putting the repository root on sys.path lets
the program and the tests share one import path (`infra.topologies`), rather than two.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi

from infra.config import load_config
from infra.topologies import build

for key, value in build(load_config(), pulumi.get_stack()).items():
    pulumi.export(key, value)
