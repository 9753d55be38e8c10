"""FDDB evaluator: oracle outputs byte for byte, masks, merge rules, edge cases, run-dir input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.boxes import xyxy_to_xywh
from pipeline.datasets.fddb import (
    FddbDetections,
    FddbImage,
    read_detections,
    read_ellipse_list,
    read_image_sizes_tsv,
    write_detections,
)
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from reports.fddb import (
    detections_from_run_dir,
    evaluate_fddb,
    read_roc_file,
    roc_lines,
    tpr_at_fp,
    write_roc,
)
from reports.fddb.overlap import MaskPainter, overlap_matrix
from tests.oracles.fddb_overlap_reference import overlap_matrix_reference
from tests.rundir_support import write_run_dir

CASE = Path("oracle_public/cases/fddb_pub")


def _case(data_dir: Path):
    case = data_dir / CASE
    return (
        case,
        read_ellipse_list(case / "ellipseList.txt"),
        read_image_sizes_tsv(case / "sizes.tsv"),
    )


@pytest.mark.parametrize(
    ("fmt", "kind", "det_file"),
    [("0", "rect", "dets_rect.txt"), ("1", "ellipse", "dets_ellipse.txt")],
)
def test_oracle_case_byte_identical(
    data_dir: Path, tmp_path: Path, fmt: str, kind: str, det_file: str
) -> None:
    case, annotations, sizes = _case(data_dir)
    roc = evaluate_fddb(annotations, read_detections(case / det_file, kind), sizes, kind)  # type: ignore[arg-type]
    disc, cont = write_roc(tmp_path / "my_", roc)
    assert disc.read_bytes() == (case / "expected" / f"f{fmt}_DiscROC.txt").read_bytes()
    assert cont.read_bytes() == (case / "expected" / f"f{fmt}_ContROC.txt").read_bytes()


def test_cropped_masks_equal_whole_image_masks() -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        width, height = int(rng.integers(20, 90)), int(rng.integers(20, 90))
        ann = np.column_stack(
            [
                rng.uniform(0, 40, 4),
                rng.uniform(0, 30, 4),
                rng.uniform(-3.2, 3.2, 4),
                rng.uniform(-20, width + 20, 4),
                rng.uniform(-20, height + 20, 4),
            ]
        )
        rects = np.column_stack(
            [
                rng.uniform(-30, width, 6).round(1),
                rng.uniform(-30, height, 6).round(1),
                rng.uniform(-5, 60, 6).round(1),
                rng.uniform(-5, 60, 6).round(1),
            ]
        )
        for dets, kind in ((rects, "rect"), (ann[::-1] + rng.normal(0, 2, ann.shape), "ellipse")):
            dets = np.abs(dets) if kind == "ellipse" else dets
            fast = overlap_matrix(ann, dets, kind, width, height)  # type: ignore[arg-type]
            slow = overlap_matrix_reference(ann, dets, kind, width, height)  # type: ignore[arg-type]
            np.testing.assert_array_equal(fast, slow)


def test_rectangle_pixels_inclusive_clipped_and_half_even() -> None:
    painter = MaskPainter(20, 20)
    assert painter.mask([2, 3, 4, 5], "rect").count == 5 * 6  # both corners inclusive
    assert painter.mask([-5, -5, 9, 9], "rect").count == 5 * 5  # clipped to the image
    assert painter.mask([2.5, 0, 1, 0], "rect").count == 3  # rint(2.5)=2, rint(3.5)=4
    assert painter.mask([30, 30, 5, 5], "rect").count == 0  # outside
    assert not painter.canvas.any()


def _scene(score_sets, sizes=(100, 80)):
    face = np.array([[20.0, 14.0, 1.2, 40.0, 40.0]])
    annotations, detections, size_map = [], [], {}
    for k, scores in enumerate(score_sets):
        image_id = f"s/img_{k}"
        annotations.append(FddbImage(image_id, face if k % 2 == 0 else np.repeat(face, 2, 0)))
        regions = [face[0] if s > 0.8 else [8.0, 6.0, 0.0, 85.0, 10.0] for s in scores]
        detections.append(
            FddbDetections(
                image_id, np.array(regions).reshape(-1, 5), np.array(scores, dtype=float)
            )
        )
        size_map[image_id] = sizes
    return annotations, detections, size_map


def test_hand_computed_merge_with_an_image_without_detections() -> None:
    # image 0: one face, an exact detection (0.9, overlap 1) and a false positive (0.5);
    # image 1: two faces (the same ellipse twice), no detections.
    annotations, detections, sizes = _scene([[0.9, 0.5], []])
    roc = evaluate_fddb(annotations, detections, sizes, "ellipse")
    disc, cont = roc_lines(roc)
    assert disc == ["0.333333 1 0.5", "0.333333 0 0.9", "0 0 1.79769e+308"]
    assert cont == ["0.333333 1", "0.333333 0", "0 0"]


def test_tied_and_negative_scores_and_transposed_problem() -> None:
    # image 0: one face, detections at -1.5 (two, tied) and 2.0 (exact); image 1: two faces,
    # one exact detection with score -1.5 (more rows than columns: transposed problem)
    annotations, detections, sizes = _scene([[-1.5, -1.5, 2.0], [3.0]])
    detections[0].scores[:] = [-1.5, -1.5, 2.0]
    detections[1].scores[:] = [-1.5]
    roc = evaluate_fddb(annotations, detections, sizes, "ellipse")
    assert roc.thresholds.tolist() == [-1.5, 2.0]
    assert roc.fp.tolist() == [2, 0]
    assert roc.tp_disc.tolist() == [2, 1]
    assert roc.num_faces == 3
    assert roc_lines(roc)[0] == ["0.666667 2 -1.5", "0.333333 0 2"]


def test_detection_outside_the_image_is_a_false_positive() -> None:
    annotations, detections, sizes = _scene([[0.9]])
    outside = FddbDetections("s/img_0", np.array([[500.0, 500.0, 20.0, 20.0]]), np.array([0.7]))
    roc = evaluate_fddb(annotations, [outside], sizes, "rect")
    assert roc_lines(roc)[0] == ["0 1 0.7"]


def test_counts_written_as_float_are_read_as_integers(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_text("s/img_0\n1.0\n40 40 1 1 0.25\n")
    annotations, _, sizes = _scene([[0.9]])
    roc = evaluate_fddb(annotations, read_detections(path, "rect"), sizes, "rect")
    assert roc.fp.tolist() == [1]


def test_detection_file_must_follow_annotation_order() -> None:
    annotations, detections, sizes = _scene([[0.9], [0.9]])
    with pytest.raises(ValueError, match="image 1 is 's/img_1'"):
        evaluate_fddb(annotations, detections[::-1], sizes, "ellipse")


def test_tpr_at_fp_face_eval_rule() -> None:
    tpr = np.array([0.9, 0.8, 0.7, 0.5])
    fp = np.array([1500.0, 999.0, 400.0, 0.0])
    assert tpr_at_fp(tpr, fp, 1000) == 0.8
    assert tpr_at_fp(tpr, fp, 999) == 0.7  # strictly below the budget
    assert tpr_at_fp(tpr, fp, 100) == 0.5
    assert math.isnan(tpr_at_fp(tpr, fp, 0))


def _write_run_dir(run_dir: Path, dets: list[FddbDetections]) -> list[FddbDetections]:
    """Store rectangles as float32 xyxy in two parts (images split across them)."""
    parts: list[list[tuple]] = [[], []]
    stored = []
    for k, det in enumerate(dets):
        x1 = det.regions[:, 0].astype(np.float32)
        y1 = det.regions[:, 1].astype(np.float32)
        x2 = (det.regions[:, 0] + det.regions[:, 2]).astype(np.float32)
        y2 = (det.regions[:, 1] + det.regions[:, 3]).astype(np.float32)
        score = det.scores.astype(np.float32)
        for row in zip(x1, y1, x2, y2, score, strict=True):
            parts[k % 2].append((det.image_id, *row))
        xyxy = np.stack([x1, y1, x2, y2], axis=1)
        stored.append(FddbDetections(det.image_id, xyxy_to_xywh(xyxy), score.astype(float)))
    pairs = []
    for rows in parts:
        columns = list(zip(*rows, strict=True)) if rows else [[]] * 6
        table = pa.table(
            {name: list(col) for name, col in zip(DETECTIONS_SCHEMA.names, columns, strict=True)},
            schema=DETECTIONS_SCHEMA,
        )
        ids = list(dict.fromkeys(r[0] for r in rows))  # the images with detections
        images = pa.table({"image_id": ids, "path": ids, "width": pa.array([0] * len(ids),
                                                                           pa.int32()),
                           "height": pa.array([0] * len(ids), pa.int32()),
                           "status": ["ok"] * len(ids), "error": pa.array([None] * len(ids),
                                                                          pa.string()),
                           "num_detections": pa.array([sum(r[0] == i for r in rows)
                                                       for i in ids], pa.int32()),
                           "seconds": [0.0] * len(ids)}, schema=IMAGES_SCHEMA)
        pairs.append((table, images))
    write_run_dir(run_dir, pairs)
    return stored


def test_run_dir_input_equals_detection_file_input(data_dir: Path, tmp_path: Path) -> None:
    case, annotations, sizes = _case(data_dir)
    dets = read_detections(case / "dets_rect.txt", "rect")
    stored = _write_run_dir(tmp_path / "run", dets)
    from_run = detections_from_run_dir(tmp_path / "run")
    assert set(from_run) == {d.image_id for d in dets if d.num_detections}
    write_detections(tmp_path / "dets.txt", stored, "rect")
    from_file = read_detections(tmp_path / "dets.txt", "rect")
    roc_run = evaluate_fddb(annotations, from_run, sizes, "rect")
    roc_file = evaluate_fddb(annotations, from_file, sizes, "rect")
    assert roc_lines(roc_run) == roc_lines(roc_file)
    write_roc(tmp_path / "r_", roc_run)
    assert read_roc_file(tmp_path / "r_DiscROC.txt").shape == (len(roc_run.fp), 3)
