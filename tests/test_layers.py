"""The layers hold: each package imported alone in a fresh interpreter pulls in only what its
layer may use (dsfd: no pipeline, reports or Ray; reports and the torch-free part of pipeline:
no torch, no Ray)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    root = REPO / package.replace(".", "/")
    if (root / "__init__.py").is_file():
        names = [package]
        for info in pkgutil.walk_packages([str(root)], prefix=f"{package}."):
            names.append(info.name)
        return names
    return [package]


@pytest.mark.parametrize(("packages", "forbidden"), [
    (["dsfd"], ["pipeline", "reports", "jobs", "ray"]),
    (["reports"], ["torch", "ray", "jobs"]),
    (["pipeline.datasets", "pipeline.rundir", "pipeline.exports", "pipeline.boxes",
      "pipeline.images", "pipeline.schema", "pipeline.shards", "pipeline.synthetic",
      "pipeline.storage"],
     ["torch", "ray", "reports", "jobs"]),
    (["pipeline.training.data", "pipeline.actors", "pipeline.detectors"], ["ray", "reports",
                                                                          "jobs"]),
])
def test_a_layer_imports_only_what_it_may(packages: list[str], forbidden: list[str]) -> None:
    modules = [m for p in packages for m in _modules(p)]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r}))\n"
            "print(bad)\n"
            "sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"{packages} imported {done.stdout.strip()}{done.stderr[-1500:]}"
