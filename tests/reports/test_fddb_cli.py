"""`dsfd eval fddb`: oracle through the command line, no torch/Ray, one-line failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASE = Path("oracle_public/cases/fddb_pub")


def _dsfd(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from jobs.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'heavy import'; "
        "sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_cli_matches_oracle_without_torch_or_ray(data_dir: Path, tmp_path: Path) -> None:
    case = data_dir / CASE
    result = _dsfd(
        "eval",
        "fddb",
        "--pred",
        str(case / "dets_ellipse.txt"),
        "--det-format",
        "ellipse",
        "--annotations",
        str(case / "ellipseList.txt"),
        "--sizes",
        str(case / "sizes.tsv"),
        "--out",
        str(tmp_path / "f1_"),
    )
    assert result.returncode == 0, result.stderr
    assert "discrete   TPR@1000FP = 0.644689" in result.stdout
    for kind in ("DiscROC", "ContROC"):
        got = (tmp_path / f"f1_{kind}.txt").read_bytes()
        assert got == (case / "expected" / f"f1_{kind}.txt").read_bytes()
    summary = json.loads((tmp_path / "f1_fddb.json").read_text())
    assert summary["num_faces"] == 273 and summary["det_format"] == "ellipse"


def test_cli_fit_then_apply_regressor(data_dir: Path, tmp_path: Path) -> None:
    case = data_dir / CASE
    model = tmp_path / "fit.json"
    result = _dsfd(
        "eval",
        "fddb",
        "--pred",
        str(case / "dets_rect.txt"),
        "--annotations",
        str(case / "ellipseList.txt"),
        "--sizes",
        str(case / "sizes.tsv"),
        "--fit-ellipse",
        str(model),
        "--ellipse",
        str(model),
        "--out",
        str(tmp_path / "fit_"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(model.read_text())["num_pairs"] > 50
    assert (tmp_path / "fit_DiscROC.txt").read_text().count("\n") > 10


def test_cli_bad_detection_file_fails_in_one_line(data_dir: Path, tmp_path: Path) -> None:
    case = data_dir / CASE
    bad = tmp_path / "bad.txt"
    bad.write_text("pub/00/img_0\n2\n1 2 3 4 0.5\n1 2 3\n")
    result = _dsfd(
        "eval",
        "fddb",
        "--pred",
        str(bad),
        "--annotations",
        str(case / "ellipseList.txt"),
        "--sizes",
        str(case / "sizes.tsv"),
        "--out",
        str(tmp_path / "x_"),
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.txt:4:" in lines[0]
