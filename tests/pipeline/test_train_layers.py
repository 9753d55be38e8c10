"""No module of ``pipeline/`` imports ``reports`` or ``jobs``, not even inside a function (a
lazy import escapes the import-time check of tests/test_layers.py): the training loop's
validation gets its evaluator injected by ``dsfd train``."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_pipeline_never_imports_reports_or_jobs() -> None:
    files = sorted((REPO / "pipeline").rglob("*.py"))
    assert len(files) > 20
    bad = {str(p.relative_to(REPO)): sorted(_imported(p) & {"reports", "jobs"}) for p in files}
    assert {k: v for k, v in bad.items() if v} == {}
