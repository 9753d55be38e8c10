"""The report of a `dsfd train` folder: curves, validation AP with the best step, the config;
the page renders in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from jobs.cli import main
from reports.report import write_report
from tests.reports.test_report import CHROMIUM


@pytest.fixture(scope="module")
def training_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("bench")
    generate_benchmark(root, SynthConfig(seed=5, num_train=4, num_val=2, num_fddb=0))
    out = tmp_path_factory.mktemp("train") / "ckpt"
    assert main(["train", "--dataset", f"synthetic:{root}", "--out", str(out), "--model",
                 "vgg16", "--width", "0.0625", "--workers", "0", "--steps", "4",
                 "--batch-size", "2", "--image-size", "64", "--checkpoint-every", "2",
                 "--log-every", "1", "--val-dataset", f"synthetic:{root}:val",
                 "--val-every", "2"]) == 0
    return out


def test_a_training_folder_reports_its_curves_best_step_and_config(
        training_dir: Path, tmp_path: Path) -> None:
    html_path, md_path, runs = write_report([training_dir], tmp_path / "report")
    assert runs == []
    md = md_path.read_text()
    assert "## Training" in md and "| ckpt | vgg16 | 4 / 4 |" in md
    assert "val_hard = " in md and "## Runs" not in md
    page = html_path.read_text()
    assert "<h2>Training</h2>" in page and "training config" in page
    assert (tmp_path / "report" / "figures" / "training_0.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "figures" / "training_0.pdf").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_training_page_renders_in_chromium(training_dir: Path, tmp_path: Path) -> None:
    html_path, _, _ = write_report([training_dir], tmp_path / "r")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", html_path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None
    assert 'data-figures="1"' in body.group(1) and 'data-broken="0"' in body.group(1)


@pytest.mark.parametrize(("keys", "title"), [
    (("val_easy", "val_medium", "val_hard"), "validation AP (WIDER, matlab)"),
    (("val_fddb_discrete", "val_fddb_continuous"), "validation TPR at 1000 FP (FDDB)"),
])
def test_the_validation_panel_draws_wider_ap_or_fddb_tpr(keys: tuple[str, ...],
                                                          title: str) -> None:
    from reports.figures.training import plot_training

    rows = [{"step": s, "loss": 5.0 / s, "lr": 1e-3, "images_per_s": 3.0} for s in (1, 2, 3, 4)]
    rows += [{"step": s, **{k: 0.1 * s for k in keys}} for s in (2, 4)]
    _, axes = plot_training(rows, best_step=4)
    val_ax = axes.ravel()[3]
    assert val_ax.get_title() == title
    drawn = {line.get_label(): list(line.get_ydata()) for line in val_ax.get_lines()}
    for key in keys:
        assert drawn[key.removeprefix("val_")] == pytest.approx([0.2, 0.4])
    assert "best.pt (step 4)" in drawn
