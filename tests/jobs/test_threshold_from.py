"""``dsfd label --threshold-from EVAL.json --precision P | --recall R``: the picking rule on a
hand-made curve, the thresholds ``dsfd eval wider --json`` writes, one-line refusals, and a
label job whose export threshold, run.json and COCO ``info`` come from a real evaluation."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from jobs.cli import main
from reports.thresholds import choose_threshold, threshold_from_file
from tests.pipeline.runner_support import small_checkpoint, synthetic_root  # noqa: F401


def _doc(precision: list[float | None], recall: list[float], lo: float = 0.0,
         hi: float = 1.0) -> dict[str, Any]:
    n = len(precision)
    normalised = [1.0 - (t + 1) / n for t in range(n)]
    return {"flavour": "matlab",
            "pr": {"hard": {"precision": precision, "recall": recall}},
            "score_bounds": [lo, hi],
            "thresholds": {"normalised": normalised,
                           "score": [lo + t * (hi - lo) for t in normalised]}}


# thresholds 0.8, 0.6, 0.4, 0.2, 0.0 (scores 0.1 + 0.5 t): precision dips and recovers
DOC = _doc([None, 0.9, 0.97, 0.95, 0.5], [0.0, 0.2, 0.5, 0.6, 0.7], lo=0.1, hi=0.6)


def test_the_lowest_threshold_reaching_a_precision_and_the_highest_reaching_a_recall() -> None:
    chosen = choose_threshold(DOC, precision=0.95)  # 0.6 (0.97) and 0.4 (0.95): the lower
    assert (chosen.normalised, chosen.precision, chosen.recall) == pytest.approx((0.2, 0.95, 0.6))
    assert chosen.score == pytest.approx(0.1 + 0.2 * 0.5)
    assert choose_threshold(DOC, precision=0.96).normalised == pytest.approx(0.4)
    assert choose_threshold(DOC, precision=0.9).normalised == pytest.approx(0.2)
    assert choose_threshold(DOC, recall=0.5).normalised == pytest.approx(0.4)  # not 0.2, 0.0
    assert choose_threshold(DOC, recall=0.7).normalised == pytest.approx(0.0)
    assert (choose_threshold(DOC, recall=0.5).target,
            choose_threshold(DOC, recall=0.5).subset) == ("recall", "hard")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"precision": 0.98}, r"precision 0.98 is never reached on the hard subset \(best precision "
                          r"0.9700 at score 0.3\)"),
    ({"recall": 0.8}, r"recall 0.8 is never reached on the hard subset \(highest recall 0.7000"),
    ({"precision": 0.9, "recall": 0.5}, r"exactly one of a precision and a recall"),
    ({}, r"exactly one of a precision and a recall"),
    ({"precision": 0.0}, r"precision target must be in \(0, 1\], got 0"),
    ({"precision": 0.9, "subset": "medium"}, r"no PR curve with score thresholds for the medium"),
])
def test_unreachable_or_malformed_targets_are_refused(kwargs: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ValueError, match=message):
        choose_threshold(DOC, **kwargs)


def test_an_evaluation_without_thresholds_is_refused_by_the_label_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"flavour": "matlab", "ap": {}, "pr": DOC["pr"]}))
    base = ["label", "--images", str(tmp_path), "--out", str(tmp_path / "run")]
    cases = [
        ([*base, "--threshold-from", str(old), "--precision", "0.9"],
         f"--threshold-from {old}: {old}: no PR curve with score thresholds"),
        ([*base, "--threshold-from", str(old)], "needs a target: --precision P or --recall R"),
        ([*base, "--precision", "0.9"], "--precision/--recall need --threshold-from"),
        ([*base, "--threshold-from", str(old), "--recall", "0.5", "--min-score", "0.3"],
         "--min-score and --threshold-from both set the export threshold"),
        ([*base, "--threshold-from", str(tmp_path / "none.json"), "--recall", "0.5"],
         "No such file"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()


def test_label_exports_at_the_threshold_a_real_evaluation_picks(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from pipeline.rundir import RunDir

    model = ["--model", str(small_checkpoint), "--max-size", "160", "--workers", "1",
             "--cpus-per-worker", "1", "--shard-size", "6"]
    val = tmp_path / "val"
    assert main(["run", "--dataset", f"synthetic:{synthetic_root}", "--out", str(val),
                 *model]) == 0
    eval_json = tmp_path / "eval.json"
    assert main(["eval", "wider", "--pred", str(val), "--gt", str(synthetic_root / "wider"),
                 "--json", str(eval_json)]) == 0
    doc = json.loads(eval_json.read_text())
    lo, hi = doc["score_bounds"]
    scores = RunDir.open(val).detections()["score"].to_numpy()
    assert (lo, hi) == pytest.approx((float(scores.min()), float(scores.max())))
    assert len(doc["thresholds"]["score"]) == len(doc["pr"]["hard"]["recall"]) == 1000
    # a recall target whose threshold lies above the label run's storage threshold (0.1)
    points = [(s, r) for s, r in zip(doc["thresholds"]["score"], doc["pr"]["hard"]["recall"],
                                     strict=True) if s >= 0.3 and r == r and r > 0]
    assert points, "the validation run finds no face above score 0.3"
    target = points[-1][1]
    want = threshold_from_file(eval_json, recall=target)
    assert want.recall >= target and want.score >= 0.3 - 1e-9

    labels = tmp_path / "labels"
    images = synthetic_root / "wider" / "WIDER_val" / "images"
    capsys.readouterr()
    assert main(["label", "--images", str(images), "--out", str(labels), *model,
                 "--threshold-from", str(eval_json), "--recall", repr(target)]) == 0
    out = capsys.readouterr().out
    assert f"export threshold score >= {want.score:.6g} (hard subset" in out
    record = json.loads((labels / "run.json").read_text())["label"]
    sha = hashlib.sha256(eval_json.read_bytes()).hexdigest()
    assert record["min_score"] == pytest.approx(want.score)
    assert record["threshold_from"] | {} == want.to_json()
    assert (record["threshold_from"]["sha256"], record["threshold_from"]["source"]) == (
        sha, str(eval_json))
    coco = json.loads((labels / "labels.coco.json").read_text())
    assert coco["info"]["min_score"] == pytest.approx(want.score)
    assert coco["info"]["threshold_from"]["target"] == "recall"
    assert coco["info"]["description"].startswith("DSFD pseudo-labels from ")
    kept = RunDir.open(labels).detections(min_score=want.score)
    assert 0 < len(coco["annotations"]) <= kept.num_rows
    assert all(a["score"] >= want.score - 1e-6 for a in coco["annotations"])
    assert not any(math.isnan(a["score"]) for a in coco["annotations"])
