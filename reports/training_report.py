"""The training section of the report: a ``dsfd train`` folder (``train_config.json``,
``metrics.jsonl``, ``best.json``) summarised, drawn and rendered (no torch, no Ray)."""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.json"


def is_training_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``dsfd train`` output folder."""
    return (Path(path) / CONFIG_FILE).is_file()


@dataclass
class TrainingReport:
    """What the report shows of one training folder."""

    name: str
    folder: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def last(self) -> dict[str, Any]:
        """The last loss entry (empty when none)."""
        losses = [r for r in self.rows if "loss" in r]
        return losses[-1] if losses else {}


def summarize_training(folder: str | os.PathLike[str], name: str | None = None
                       ) -> TrainingReport:
    """Read a training folder.

    Raises:
        ValueError: ``train_config.json`` or a ``metrics.jsonl`` line is not JSON (file and
            line named).
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    report = TrainingReport(name=name or folder.name, folder=folder, config=config)
    metrics = folder / METRICS_FILE
    if metrics.is_file():
        for number, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                report.rows.append(dict(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{metrics}: line {number}: not JSON ({exc})") from None
    best = folder / BEST_FILE
    if best.is_file():
        report.best = dict(json.loads(best.read_text(encoding="utf-8")))
    return report


def training_figure(report: TrainingReport, fig_dir: Path, index: int) -> Path | None:
    """The four-panel curves of one training folder as PNG (and PDF); None without metrics."""
    if not report.rows:
        return None
    from reports.figures import save_figure
    from reports.figures.training import plot_training

    best_step = int(report.best["step"]) if report.best else None
    fig, _ = plot_training(report.rows, best_step, title=report.name)
    return save_figure(fig, fig_dir / f"training_{index}")[0]


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def training_rows(reports: list[TrainingReport]) -> list[list[str]]:
    """``[name, model, steps done / steps, last loss, best (metric = value @ step)]``."""
    rows = []
    for r in reports:
        model = r.config.get("model", {})
        model_name = model.get("name", model) if isinstance(model, dict) else model
        best = (f"{r.best['metric']} = {_fmt(r.best['value'])} @ {r.best['step']}"
                if r.best else "no validation")
        rows.append([r.name, str(model_name), f"{r.last.get('step', 0)} / "
                     f"{r.config.get('steps', '?')}", _fmt(r.last.get("loss")), best])
    return rows


TRAINING_HEADER = ["training", "model", "steps", "last loss", "best.pt"]


def training_markdown(reports: list[TrainingReport]) -> list[str]:
    """Markdown lines of the training section (empty without training folders)."""
    if not reports:
        return []
    return ["## Training", "", "| " + " | ".join(TRAINING_HEADER) + " |",
            "|" + "---|" * len(TRAINING_HEADER),
            *("| " + " | ".join(row) + " |" for row in training_rows(reports)), ""]


def config_html(report: TrainingReport) -> str:
    """The training config as a collapsible block (provenance)."""
    text = html.escape(json.dumps(report.config, indent=1, sort_keys=True))
    return (f"<details><summary>{html.escape(report.name)}: training config</summary>"
            f"<pre>{text}</pre></details>")
