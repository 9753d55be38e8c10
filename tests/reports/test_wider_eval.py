"""WIDER evaluator: golden values, the slow transcription as oracle, invariances, edge cases,
per-attribute breakdown, figures and the export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.exports.wider import export_wider_txt
from reports.figures import save_figure
from reports.figures.wider_pr import plot_pr_curve, plot_wider_pr
from reports.wider import (
    ScoreBounds,
    WiderEvalState,
    WiderPortCrash,
    WiderPredictions,
    evaluate_image,
    evaluate_predictions,
    evaluate_run,
)
from reports.wider.attributes import attribute_breakdown, operating_index
from reports.wider.flavours import matlab_overlaps, pyport_overlaps, round_half_away
from reports.wider.predictions import (
    ImageDetections,
    parse_matlab_txt,
    read_txt_predictions,
    stable_descending,
)
from tests.oracles.wider_reference import reference_evaluate
from tests.reports.test_wider_helpers import tiny_gt, write_run_dir

REPO = Path(__file__).resolve().parents[2]


def _pred(flavour: str, dets: dict[str, tuple[list, list]], sort: bool | None = None):
    images = {}
    for k, (boxes, scores) in dets.items():
        d = ImageDetections(np.asarray(boxes, float).reshape(-1, 4), np.asarray(scores, float))
        if sort if sort is not None else flavour == "matlab":
            o = stable_descending(d.scores)
            d = ImageDetections(d.boxes_xywh[o], d.scores[o])
        images[k] = d
    return WiderPredictions(flavour, images)


# ---------------------------------------------------------------------------- golden values


@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_golden_hand_computed_ap(flavour) -> None:
    # Two faces. Detections: a hit on face 1 (0.9), a far false positive (0.8), a hit on
    # face 2 (0.7). Normalised scores 1, ~0.5, 0. Thresholds 0.999..0.001: 1 proposal, 1 TP
    # until ~0.5, then 2 proposals, 1 TP; at threshold 0: 3 proposals, 2 TP.
    # PR points (recall, precision): (0.5, 1), (0.5, 0.5), (1, 2/3).
    # AP = 0.5 * 1 + (1 - 0.5) * 2/3 = 5/6.
    gt = tiny_gt({"e/a": [[0, 0, 10, 10], [20, 0, 10, 10]]})
    pred = _pred(
        flavour, {"e/a": ([[0, 0, 10, 10], [50, 50, 10, 10], [20, 0, 10, 10]], [0.9, 0.8, 0.7])}
    )
    res, _ = evaluate_predictions(pred, gt)
    for s in ("easy", "medium", "hard"):
        assert res.ap[s] == pytest.approx(5 / 6, abs=1e-15)
        assert res.pr[s]["recall"][0] == 0.5 and res.pr[s]["precision"][0] == 1.0
        assert res.pr[s]["precision"][-1] == pytest.approx(2 / 3, abs=1e-15)
        assert res.pr[s]["recall"][-1] == 1.0


def test_int32_overlap_test_vectors_from_the_spec() -> None:
    # Checked in Octave with the official boxoverlap.m (protocol notes A.5).
    g = np.array([[10, 10, 20, 20]], np.int32)
    assert matlab_overlaps(g, np.array([[13.2, 15.2, 15.7, 21.0]]))[0, 0] == 1
    assert pyport_overlaps(g, np.array([[13.2, 15.2, 15.7, 21.0]]))[0, 0] == pytest.approx(
        0.484556, abs=1e-6
    )
    assert matlab_overlaps(g, np.array([[9.8, 12.5, 14.1, 14.7]]))[0, 0] == 0
    two = np.array([[10, 10, 20, 20], [12, 10, 20, 20]], np.int32)
    det = np.array([[12.0, 10.0, 20.0, 20.0]])
    assert matlab_overlaps(two, det)[0].tolist() == [1, 1]  # first max picks GT 1
    assert np.argmax(pyport_overlaps(two, det)[0]) == 1


def test_round_half_away_from_zero() -> None:
    v = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999, -0.49])
    assert round_half_away(v).tolist() == [1, 2, 3, -1, -3, 2, -0]


# ------------------------------------------------------------- reference (slow) as oracle


def _random_case(rng: np.random.Generator, n_images: int = 6):
    boxes, keep, dets = {}, {}, {}
    for i in range(n_images):
        k = int(rng.integers(1, 7))
        g = np.concatenate([rng.integers(0, 80, (k, 2)), rng.integers(-2, 30, (k, 2))], 1)
        boxes[f"e{i % 2}/img{i}"] = g.tolist()
        keep[f"e{i % 2}/img{i}"] = sorted(rng.choice(k, int(rng.integers(0, k + 1)), False))
        n = int(rng.integers(0, 12))
        src = g[rng.integers(0, k, n)].astype(float) + rng.normal(0, 2.5, (n, 4))
        src[rng.random(n) < 0.2, 2:] *= -1  # degenerate detections
        scores = rng.choice([0.1, 0.25, 0.5, 0.5, 0.9, 1.0], n) if i % 3 == 0 else rng.random(n)
        if i == 4:
            scores = scores * 3 + 1  # all > 1
        dets[f"e{i % 2}/img{i}"] = (np.round(src, 2).tolist(), scores.tolist())
    return tiny_gt(boxes, keep), dets


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_vectorised_equals_transcription(seed, flavour) -> None:
    gt, dets = _random_case(np.random.default_rng(seed))
    pred = _pred(flavour, dets)
    fast, _ = evaluate_predictions(pred, gt)
    slow = reference_evaluate(pred, gt)
    for s in slow:
        assert fast.ap[s] == slow[s] or (np.isnan(fast.ap[s]) and np.isnan(slow[s]))


# ---------------------------------------------------------------------------- invariances


def _run_rows(seed: int, gt) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for img in gt:
        for b in img.boxes_xywh:
            if rng.random() < 0.8:
                x, y = b[:2] + rng.normal(0, 1.5, 2)
                rows.append(
                    (
                        img.image_id,
                        x,
                        y,
                        x + b[2] + rng.normal(0, 1),
                        y + b[3] + rng.normal(0, 1),
                        rng.random(),
                    )
                )
        for _ in range(3):
            x, y = rng.random(2) * 100
            rows.append((img.image_id, x, y, x + 12, y + 15, rng.random() * 0.5))
    return rows


@pytest.fixture
def small_gt():
    rng = np.random.default_rng(3)
    boxes = {}
    for i in range(8):
        k = int(rng.integers(1, 6))
        g = np.concatenate([rng.integers(0, 200, (k, 2)), rng.integers(8, 60, (k, 2))], 1)
        boxes[f"ev{i % 3}/im{i}"] = g.tolist()
    return tiny_gt(boxes)


@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_sharded_parquet_equals_single_file(tmp_path, small_gt, flavour) -> None:
    rows = _run_rows(1, small_gt)
    ids = small_gt.image_ids
    write_run_dir(tmp_path / "one", rows, ids, shards=1)
    write_run_dir(tmp_path / "three", rows, ids, shards=3)
    a = evaluate_run(tmp_path / "one", small_gt, flavour)
    b = evaluate_run(tmp_path / "three", small_gt, flavour)
    assert a.ap == b.ap
    for s in a.pr:
        assert np.array_equal(a.pr[s]["recall"], b.pr[s]["recall"])


def test_state_merge_of_parts_equals_whole(small_gt) -> None:
    rows = _run_rows(2, small_gt)
    dets = {}
    for r in rows:
        b, s = dets.setdefault(r[0], ([], []))
        b.append([r[1], r[2], r[3] - r[1], r[4] - r[2]])
        s.append(r[5])
    pred = _pred("matlab", dets)
    whole, _ = evaluate_predictions(pred, small_gt)
    bounds = ScoreBounds.initial("matlab")
    for d in pred.images.values():  # pass 1, in two halves merged
        bounds = bounds.merge(ScoreBounds.initial("matlab").update(d.scores))
    parts = [WiderEvalState.empty("matlab"), WiderEvalState.empty("matlab")]
    for i, img in enumerate(small_gt):
        parts[i % 2] = parts[i % 2].merge(evaluate_image(img, pred.images[img.image_id], bounds))
    merged = parts[1].merge(parts[0]).compute()
    assert merged.ap == whole.ap


def test_detection_order_within_image_does_not_change_matlab(tmp_path, small_gt) -> None:
    rows = _run_rows(4, small_gt)
    rng = np.random.default_rng(0)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    write_run_dir(tmp_path / "a", rows, small_gt.image_ids)
    write_run_dir(tmp_path / "b", shuffled, small_gt.image_ids)
    # distinct scores: the stable sort makes the order irrelevant
    assert (
        evaluate_run(tmp_path / "a", small_gt).ap == evaluate_run(tmp_path / "b", small_gt).ap
    )


def test_pyport_depends_on_file_order() -> None:
    gt = tiny_gt({"e/a": [[0, 0, 10, 10]]})
    dets = ([[50, 50, 5, 5], [0, 0, 10, 10]], [0.2, 0.9])
    asc = evaluate_predictions(_pred("pyport", {"e/a": dets}, sort=False), gt)[0]
    desc = evaluate_predictions(_pred("pyport", {"e/a": dets}, sort=True), gt)[0]
    assert asc.ap["easy"] != desc.ap["easy"]
    assert evaluate_predictions(_pred("matlab", {"e/a": dets}), gt)[0].ap == desc.ap


def test_run_dir_and_its_export_agree(tmp_path, small_gt) -> None:
    # Integer corners and scores that are float32 of 3-decimal values survive the export's
    # floor/ceil and %.3f exactly, so the matlab flavour (float32 normalisation) gives the
    # identical AP. With fractional boxes the rounding moves IoUs slightly: we assert only
    # |dAP| < 0.05 there.
    exact = [
        (i, round(x1), round(y1), round(x2), round(y2), round(s * 1000) / 1000)
        for i, x1, y1, x2, y2, s in _run_rows(6, small_gt)
    ]
    for name, rows, tol in (("exact", exact, 0.0), ("fractional", _run_rows(7, small_gt), 0.05)):
        run = tmp_path / name
        write_run_dir(run, rows, small_gt.image_ids + ["ev9/not_in_gt"])
        summary = export_wider_txt(run, tmp_path / f"{name}_txt")
        assert summary.num_files == len(small_gt) + 1
        a = evaluate_run(run, small_gt)
        b = evaluate_run(tmp_path / f"{name}_txt", small_gt)
        for s in a.ap:
            assert abs(a.ap[s] - b.ap[s]) <= tol, (name, s, a.ap[s], b.ap[s])


# ---------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_all_scores_equal_gives_zero_ap(flavour) -> None:
    # max == min: every normalised score is 0/0 = NaN, no threshold is passed
    gt = tiny_gt({"e/a": [[0, 0, 10, 10]]})
    res, _ = evaluate_predictions(_pred(flavour, {"e/a": ([[0, 0, 10, 10]] * 2, [0.5, 0.5])}), gt)
    assert res.ap["easy"] == 0.0 and np.all(np.isnan(res.pr["easy"]["precision"]))


def test_scores_above_one_differ_by_seed() -> None:
    # pyport seeds min with 1: scores 2 and 3 normalise to 0.5 and 1 (not 0 and 1)
    gt = tiny_gt({"e/a": [[0, 0, 10, 10], [40, 0, 10, 10]]})
    dets = {"e/a": ([[0, 0, 10, 10], [40, 0, 10, 10]], [3.0, 2.0])}
    m = evaluate_predictions(_pred("matlab", dets), gt)[0]
    p = evaluate_predictions(_pred("pyport", dets), gt)[0]
    assert m.pr["easy"]["recall"][600] == 0.5 and p.pr["easy"]["recall"][600] == 1.0


def test_empty_images_and_degenerate_gt() -> None:
    # w = -2 GT (as in the real val set) can never be matched; images without detections
    # still count their faces.
    gt = tiny_gt({"e/a": [[10, 10, -2, 8], [40, 40, 10, 10]], "e/b": [[0, 0, 9, 9]]})
    dets = {"e/a": ([[10, 10, -2, 8], [40, 40, 10, 10]], [0.9, 0.8])}
    for flavour in ("matlab", "pyport"):
        res, state = evaluate_predictions(_pred(flavour, dets), gt)
        assert state.count_face["hard"] == 3
        assert res.pr["hard"]["recall"][-1] == pytest.approx(1 / 3)


def test_ignored_face_hit_is_neither_tp_nor_fp() -> None:
    gt = tiny_gt({"e/a": [[0, 0, 10, 10], [40, 0, 10, 10]]}, keep={"e/a": [1]})
    dets = {"e/a": ([[0, 0, 10, 10], [40, 0, 10, 10]], [0.9, 0.1])}
    res, state = evaluate_predictions(_pred("matlab", dets), gt)
    assert state.tables["easy"][-1].tolist() == [1, 1]  # 1 proposal, 1 TP
    assert res.ap["easy"] == 1.0


def test_matlab_txt_parsing_quirks(tmp_path) -> None:
    assert parse_matlab_txt("n\n0\n") is not None and len(parse_matlab_txt("n\n0\n")) == 0
    assert parse_matlab_txt("n\n3\n1 2 3 4 0.5\n") is None  # count larger than lines
    d = parse_matlab_txt("x/n.jpg\r\n2\r\n1 2 3 4 0.1 7 0.3\r\n5 6 7 8 0.9\r\n9 9 9 9 1\r\n")
    assert d.scores.tolist() == [0.9, 0.3]  # last column, only `count` lines, sorted
    assert d.boxes_xywh.tolist() == [[5, 6, 7, 8], [1, 2, 3, 4]]
    assert parse_matlab_txt("n\n1\n1 2 3\n") is None
    assert parse_matlab_txt("n\n1\n1 2 3 abc 5\n") is None
    assert parse_matlab_txt("n\n") is None


def test_pyport_crashes_where_the_port_does(tmp_path) -> None:
    gt = tiny_gt({"e/a": [[0, 0, 10, 10]]})
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.txt").write_text("a\n1\n0 0 10 10 0.9 \n")  # trailing space
    with pytest.raises(WiderPortCrash, match="ValueError.*matlab"):
        read_txt_predictions(tmp_path, gt, "pyport")
    (tmp_path / "e" / "a.txt").write_text("e/a.jpg\n0\n0 0 10 10 0.9\n")  # count ignored
    pred = read_txt_predictions(tmp_path, gt, "pyport")
    assert len(pred.images["e/a"]) == 1
    assert len(read_txt_predictions(tmp_path, gt, "matlab").images) == 0


def test_bad_flavour_and_missing_folder(tmp_path) -> None:
    gt = tiny_gt({"e/a": [[0, 0, 10, 10]]})
    with pytest.raises(ValueError, match="flavour"):
        evaluate_run(tmp_path, gt, "octave")
    with pytest.raises(NotADirectoryError):
        evaluate_run(tmp_path / "nope", gt)


# ---------------------------------------------------------------------------- breakdown


def test_attribute_breakdown_hand_built() -> None:
    # Same as the golden case; face 1 is clear (blur 0), face 2 heavy blur (2), both 10 px.
    # Precision is 1 until the false positive enters (then 0.5 < 0.9): the operating point
    # keeps only the first detection, so face 1 is found and face 2 is not.
    gt = tiny_gt(
        {"e/a": [[0, 0, 10, 10], [20, 0, 10, 40]]},
        attributes={"e/a": {"blur": [0, 2], "pose": [1, 1]}},
    )
    pred = _pred(
        "matlab", {"e/a": ([[0, 0, 10, 10], [50, 50, 10, 10], [20, 0, 10, 40]], [0.9, 0.8, 0.7])}
    )
    res, state = evaluate_predictions(pred, gt, track_faces=True)
    b = attribute_breakdown(state, res, gt)
    assert b["precision"] == 1.0 and b["recall"] == 0.5
    assert b["threshold"] == pytest.approx(0.5, abs=2e-3)
    g = b["groups"]
    assert g["blur"]["clear"] == {"num_faces": 1, "num_found": 1, "recall": 1.0}
    assert g["blur"]["heavy"] == {"num_faces": 1, "num_found": 0, "recall": 0.0}
    assert g["blur"]["normal"]["recall"] is None
    assert g["pose"]["atypical"]["recall"] == 0.5
    assert g["scale"]["small"]["num_found"] == 1 and g["scale"]["medium"]["num_found"] == 0
    assert operating_index(np.array([np.nan, 0.95, 0.92, 0.5, 0.95])) == 2
    assert operating_index(np.array([0.2, 0.95])) == -1
    assert operating_index(np.array([np.nan, 0.95])) == 1


# ---------------------------------------------------------------------------- figures


def test_pr_figure_png_and_pdf(tmp_path) -> None:
    gt = tiny_gt({"e/a": [[0, 0, 10, 10], [20, 0, 10, 10]]})
    dets = {"e/a": ([[0, 0, 10, 10], [50, 50, 10, 10], [20, 0, 10, 10]], [0.9, 0.8, 0.7])}
    a = evaluate_predictions(_pred("matlab", dets), gt)[0]
    b = evaluate_predictions(_pred("pyport", dets), gt)[0]
    fig, axes = plot_wider_pr({"ours": a, "from json": b.to_json()})
    legend = axes[0].get_legend().get_texts()[0].get_text()
    assert len(axes) == 3 and legend == "ours-0.833"  # the official look: Method-AP
    paths = save_figure(fig, tmp_path / "pr")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    fig2, ax = plot_pr_curve(a.pr["easy"]["precision"], a.pr["easy"]["recall"], label="x")
    assert ax.get_figure() is fig2


# ---------------------------------------------------------------------------- export CLI


def test_export_cli_writes_every_image(tmp_path, small_gt) -> None:
    rows = [r for r in _run_rows(8, small_gt) if r[0] != small_gt.image_ids[0]]
    write_run_dir(tmp_path / "run", rows, small_gt.image_ids)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "export",
            "wider",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "txt"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    first = small_gt.image_ids[0].split("/")
    assert (tmp_path / "txt" / first[0] / f"{first[1]}.txt").read_text() == f"{first[1]}\n0\n"
    files = sorted((tmp_path / "txt").rglob("*.txt"))
    assert len(files) == len(small_gt)
    lines = files[-1].read_text().splitlines()
    assert int(lines[1]) == len(lines) - 2
    assert all(len(ln.split()) == 5 and len(ln.split()[4].split(".")[1]) == 3 for ln in lines[2:])
