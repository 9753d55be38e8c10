"""The one entry point per benchmark: ``reports.wider.evaluate_run`` and
``reports.fddb.evaluate_run`` (flavour objects, JSON-able results, the report's defaults)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.fddb import read_detections, read_ellipse_list, read_image_sizes_tsv
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from reports.fddb import (
    S3FD_REGRESSOR,
    FddbResult,
    detections_from_run_dir,
    evaluate_fddb,
    roc_lines,
)
from reports.fddb import evaluate_run as evaluate_fddb_run
from reports.wider import (
    MATLAB,
    PYPORT,
    WiderPredictions,
    attribute_breakdown,
    evaluate_predictions,
    evaluate_run,
    flavour,
    result_from_json,
)
from reports.wider.predictions import ImageDetections
from tests.reports.test_wider_helpers import tiny_gt, write_run_dir
from tests.rundir_support import write_run_dir as write_parts

CASE = Path("oracle_public/cases/fddb_pub")


def test_flavour_lookup_names_the_choices() -> None:
    assert flavour("matlab") is MATLAB and flavour("pyport") is PYPORT
    assert flavour(PYPORT) is PYPORT and str(MATLAB) == "matlab"
    assert MATLAB.sorts_detections and not MATLAB.reads_every_file
    assert PYPORT.crashes_on_missing_image and not PYPORT.sorts_detections
    with pytest.raises(ValueError, match=r"one of \('matlab', 'pyport'\), got 'octave'"):
        flavour("octave")


def _gt_and_pred():
    gt = tiny_gt(
        {"e/a": [[0, 0, 10, 10], [20, 0, 10, 40]]},
        attributes={"e/a": {"blur": [0, 2]}},
    )
    boxes = np.array([[0, 0, 10, 10], [50, 50, 10, 10], [20, 0, 10, 40]], np.float64)
    pred = WiderPredictions("matlab", {"e/a": ImageDetections(boxes, np.array([0.9, 0.8, 0.7]))})
    return gt, pred


def test_wider_attributes_travel_in_the_result() -> None:
    gt, pred = _gt_and_pred()
    result = evaluate_run(pred, gt, MATLAB, attributes=True, target_precision=0.9)
    direct, state = evaluate_predictions(pred, gt, track_faces=True)
    assert result.ap == direct.ap
    assert result.attributes == attribute_breakdown(state, direct, gt, target_precision=0.9)
    doc = result.to_json()
    assert list(doc)[-1] == "attributes" and "attributes" not in direct.to_json()
    again = result_from_json(json.loads(json.dumps(doc)))
    assert again.attributes == result.attributes and again.ap == result.ap


def test_wider_refuses_a_bad_precision_before_reading(tmp_path: Path) -> None:
    gt, _ = _gt_and_pred()
    with pytest.raises(ValueError, match="target_precision"):
        evaluate_run(tmp_path / "missing", gt, attributes=True, target_precision=1.5)


def test_wider_predictions_of_another_flavour_are_refused() -> None:
    gt, pred = _gt_and_pred()
    with pytest.raises(ValueError, match="read for 'matlab', not 'pyport'"):
        evaluate_run(pred, gt, "pyport")


def test_wider_run_dir_in_both_flavours(tmp_path: Path) -> None:
    gt, _ = _gt_and_pred()
    rows = [("e/a", 0.0, 0.0, 10.0, 10.0, 0.9), ("e/a", 20.0, 0.0, 30.0, 40.0, 0.7)]
    write_run_dir(tmp_path / "run", rows, ["e/a"])
    for fl in (MATLAB, PYPORT):
        result = evaluate_run(tmp_path / "run", gt, fl)
        assert result.flavour == fl.name and result.ap["hard"] == pytest.approx(1.0)


def test_fddb_result_matches_the_computation_and_the_oracle(data_dir: Path) -> None:
    case = data_dir / CASE
    result = evaluate_fddb_run(case / "dets_rect.txt", case / "ellipseList.txt",
                               sizes=case / "sizes.tsv", fp_budget=1000.0)
    assert isinstance(result, FddbResult)
    disc, cont = roc_lines(result.roc)
    assert "\n".join(disc) + "\n" == (case / "expected" / "f0_DiscROC.txt").read_text()
    assert "\n".join(cont) + "\n" == (case / "expected" / "f0_ContROC.txt").read_text()
    annotations = read_ellipse_list(case / "ellipseList.txt")
    direct = evaluate_fddb(annotations, read_detections(case / "dets_rect.txt", "rect"),
                           read_image_sizes_tsv(case / "sizes.tsv"), "rect")
    assert roc_lines(direct) == (disc, cont)
    doc = result.to_json(with_roc=False)
    assert list(doc) == ["det_format", "ellipse", "fp_budget", "num_images", "num_faces",
                         "num_images_without_prediction", "images_without_prediction",
                         "num_points", "tpr_disc", "tpr_cont"]
    assert doc["num_images"] == len(annotations) and doc["num_points"] == len(disc)
    assert len(result.to_json()["roc"]["fp"]) == len(disc)


def test_fddb_ellipse_conversion_needs_rectangles(data_dir: Path) -> None:
    case = data_dir / CASE
    with pytest.raises(ValueError, match="det_format 'rect'"):
        evaluate_fddb_run(case / "dets_ellipse.txt", case / "ellipseList.txt",
                          sizes=case / "sizes.tsv", det_format="ellipse", ellipse="s3fd")
    with pytest.raises(ValueError, match="sizes are needed"):
        evaluate_fddb_run(read_detections(case / "dets_rect.txt", "rect"),
                          case / "ellipseList.txt")


def test_fddb_run_dir_without_sizes_is_scored_on_the_images_it_read(
    data_dir: Path, tmp_path: Path
) -> None:
    case = data_dir / CASE
    sizes = read_image_sizes_tsv(case / "sizes.tsv")
    dets = read_detections(case / "dets_rect.txt", "rect")[:30]  # 29 read, 1 unreadable
    rows = [(d.image_id, *r[:2], r[0] + r[2], r[1] + r[3], s)
            for d in dets for r, s in zip(d.regions.tolist(), d.scores.tolist(), strict=True)]
    det_table = pa.table({n: [r[k] for r in rows] for k, n in enumerate(DETECTIONS_SCHEMA.names)},
                         schema=DETECTIONS_SCHEMA)
    ids = [d.image_id for d in dets]
    status = ["ok"] * 29 + ["error"]
    images = pa.table({"image_id": ids, "path": [f"/x/{i}.jpg" for i in ids],
                       "width": [sizes[i][0] for i in ids], "height": [sizes[i][1] for i in ids],
                       "status": status, "error": [None] * 29 + ["unreadable"],
                       "num_detections": [d.num_detections for d in dets],
                       "seconds": [0.1] * 30}, schema=IMAGES_SCHEMA)
    write_parts(tmp_path / "run", [(det_table, images)])
    result = evaluate_fddb_run(tmp_path / "run", case / "ellipseList.txt", ellipse="s3fd")
    assert result.num_images == 29 and result.num_images_without_prediction == 0
    read = [a for a in read_ellipse_list(case / "ellipseList.txt") if a.image_id in ids[:29]]
    direct = evaluate_fddb(read, detections_from_run_dir(tmp_path / "run"), sizes, "rect",
                           to_ellipse=S3FD_REGRESSOR)
    assert roc_lines(direct) == roc_lines(result.roc)
