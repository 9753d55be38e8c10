"""`dsfd anchors`: the table, summary and figures; the counts match a brute-force recount."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from dsfd.anchor_stats import AnchorStatsConfig, face_match_stats, input_anchors
from dsfd.augment import AugmentConfig, augment_boxes
from dsfd.boxes import box_iou
from jobs.cli import main
from reports.figures.anchors import binned, summarize


def test_counts_match_a_brute_force_recount() -> None:
    cfg = AnchorStatsConfig(augment=AugmentConfig(image_size=320, policy="iam"))
    anchors = input_anchors(cfg)
    for seed in range(15):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 10))
        xy = rng.uniform(0, 500, size=(n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(4, 150, size=(n, 2))], 1).astype(np.float32)
        stats = face_match_stats(boxes, (700, 900), np.random.default_rng(seed), cfg)
        aug = augment_boxes(boxes, (700, 900), np.random.default_rng(seed), cfg.augment)
        iou = box_iou(torch.from_numpy(aug.boxes), anchors).numpy()  # [M, A]
        expected = np.zeros(len(aug.boxes), np.int64)
        for a in range(iou.shape[1]):  # slow reference: anchor by anchor
            col = iou[:, a]
            if len(col) and col.max() >= 0.4:
                expected[int(col.argmax())] += 1
        claims: dict[int, tuple[float, int]] = {}
        for g in range(len(aug.boxes)):
            a = int(iou[g].argmax())
            if iou[g, a] > 0 and (a not in claims or iou[g, a] > claims[a][0]):
                claims[a] = (float(iou[g, a]), g)
        for a, (_, g) in claims.items():
            if iou[:, a].max() >= 0.4:
                expected[int(iou[:, a].argmax())] -= 1
            expected[g] += 1
        assert stats.num_matched.tolist() == expected.tolist()
        np.testing.assert_allclose(
            stats.face_scale, np.sqrt(np.prod(aug.boxes[:, 2:] - aug.boxes[:, :2], 1)), rtol=1e-6
        )


def test_summary_and_bins_on_a_hand_table() -> None:
    table = pd.DataFrame(
        {
            "policy": ["ssd", "ssd", "iam", "iam", "iam"],
            "face_scale": [10.0, 20.0, 10.0, 11.0, 300.0],
            "num_matched": [1, 5, 2, 4, 9],
        }
    )
    s = summarize(table)
    assert s["ssd"]["num_faces"] == 2 and s["ssd"]["mean_matched"] == pytest.approx(3.0)
    assert s["iam"]["mean_matched"] == pytest.approx(5.0)
    assert s["ssd"]["share_matched_le_1"] == pytest.approx(0.5)
    b = binned(table)
    iam = b[(b.policy == "iam") & (b.num_faces > 0)]
    assert iam.num_faces.sum() == 3 and sorted(iam.mean_matched.tolist()) == [3.0, 9.0]
    with pytest.raises(ValueError, match="num_matched"):
        summarize(table.drop(columns="num_matched"))


def test_cli_on_real_wider_val_boxes(tmp_path: Path, data_dir: Path, capsys) -> None:
    out = tmp_path / "anchors"
    gt = data_dir / "wider_val_gt"
    rc = main(["anchors", "--dataset", f"wider-gt:{gt}", "--out", str(out), "--samples", "150"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "1024" in printed and "mean matched anchors" in printed
    table = pq.read_table(out / "anchor_stats.parquet").to_pandas()
    assert set(table.policy) == {"ssd", "iam"}
    assert set(table[table.policy == "iam"]["mode"]) == {"anchor", "ssd"}
    assert (table.num_matched >= 0).all() and (table.face_scale > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert "1024" in summary["image_size_assumption"]
    assert summary["config"]["samples"] == 150
    means = {p: summary["policies"][p]["mean_matched"] for p in ("ssd", "iam")}
    # IAM moves faces onto anchor scales: more anchors per face (paper: 6.4 -> 6.9).
    assert means["iam"] > means["ssd"] > 1.0
    for name in ("face_scales", "matched_anchors"):
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000


def test_cli_rejects_unknown_dataset_kind(tmp_path: Path, capsys) -> None:
    rc = main(["anchors", "--dataset", f"coco:{tmp_path}", "--out", str(tmp_path / "o")])
    assert rc == 1 and "unknown dataset kind 'coco'" in capsys.readouterr().err


def test_a_dataset_without_faces_is_refused_in_one_line(tmp_path, capsys) -> None:
    from jobs.cli import main
    from tests.rundir_support import write_wider_without_faces

    root = write_wider_without_faces(tmp_path / "wider")
    assert main(["anchors", "--dataset", f"wider:{root}:train", "--out",
                 str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no face boxes" in err, err
    assert not (tmp_path / "out").exists()
