"""The evaluators speak up: non-finite values refused with file and line, degenerate boxes
warned about (and evaluated exactly as before), annotated images without a prediction counted
on stderr, in the results and in the report. Inputs are real files written in ``tmp_path``
(a small synthetic benchmark) and the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jobs.cli import main
from pipeline.datasets.fddb import FddbDetections, read_annotations, write_detections
from pipeline.datasets.wider import WiderGroundTruth
from pipeline.synthetic import SynthConfig, generate_benchmark
from reports.fddb import FddbResult, FddbRoc, detections_from_run_dir, evaluate_fddb, roc_lines
from reports.report import RunReport, ap_rows, fddb_rows, render_html, render_markdown
from reports.wider import (
    ImageDetections,
    WiderPredictions,
    WiderResult,
    evaluate_predictions,
    load_ground_truth,
)
from reports.wider.predictions import parse_matlab_txt, read_txt_predictions, stable_descending
from tests.oracles.wider_reference import reference_evaluate
from tests.reports.test_wider_helpers import write_run_dir

FLAVOURS = ("matlab", "pyport")
Dets = dict[str, tuple[np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, SynthConfig(seed=3, num_val=6, num_train=0, num_fddb=20))
    return out


@pytest.fixture(scope="module")
def gt(bench: Path) -> WiderGroundTruth:
    return load_ground_truth(bench / "wider")


def _detections(gt: WiderGroundTruth, seed: int = 0) -> Dets:
    """Jittered faces and two far false positives per image; 3-decimal distinct scores."""
    rng = np.random.default_rng(seed)
    dets: Dets = {}
    for img in gt:
        faces = img.boxes_xywh.astype(np.float64)
        kept = faces[rng.random(len(faces)) < 0.7]
        boxes = np.round(kept + rng.normal(0, 1.5, kept.shape), 1)
        boxes = np.concatenate([boxes, [[600.0, 5.0, 20.0, 25.0], [5.0, 600.0, 12.0, 9.0]]])
        scores = rng.permutation(np.arange(100, 100 + len(boxes))) / 1000.0
        dets[img.image_id] = (boxes, scores)
    return dets


def _with_degenerate_boxes(gt: WiderGroundTruth, dets: Dets) -> Dets:
    """Image 0: three degenerate boxes on lines 5, 7 and 8; image 1: one on line 3."""
    out = dict(dets)
    first, second = gt.image_ids[:2]
    boxes, scores = (a.copy() for a in out[first])
    face = gt.images[0].boxes_xywh.astype(np.float64)
    boxes[2], boxes[4], boxes[5] = [*face[0, :2], 0, 11], [*face[1, :2], 9, -3], [1, 1, -1.5, 0]
    out[first] = (boxes, scores)
    boxes, scores = (a.copy() for a in out[second])
    boxes[0] = [*gt.images[1].boxes_xywh[0, :2].astype(float), 26.0, 0.0]
    out[second] = (boxes, scores)
    return out


def _write_txt(folder: Path, dets: Dets, skip: tuple[str, ...] = ()) -> None:
    """Official-format files ``folder/EVENT/NAME.txt`` (numbers as Python reprs)."""
    for image_id, (boxes, scores) in dets.items():
        if image_id in skip:
            continue
        event, name = image_id.split("/", 1)
        rows = [" ".join(repr(float(v)) for v in (*b, s))
                for b, s in zip(boxes, scores, strict=True)]
        (folder / event).mkdir(parents=True, exist_ok=True)
        (folder / event / f"{name}.txt").write_text("\n".join([name, str(len(rows)), *rows]) + "\n")


def _run_rows(dets: Dets, image_ids: list[str] | None = None) -> list[tuple]:
    """Run rows (image_id, x1, y1, x2, y2, score) of ``image_ids`` (default: all)."""
    return [(i, *b[:2], *(b[:2] + b[2:]), s) for i in (image_ids or list(dets))
            for b, s in zip(*dets[i], strict=True)]


def _in_memory(flavour: str, dets: Dets) -> WiderPredictions:
    """The same numbers as predictions built directly (no file, no reader, no warning)."""
    images = {}
    for image_id, (boxes, scores) in dets.items():
        order = stable_descending(scores) if flavour == "matlab" else np.arange(len(scores))
        images[image_id] = ImageDetections(boxes[order], scores[order])
    return WiderPredictions(flavour, images)


def _eval_wider(capsys, pred: Path, gt_dir: Path, flavour: str, json_path: Path):
    rc = main(["eval", "wider", "--pred", str(pred), "--gt", str(gt_dir), "--flavour", flavour,
               "--json", str(json_path)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


# ------------------------------------------------------------------- WIDER: non-finite values


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize(("column", "token"), [("score", "nan"), ("score", "inf"),
                                               ("x", "nan"), ("h", "-inf"), ("w", "inf")])
def test_non_finite_txt_value_is_refused_with_file_and_line(
    bench, gt, tmp_path, capsys, flavour, column, token
) -> None:
    _write_txt(tmp_path / "pred", _detections(gt))
    image_id = gt.image_ids[2]
    event, name = image_id.split("/", 1)
    path = tmp_path / "pred" / event / f"{name}.txt"
    lines = path.read_text().splitlines()
    values = lines[3].split()  # line 4: the second detection
    values[("x", "y", "w", "h", "score").index(column)] = token
    lines[3] = " ".join(values)
    path.write_text("\n".join(lines) + "\n")
    rc, out, err = _eval_wider(capsys, tmp_path / "pred", bench / "wider", flavour,
                               tmp_path / "r.json")
    assert rc == 1 and len(err) == 1, err
    assert f"{path}: line 4: {column} is {float(token)!r}" in err[0]
    assert "must be finite" in err[0] and "AP" not in out
    assert not (tmp_path / "r.json").exists()


def test_matlab_reads_only_the_counted_lines_the_port_reads_all(gt, tmp_path) -> None:
    # a nan after the counted lines never reaches read_pred.m; the port parses every line
    text = "n\n1\n1 2 3 4 0.5\n1 2 3 4 nan\n"
    det = parse_matlab_txt(text, "f.txt")
    assert det is not None and det.scores.tolist() == [0.5]
    _write_txt(tmp_path / "pred", _detections(gt))
    event, name = gt.image_ids[0].split("/", 1)
    path = tmp_path / "pred" / event / f"{name}.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "1", *lines[2:], "1 2 3 4 nan"]) + "\n")
    assert len(read_txt_predictions(tmp_path / "pred", gt, "matlab").images[gt.image_ids[0]]) == 1
    with pytest.raises(ValueError, match=rf"line {len(lines) + 1}: score is nan"):
        read_txt_predictions(tmp_path / "pred", gt, "pyport")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_non_finite_run_row_is_refused_with_image_and_row(bench, gt, tmp_path, capsys,
                                                          flavour) -> None:
    rows = _run_rows(_detections(gt))
    bad = 7
    rows[bad] = (*rows[bad][:5], float("nan"))
    write_run_dir(tmp_path / "run", rows, gt.image_ids)
    rc, _, err = _eval_wider(capsys, tmp_path / "run", bench / "wider", flavour,
                             tmp_path / "r.json")
    assert rc == 1 and len(err) == 1, err
    where = tmp_path / "run" / "detections"
    assert f"{where}: row {bad + 1} (image {rows[bad][0]}): score is nan" in err[0]


# --------------------------------------------------------------------- WIDER: degenerate boxes


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_degenerate_boxes_warned_once_per_file_and_ap_unchanged(
    bench, gt, tmp_path, capsys, flavour
) -> None:
    dets = _with_degenerate_boxes(gt, _detections(gt))
    _write_txt(tmp_path / "pred", dets)
    rc, _, err = _eval_wider(capsys, tmp_path / "pred", bench / "wider", flavour,
                             tmp_path / "r.json")
    assert rc == 0
    first, second = (tmp_path / "pred" / f"{i}.txt" for i in gt.image_ids[:2])
    tail = "with zero or negative width or height (evaluated as the official tools do)"
    expected = [f"dsfd eval wider: warning: {first}: line 5: 3 boxes {tail}",
                f"dsfd eval wider: warning: {second}: line 3: 1 box {tail}"]
    assert sorted(err) == sorted(expected)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert sorted(doc["warnings"]) == sorted(e.split("warning: ", 1)[1] for e in expected)
    # the same numbers evaluated without any file: identical AP and PR curves
    direct, _ = evaluate_predictions(_in_memory(flavour, dets), gt)
    assert doc["ap"] == direct.ap
    for s, curves in direct.pr.items():
        for key, values in curves.items():
            got = np.array([np.nan if v is None else v for v in doc["pr"][s][key]])
            np.testing.assert_array_equal(got, values)
    assert reference_evaluate(_in_memory(flavour, dets), gt) == direct.ap
    assert direct.warnings == () and doc["num_images_without_prediction"] == 0


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_degenerate_boxes_in_a_run_give_one_warning(bench, gt, tmp_path, capsys,
                                                    flavour) -> None:
    dets = _with_degenerate_boxes(gt, _detections(gt))
    rows = _run_rows(dets)
    write_run_dir(tmp_path / "run", rows, gt.image_ids)
    rc, _, err = _eval_wider(capsys, tmp_path / "run", bench / "wider", flavour,
                             tmp_path / "r.json")
    assert rc == 0
    assert err == [f"dsfd eval wider: warning: {tmp_path / 'run' / 'detections'}: 4 boxes with "
                   f"zero or negative width or height on 2 images (first: {gt.image_ids[0]}) "
                   "(evaluated as the official tools do)"]


# ------------------------------------------------------- images without prediction (both)


def test_wider_missing_files_counted_on_stderr_and_in_json(bench, gt, tmp_path, capsys) -> None:
    skip = (gt.image_ids[4], gt.image_ids[1])
    _write_txt(tmp_path / "pred", _detections(gt), skip=skip)
    rc, out, err = _eval_wider(capsys, tmp_path / "pred", bench / "wider", "matlab",
                               tmp_path / "r.json")
    assert rc == 0
    assert err == [f"dsfd eval wider: warning: 2 of 6 annotated images have no prediction "
                   f"(first: {gt.image_ids[1]}); they count as missed faces"]
    assert out.count("Can not find the prediction file") == 2  # the tool's own stdout lines
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["num_images_without_prediction"] == 2
    assert doc["images_without_prediction"] == [gt.image_ids[1], gt.image_ids[4]]


def test_wider_run_covering_a_subset_is_counted(bench, gt, tmp_path, capsys) -> None:
    dets = _detections(gt)
    covered = gt.image_ids[:3]  # image 2 covered, with no detections: it counts as predicted
    rows = _run_rows(dets, covered[:2])
    write_run_dir(tmp_path / "run", rows, covered)
    rc, _, err = _eval_wider(capsys, tmp_path / "run", bench / "wider", "matlab",
                             tmp_path / "r.json")
    assert rc == 0
    assert err == [f"dsfd eval wider: warning: 3 of 6 annotated images have no prediction "
                   f"(first: {gt.image_ids[3]}); they count as missed faces"]
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["images_without_prediction"] == gt.image_ids[3:]


def _fddb_rows(annotations, count: int, empty: int) -> list[tuple]:
    """Run rows (image_id, x1, y1, x2, y2, score): each face's bounding box, for the first
    ``count`` images except image ``empty``."""
    rows = []
    for k, a in enumerate(annotations[:count]):
        if k == empty:
            continue
        for j, (ra, rb, _, cx, cy) in enumerate(a.ellipses):
            rows.append((a.image_id, cx - rb, cy - ra, cx + rb, cy + ra, 0.5 + j / 100))
    return rows


def test_fddb_run_covering_5_of_20_images(bench, tmp_path, capsys) -> None:
    annotations = read_annotations(bench / "fddb")
    ids = [a.image_id for a in annotations]
    assert len(ids) == 20
    # images 0..5 covered (image 3 with no detection: predicted), 6..19 never
    write_run_dir(tmp_path / "run", _fddb_rows(annotations, 6, empty=3), ids[:6])
    rc = main(["eval", "fddb", "--pred", str(tmp_path / "run"), "--annotations",
               str(bench / "fddb"), "--sizes", str(bench / "fddb" / "originalPics"),
               "--out", str(tmp_path / "f_")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0
    assert err == [f"dsfd eval fddb: warning: 14 of 20 annotated images have no prediction "
                   f"(first: {ids[6]}); they count as missed faces"]
    summary = json.loads((tmp_path / "f_fddb.json").read_text())
    assert summary["num_images_without_prediction"] == 14
    assert summary["images_without_prediction"] == ids[6:]


def test_fddb_missing_images_change_no_number(bench) -> None:
    from pipeline.datasets.fddb import read_image_sizes_from_dir

    annotations = read_annotations(bench / "fddb")
    ids = [a.image_id for a in annotations]
    sizes = read_image_sizes_from_dir(bench / "fddb" / "originalPics", ids, ".jpg")
    dets = {}
    for image_id, x1, y1, x2, y2, s in _fddb_rows(annotations, 5, empty=-1):
        box = np.array([[x1, y1, x2 - x1, y2 - y1]])
        d = dets.get(image_id)
        dets[image_id] = FddbDetections(
            image_id, box if d is None else np.concatenate([d.regions, box]),
            np.array([s]) if d is None else np.append(d.scores, s))
    partial = evaluate_fddb(annotations, dets, sizes, "rect")
    full = {i: dets.get(i, FddbDetections(i, np.zeros((0, 4)), np.zeros(0))) for i in ids}
    complete = evaluate_fddb(annotations, full, sizes, "rect")
    assert partial.images_without_prediction == tuple(ids[5:])
    assert complete.num_images_without_prediction == 0
    assert roc_lines(partial) == roc_lines(complete)
    listed = evaluate_fddb(annotations, [full[i] for i in ids], sizes, "rect")
    assert listed.num_images_without_prediction == 0


def test_fddb_detection_file_lists_every_image(bench, tmp_path, capsys) -> None:
    annotations = read_annotations(bench / "fddb")
    empty = [FddbDetections(a.image_id, np.zeros((0, 4)), np.zeros(0)) for a in annotations]
    write_detections(tmp_path / "dets.txt", empty, "rect")
    rc = main(["eval", "fddb", "--pred", str(tmp_path / "dets.txt"), "--annotations",
               str(bench / "fddb"), "--sizes", str(bench / "fddb" / "originalPics"),
               "--out", str(tmp_path / "f_")])
    assert rc == 0 and capsys.readouterr().err == ""
    summary = json.loads((tmp_path / "f_fddb.json").read_text())
    assert summary["num_images_without_prediction"] == 0


def test_run_dir_images_without_detections_are_predicted(tmp_path) -> None:
    write_run_dir(tmp_path / "run", [("a/b", 1.0, 2.0, 5.0, 8.0, 0.9)], ["a/b", "a/c"])
    dets = detections_from_run_dir(tmp_path / "run")
    assert sorted(dets) == ["a/b", "a/c"] and dets["a/c"].num_detections == 0
    assert dets["a/b"].regions.tolist() == [[1.0, 2.0, 4.0, 6.0]]


# --------------------------------------------------------------------------------- report


def test_report_tables_show_images_without_prediction(tmp_path) -> None:
    curve = {"precision": np.full(1000, 0.5), "recall": np.full(1000, 0.25)}
    wider = WiderResult("matlab", {"easy": 0.1, "medium": 0.2, "hard": 0.3},
                        {s: curve for s in ("easy", "medium", "hard")}, num_images=20,
                        num_detections=9, images_without_prediction=("e/x", "e/y", "e/z"))
    roc = FddbRoc(np.array([0.5]), np.array([1.0]), np.array([1]), np.array([0]), 4,
                  images_without_prediction=tuple(f"f/{k}" for k in range(15)))
    runs = [RunReport("w", tmp_path, {}, "wider", num_images=20, wider={"matlab": wider},
                      wider_errors={"pyport": "crash"}),
            RunReport("f", tmp_path, {}, "fddb", num_images=20,
                      fddb={"rectangles": FddbResult(roc, 20, "rect", "identity", 1000.0,
                                                     tpr_disc=0.25, tpr_cont=0.2)})]
    assert ap_rows(runs) == [["w", "20", "matlab", "0.1000", "0.2000", "0.3000", "3"],
                             ["w", "20", "pyport", "port crashes", "", "", ""]]
    assert fddb_rows(runs) == [["f", "rectangles", "0.2500", "0.2000", "15"]]
    md = render_markdown(runs)
    assert "| run | images | flavour | easy | medium | hard | no prediction |" in md
    assert "| w | 20 | matlab | 0.1000 | 0.2000 | 0.3000 | 3 |" in md
    assert "| f | rectangles | 0.2500 | 0.2000 | 15 |" in md
    assert md.count("faces count as missed") == 2
    page = render_html(runs, {"pr": [], "roc": [], "gallery": []}, [], None)
    assert page.count("<th>no prediction</th>") == 2 and "<td>15</td>" in page
