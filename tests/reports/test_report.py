"""The HTML/Markdown report: evaluated from run directories, checked in headless Chromium.

The run directories here are written directly (Parquet + run.json) from the synthetic
benchmark's ground truth, jittered, so the report layer is tested without torch or Ray.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.fddb import FddbDataset
from pipeline.datasets.wider import WiderDataset
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.synthetic import SynthConfig, generate_benchmark
from reports.report import ap_rows, fddb_rows, render_markdown, write_report
from reports.wider import evaluate_run
from tests.rundir_support import write_run_dir


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, SynthConfig(seed=3, num_val=8, num_train=1, num_fddb=10))
    return out


def _write_run(run_dir: Path, dataset: dict, rows: list[tuple[str, str, int, int, np.ndarray]]):
    """rows: (image_id, path, width, height, dets (N,5) xyxy+score)."""
    det_cols: dict[str, list] = {k: [] for k in ("image_id", "x1", "y1", "x2", "y2", "score")}
    for image_id, _, _, _, dets in rows:
        for d in dets:
            det_cols["image_id"].append(image_id)
            for k, v in zip(("x1", "y1", "x2", "y2", "score"), d, strict=True):
                det_cols[k].append(float(v))
    images = {
        "image_id": [r[0] for r in rows], "path": [r[1] for r in rows],
        "width": [r[2] for r in rows], "height": [r[3] for r in rows],
        "status": ["ok"] * len(rows), "error": [None] * len(rows),
        "num_detections": [len(r[4]) for r in rows], "seconds": [0.1] * len(rows),
    }
    write_run_dir(run_dir, [(pa.table(det_cols, schema=DETECTIONS_SCHEMA),
                             pa.table(images, schema=IMAGES_SCHEMA))],
                  config={"dataset": dataset},
                  record={"dataset_spec": "test",
                          "model": {"name": "jittered-gt", "checksum": "0" * 64, "spec": "test"},
                          "versions": {"python": sys.version.split()[0]},
                          "timing": {"seconds": 1.0, "images_per_second": 8.0}})


def _jitter(boxes_xyxy: np.ndarray, rng: np.random.Generator, keep: float) -> np.ndarray:
    n = len(boxes_xyxy)
    chosen = boxes_xyxy[rng.random(n) < keep]
    size = (chosen[:, 2:] - chosen[:, :2]).repeat(2, axis=0).reshape(-1, 4)
    noisy = chosen + rng.normal(0, 0.05, chosen.shape) * size
    fps = rng.uniform(0, 200, (3, 2))
    fps = np.concatenate([fps, fps + 20], axis=1)
    boxes = np.concatenate([noisy, fps])
    scores = rng.uniform(0.3, 1.0, len(boxes))
    return np.concatenate([boxes, scores[:, None]], axis=1)


@pytest.fixture(scope="module")
def runs(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("runs")
    wider = WiderDataset(bench / "wider", "val")
    gt = wider.ground_truth()
    paths = {e.image_id: e.path for e in wider.iter_manifest()}
    rows = []
    for img in gt:
        b = img.boxes_xywh.astype(np.float64)
        xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
        rows.append((img.image_id, paths[img.image_id], 640, 480, _jitter(xyxy, rng, 0.8)))
    _write_run(out / "wider", wider.describe(), rows)
    fddb = FddbDataset(bench / "fddb")
    fpaths = {e.image_id: e.path for e in fddb.iter_manifest()}
    rows = []
    for a in fddb.annotations():
        ra, rb, _, cx, cy = a.ellipses.T
        xyxy = np.stack([cx - rb, cy - ra, cx + rb, cy + ra], axis=1)
        rows.append((a.image_id, fpaths[a.image_id], 640, 640, _jitter(xyxy, rng, 0.9)))
    _write_run(out / "fddb", fddb.describe(), rows)
    return {"wider": out / "wider", "fddb": out / "fddb"}


def test_report_numbers_match_the_evaluators(runs: dict[str, Path], bench: Path,
                                             tmp_path: Path) -> None:
    html_path, md_path, reports = write_report([runs["wider"], runs["fddb"]], tmp_path / "r")
    wider = reports[0]
    direct = evaluate_run(runs["wider"], bench / "wider", flavour="matlab")
    assert wider.wider["matlab"].ap == direct.ap
    assert 0.2 < direct.ap["easy"] <= 1.0
    rows = ap_rows(reports)
    assert [r[:3] for r in rows] == [["wider", "8", "matlab"], ["wider", "8", "pyport"]]
    assert rows[0][3] == f"{direct.ap['easy']:.4f}"
    fddb = fddb_rows(reports)
    assert [r[1] for r in fddb] == ["rectangles", "S3FD ellipses"]
    assert all(0.0 < float(r[2]) <= 1.0 for r in fddb)
    assert wider.attributes is not None and "scale" in wider.attributes["groups"]
    md = md_path.read_text()
    assert md.startswith(render_markdown(reports))
    assert "| wider | 8 | matlab |" in md and "FDDB" in md
    figures = sorted(p.name for p in (tmp_path / "r" / "figures").iterdir())
    for name in ("wider_pr_matlab.png", "wider_pr_matlab.pdf", "fddb_disc_roc.png",
                 "fddb_cont_roc.png", "gallery_0_false_positives.png"):
        assert name in figures
    page = html_path.read_text()
    assert page.count("<img ") == len([f for f in figures if f.endswith(".png")])
    assert "http://" not in page and "https://" not in page  # works offline


def test_report_cli_rejects_a_non_run_dir(tmp_path: Path) -> None:
    from jobs.cli import main

    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert not (tmp_path / "r").exists()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_page_loads_in_headless_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    html_path, _, _ = write_report([runs["wider"], runs["fddb"]], tmp_path / "r")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    shot = tmp_path / "page.png"
    dom = subprocess.run(
        [CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom",
         html_path.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dom.stdout)
    assert body is not None
    loaded = int(re.search(r'data-figures="(\d+)"', body.group(1)).group(1))  # type: ignore[union-attr]
    broken = int(re.search(r'data-broken="(\d+)"', body.group(1)).group(1))  # type: ignore[union-attr]
    assert loaded >= 5 and broken == 0
    console_errors = [line for line in dom.stderr.splitlines()
                      if "CONSOLE" in line and ("Uncaught" in line or "ERROR" in line)]
    assert console_errors == []
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,2400",
                    html_path.as_uri()], capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 10_000


def test_folder_run_report_creates_its_folder_and_shows_the_run_summary(tmp_path: Path) -> None:
    dets = np.array([[1, 1, 9, 9, 0.91], [2, 2, 8, 8, 0.15], [0, 0, 5, 5, 0.55]])
    run_dir = tmp_path / "photos-run"
    _write_run(run_dir, {"kind": "folder", "root": "/photos"},
               [("a.jpg", "/photos/a.jpg", 10, 10, dets), ("b.png", "/photos/b.png", 4, 4,
                                                          np.zeros((0, 5)))])
    # one unreadable image, through the real writer: a second shard with an error row
    from pipeline.rundir import RunDir

    images = pa.table({"image_id": ["bad.jpg"], "path": ["/photos/bad.jpg"],
                       "width": pa.array([None], pa.int32()),
                       "height": pa.array([None], pa.int32()), "status": ["error"],
                       "error": ["corrupt or truncated image: broken data stream"],
                       "num_detections": pa.array([0], pa.int32()), "seconds": [0.0]},
                      schema=IMAGES_SCHEMA)
    from pipeline.datasets.manifest import ManifestEntry
    from pipeline.shards import shard_digest

    with RunDir.open_for_writing(run_dir) as run:
        record = dict(run.record or {})
        writer = run.begin(record)
        writer.write(1, shard_digest([ManifestEntry("bad.jpg", "/photos/bad.jpg")]),
                     DETECTIONS_SCHEMA.empty_table(), images)
    out = tmp_path / "not" / "yet" / "there"
    html_path, md_path, reports = write_report([run_dir], out)
    md = md_path.read_text()
    assert reports[0].num_images == 3 and reports[0].num_errors == 1
    assert reports[0].num_detections == 3
    assert "| photos-run | test | jittered-gt | 3 |  | 1 | 3 | 0.55 | 8.00 |" in md
    assert "- `bad.jpg`: corrupt or truncated image: broken data stream" in md
    page = html_path.read_text()
    assert "score histogram" in page and "images that could not be read" in page
    assert (out / "figures" / "score_histogram.png").is_file()
