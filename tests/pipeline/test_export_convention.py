"""The WIDER box convention: a release-r152 run is exported (and evaluated from Parquet) with
the official ``w = x2 - x1 + 1``; runs of models trained here keep ``w = x2 - x1``; the
receipt records which."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth, WiderImageRecord
from pipeline.datasets.wider.annotations import ATTRIBUTE_NAMES
from pipeline.exports.wider import box_convention, export_wider_txt
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from reports.wider.predictions import read_run_predictions
from tests.rundir_support import write_run_dir


def _run(root: Path, model: str) -> Path:
    dets = pa.table({"image_id": ["ev/a"], "x1": pa.array([10.25], pa.float32()),
                     "y1": pa.array([20.0], pa.float32()), "x2": pa.array([30.5], pa.float32()),
                     "y2": pa.array([44.0], pa.float32()), "score": pa.array([0.9], pa.float32())},
                    schema=DETECTIONS_SCHEMA)
    images = pa.table({"image_id": ["ev/a"], "path": ["/x/ev/a.jpg"],
                       "width": pa.array([64], pa.int32()), "height": pa.array([64], pa.int32()),
                       "status": ["ok"], "error": pa.array([None], pa.string()),
                       "num_detections": pa.array([1], pa.int32()), "seconds": [0.1]},
                      schema=IMAGES_SCHEMA)
    write_run_dir(root, [(dets, images)], config={"model": {"name": model, "checksum": "0"}},
                  record={"model": {"name": model, "checksum": "0"}})
    return root


@pytest.mark.parametrize(("model", "convention", "line"), [
    ("release-r152", "inclusive", "10 20 22 25 0.900"),  # ceil(20.25 + 1), ceil(24 + 1)
    ("resnet50", "exclusive", "10 20 21 24 0.900"),
])
def test_export_follows_the_runs_model(tmp_path: Path, model: str, convention: str,
                                       line: str) -> None:
    run = _run(tmp_path / "run", model)
    out = tmp_path / "txt"
    export_wider_txt(run, out)
    assert (out / "ev" / "a.txt").read_text().splitlines() == ["a", "1", line]
    receipt = json.loads((tmp_path / ".txt.dsfd-export.json").read_text())
    assert receipt["box_convention"] == convention
    export_wider_txt(run, out, convention="exclusive")  # an explicit choice wins, and replaces
    assert (out / "ev" / "a.txt").read_text().splitlines()[2] == "10 20 21 24 0.900"


def test_a_release_run_is_evaluated_as_its_submission_writes_it(tmp_path: Path) -> None:
    gt = WiderGroundTruth.from_records(
        [WiderImageRecord("ev/a", np.asarray([[10, 20, 21, 25]], np.int32),
                          {a: np.zeros(1, np.uint8) for a in ATTRIBUTE_NAMES})],
        {s: [np.asarray([0], np.int64)] for s in SETTINGS})
    for model, width in (("release-r152", 30.5 - 10.25 + 1), ("resnet50", 30.5 - 10.25)):
        pred = read_run_predictions(_run(tmp_path / model, model), gt)
        np.testing.assert_allclose(pred.images["ev/a"].boxes_xywh[0, 2], width)
    assert box_convention({"config": {"model": {"name": "release-r152"}}}) == "inclusive"
    assert box_convention({}) == "exclusive"
