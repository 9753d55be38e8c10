"""Comparison outputs of the report (reports.tables, reports.figures.speed, the PR legend):
two hand-made WIDER runs and one FDDB run, written through the real run-directory API."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.fddb import FddbDataset
from pipeline.datasets.wider import WiderDataset
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.synthetic import SynthConfig, generate_benchmark
from reports.figures.speed import hardware_label, plot_speed, speed_point
from reports.figures.wider_pr import plot_wider_pr
from reports.report import RunReport, summarize_run
from reports.tables import Cell, GroupedTable, table_latex, table_markdown, write_comparison
from reports.wider import WiderResult
from tests.rundir_support import write_run_dir


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, SynthConfig(seed=5, num_val=8, num_train=1, num_fddb=6))
    return out


def _write_run(run_dir: Path, dataset: dict, rows: list[tuple[str, str, np.ndarray]],
               rate: float, gpus: float) -> Path:
    """rows: (image_id, path, dets (N, 5) xyxy + score); a finished run at ``rate`` images/s
    on ``gpus`` GPUs per worker (2 workers)."""
    ids = [i for i, _, d in rows for _ in range(len(d))]
    dets = np.concatenate([d for _, _, d in rows]) if ids else np.zeros((0, 5))
    detections = pa.table({"image_id": ids, **{k: dets[:, j].tolist() for j, k in
                                               enumerate(("x1", "y1", "x2", "y2", "score"))}},
                          schema=DETECTIONS_SCHEMA)
    images = pa.table({"image_id": [r[0] for r in rows], "path": [r[1] for r in rows],
                       "width": [640] * len(rows), "height": [640] * len(rows),
                       "status": ["ok"] * len(rows), "error": [None] * len(rows),
                       "num_detections": [len(r[2]) for r in rows],
                       "seconds": [0.1] * len(rows)}, schema=IMAGES_SCHEMA)
    write_run_dir(run_dir, [(detections, images)], config={"dataset": dataset},
                  record={"dataset_spec": "test", "model": {"name": run_dir.name},
                          "timing": {"seconds": 1.0, "images_per_second": rate},
                          "cluster": {"num_workers": 2, "num_gpus_per_worker": gpus}})
    return run_dir


def _detections(xyxy: np.ndarray, rng: np.random.Generator, keep: float) -> np.ndarray:
    """The boxes kept with probability ``keep``, jittered, plus two false positives."""
    chosen = xyxy[rng.random(len(xyxy)) < keep]
    size = np.tile(chosen[:, 2:] - chosen[:, :2], 2)
    fps = rng.uniform(0, 200, (2, 2))
    boxes = np.concatenate([chosen + rng.normal(0, 0.04, chosen.shape) * size,
                            np.concatenate([fps, fps + 20], axis=1)])
    return np.concatenate([boxes, rng.uniform(0.3, 1.0, (len(boxes), 1))], axis=1)


@pytest.fixture(scope="module")
def reports(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> list[RunReport]:
    rng = np.random.default_rng(1)
    out = tmp_path_factory.mktemp("runs")
    wider = WiderDataset(bench / "wider", "val")
    paths = {e.image_id: e.path for e in wider.iter_manifest()}
    runs = []
    for name, keep, rate, gpus in (("good_gpu", 0.95, 40.0, 1.0), ("weak-cpu", 0.4, 4.0, 0.0)):
        rows = []
        for img in wider.ground_truth():
            b = img.boxes_xywh.astype(np.float64)
            xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
            rows.append((img.image_id, paths[img.image_id], _detections(xyxy, rng, keep)))
        runs.append(_write_run(out / name, wider.describe(), rows, rate, gpus))
    fddb = FddbDataset(bench / "fddb")
    fpaths = {e.image_id: e.path for e in fddb.iter_manifest()}
    rows = []
    for a in fddb.annotations():
        ra, rb, _, cx, cy = a.ellipses.T
        xyxy = np.stack([cx - rb, cy - ra, cx + rb, cy + ra], axis=1)
        rows.append((a.image_id, fpaths[a.image_id], _detections(xyxy, rng, 0.9)))
    runs.append(_write_run(out / "fddb", fddb.describe(), rows, 10.0, 0.0))
    return [summarize_run(r) for r in runs]


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_comparison_tables_with_intervals(reports: list[RunReport], tmp_path: Path) -> None:
    comparison = write_comparison(reports, tmp_path, bootstrap=50)
    rows = _csv(tmp_path / "ap_table.csv")
    assert [r["run"] for r in rows] == ["good_gpu", "weak-cpu"]
    assert list(rows[0])[:5] == ["run", "images", "matlab_easy", "matlab_easy_lo",
                                 "matlab_easy_hi"]
    for row, rep in zip(rows, reports, strict=False):
        assert row["images"] == "8"
        for flavour in ("matlab", "pyport"):
            for s in ("easy", "medium", "hard"):
                assert row[f"{flavour}_{s}"] == f"{rep.wider[flavour].ap[s]:.6f}"
        for s in ("easy", "medium", "hard"):  # matlab intervals bracket the official AP
            assert float(row[f"matlab_{s}_lo"]) <= float(row[f"matlab_{s}"]) <= float(
                row[f"matlab_{s}_hi"])
            assert row[f"pyport_{s}_lo"] == ""  # intervals of the matlab flavour only
    assert reports[0].wider["matlab"].ap["hard"] > reports[1].wider["matlab"].ap["hard"]
    tex = (tmp_path / "ap_table.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    assert "\\multicolumn{3}{c}{matlab} & \\multicolumn{3}{c}{pyport}" in tex
    good = next(line for line in tex.splitlines() if line.startswith("good\\_gpu & 8 & "))
    hard = reports[0].wider["matlab"].ap["hard"]
    assert f"\\textbf{{{hard:.3f}}} {{\\scriptsize[" in good  # best of its column, in bold
    fddb = _csv(tmp_path / "fddb_table.csv")
    assert [r["run"] for r in fddb] == ["fddb"]
    assert fddb[0]["rectangles_discrete"] == f"{reports[2].fddb['rectangles'].tpr_disc:.6f}"
    assert "s3fd_ellipses_continuous" in fddb[0]
    assert "weak-cpu" in comparison.markdown() and "[" in comparison.markdown()
    assert "<th colspan='3'>matlab</th>" in comparison.html()


def test_curves_and_speed_figure(reports: list[RunReport], tmp_path: Path) -> None:
    comparison = write_comparison(reports, tmp_path)
    assert not any(k.endswith("_lo") for k in _csv(tmp_path / "ap_table.csv")[0])
    for flavour in ("matlab", "pyport"):
        for s in ("easy", "medium", "hard"):
            rows = _csv(tmp_path / "curves" / f"pr_{flavour}_{s}.csv")
            assert {r["run"] for r in rows} == {"good_gpu", "weak-cpu"}
            assert all(0.0 <= float(r["recall"]) <= 1.0 for r in rows)
    roc = _csv(tmp_path / "curves" / "roc_s3fd_ellipses.csv")
    assert list(roc[0]) == ["run", "threshold", "false_positives", "tpr_discrete",
                            "tpr_continuous"]
    assert len(roc) == len(reports[2].fddb["S3FD ellipses"].roc.fp)
    speed = _csv(tmp_path / "speed.csv")
    assert [(r["run"], r["hardware"], r["images_per_second"]) for r in speed] == [
        ("good_gpu", "GPU x1, 2 workers", "40.000000"), ("weak-cpu", "CPU, 2 workers",
                                                          "4.000000")]
    assert comparison.speed_png == tmp_path / "figures" / "speed.png"
    assert (tmp_path / "figures" / "speed.pdf").stat().st_size > 1000
    assert set(comparison.files) >= {tmp_path / "ap_table.tex", tmp_path / "fddb_table.tex"}


def test_pr_legend_is_method_ap_sorted_by_ap(reports: list[RunReport]) -> None:
    methods = {r.name: r.wider["matlab"] for r in reversed(reports[:2])}  # weak one first
    _, axes = plot_wider_pr(methods)
    for ax, s in zip(axes, ("easy", "medium", "hard"), strict=True):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        expected = sorted(((n, r.ap[s]) for n, r in methods.items()), key=lambda x: -x[1])
        assert labels == [f"{n}-{ap:.3f}" for n, ap in expected]


def test_legend_puts_nan_ap_last() -> None:
    curve = {"precision": np.array([1.0, 0.5]), "recall": np.array([0.1, 0.2])}
    nan = {"precision": np.full(2, np.nan), "recall": np.zeros(2)}
    a = WiderResult("matlab", {"hard": float("nan")}, {"hard": nan}, 1, 0)
    b = WiderResult("matlab", {"hard": 0.25}, {"hard": curve}, 1, 2)
    _, axes = plot_wider_pr({"A": a, "B": b}, settings=("hard",))
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["B-0.250", "A-nan"]


def test_latex_golden() -> None:
    table = GroupedTable(
        groups=(("matlab", ("easy", "hard")),),
        rows=(("A & B", 3, (Cell(0.91234, (0.9, 0.93)), Cell(0.5))),
              ("c_d", 3, (Cell(0.8), Cell(text="crash")))), note="AP")
    assert table_latex(table) == (
        "% AP\n% requires \\usepackage{booktabs}\n\\begin{tabular}{lrcc}\n\\toprule\n"
        " &  & \\multicolumn{2}{c}{matlab} \\\\\n\\cmidrule(lr){3-4}\n"
        "Method & Images & Easy & Hard \\\\\n\\midrule\n"
        "A \\& B & 3 & \\textbf{0.912} {\\scriptsize[0.900, 0.930]} & \\textbf{0.500} \\\\\n"
        "c\\_d & 3 & 0.800 & crash \\\\\n\\bottomrule\n\\end{tabular}\n")
    assert "| A & B | 3 | 0.9123 [0.9000, 0.9300] | 0.5000 |" in table_markdown(table)


def test_speed_point_and_hardware_edge_cases() -> None:
    assert hardware_label({}) == "unknown hardware"
    assert hardware_label({"cluster": {"num_gpus_per_worker": None, "num_workers": 1}}) == (
        "auto (GPU if any), 1 worker")
    assert speed_point("x", {"timing": {"images_per_second": 0.0}}, 0.5) is None
    assert speed_point("x", {}, 0.5) is None
    p = speed_point("x", {"timing": {"images_per_second": 3}}, 0.5, (0.4, 0.6))
    assert p is not None and p.hardware == "unknown hardware"
    fig, ax = plot_speed([p])
    assert ax.get_xscale() == "log" and ax.get_legend().get_texts()[0].get_text() == (
        "x-0.500 (unknown hardware)")
    with pytest.raises(ValueError, match="at least one run"):
        plot_speed([])


def test_bootstrap_must_be_a_count(reports: list[RunReport], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="replicate count"):
        write_comparison(reports, tmp_path, bootstrap=-1)
