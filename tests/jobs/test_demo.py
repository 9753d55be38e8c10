"""`dsfd demo` end to end on a tiny benchmark with the shipped model (real Ray, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main


@pytest.mark.slow
def test_demo_runs_every_step_and_resumes(ray_ctx, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--out", str(tmp_path / "demo"), "--images", "4", "--train-images", "2",
            "--fddb-images", "3", "--multiscale-images", "1", "--workers", "1"]
    assert main(argv) == 0
    out = tmp_path / "demo"
    for path in ("report/index.html", "report/report.md", "eval/wider_matlab.json",
                 "eval/wider_pyport.json", "eval/fddb_DiscROC.txt", "eval/fddb_ContROC.txt",
                 "anchors/anchor_stats.parquet", "runs/wider-multi/run.json",
                 "runs/wider-haar/run.json"):
        assert (out / path).is_file(), path
    matlab = json.loads((out / "eval" / "wider_matlab.json").read_text())
    assert matlab["flavour"] == "matlab" and matlab["num_images"] == 4
    assert matlab["ap"]["hard"] > 0.1  # the shipped model finds synthetic faces
    report = (out / "report" / "report.md").read_text()
    assert "| single-scale | 4 | matlab |" in report and "| multi-scale | 1 | matlab |" in report
    assert "| opencv-haar | 4 | matlab |" in report  # the baseline, on the same images
    haar = json.loads((out / "runs" / "wider-haar" / "run.json").read_text())
    assert haar["model"]["spec"] == "opencv-haar"
    if (out / "report" / "ap_table.csv").is_file():  # once `dsfd report` writes comparisons
        table = (out / "report" / "ap_table.csv").read_text().splitlines()
        assert table[0].startswith("run,images,matlab_easy,matlab_easy_lo,matlab_easy_hi")
        assert [r.split(",")[0] for r in table[1:]] == ["single-scale", "opencv-haar",
                                                        "multi-scale"]
    capsys.readouterr()
    assert main(argv) == 0  # a rerun resumes: benchmark kept, every shard skipped
    assert "4 images in 1 shards: 0 errors" in (out2 := capsys.readouterr().out)
    assert "this call ran 0 shards (1 already done)" in out2
