"""The label exporters on ordinary folders: ids mapped to the WIDER layout (or refused before
anything is written), files that appear only complete, earlier exports replaced only when
provably ours, and boxes clipped to the image for pseudo-labels (COCO and WIDER) while a
benchmark submission and the Parquet rows keep the detected boxes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.boxes import clip_boxes_xyxy
from pipeline.datasets.wider import ATTRIBUTE_NAMES, SETTINGS, WiderGroundTruth, WiderImageRecord
from pipeline.exports.coco import export_coco
from pipeline.exports.wider import export_wider_txt, plan_wider_files, wider_txt_key
from reports.wider.predictions import read_txt_predictions
from tests.rundir_support import Det, add_rows

_write_run = add_rows


def _tree(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest()
                                             if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def _gt(keys: list[str]) -> WiderGroundTruth:
    """Ground truth of one 10x10 face per image, kept in every setting."""
    records = [WiderImageRecord(k, np.asarray([[0, 0, 10, 10]], np.int32),
                                {a: np.zeros(1, np.uint8) for a in ATTRIBUTE_NAMES})
               for k in keys]
    keep = {s: [np.asarray([0], np.int64)] * len(keys) for s in SETTINGS}
    return WiderGroundTruth.from_records(records, keep)


FOLDER_IDS = {
    "a.jpg": "images/a",
    "b1.PNG": "images/b1",
    "x/y/z.png": "x__y/z",
    "party/img_1.jpeg": "party/img_1",
    "0--Parade/0_Parade_1": "0--Parade/0_Parade_1",
    "/data/pics/c.tiff": "data__pics/c",
    "./d.bmp": "images/d",
    "notes/readme.txt": "notes/readme.txt",
    "caf\\\\xe9.png": "images/caf\\\\xe9",
}


def test_ids_map_to_the_wider_layout() -> None:
    for image_id, key in FOLDER_IDS.items():
        assert "/".join(wider_txt_key(image_id)) == key, image_id


@pytest.mark.parametrize("image_id", ["../a.jpg", "x/ a.jpg", "a\nb.jpg", "x//y.jpg", "/",
                                      "x/ .png"])
def test_unmappable_ids_are_refused(image_id: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be mapped|no usable WIDER file name"):
        wider_txt_key(image_id)
    run = tmp_path / "run"
    _write_run(run, {"ok.jpg": (10, 10), image_id: (10, 10)}, [])
    with pytest.raises(ValueError):
        export_wider_txt(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written


def test_folder_run_exports_files_both_evaluators_read(tmp_path: Path) -> None:
    ids = [i for i in FOLDER_IDS if not i.endswith(".txt")]
    dets: list[Det] = [(i, 1.5, 2.0, 11.5, 12.25, 0.9 - 0.1 * k) for k, i in enumerate(ids)]
    run = tmp_path / "run"
    _write_run(run, {i: (40, 30) for i in ids}, dets[:-1])  # the last image has no detection
    summary = export_wider_txt(run, tmp_path / "out")
    assert (summary.num_files, summary.num_detections, summary.num_empty) == (8, 7, 1)
    keys = [FOLDER_IDS[i] for i in ids]
    assert sorted(_tree(tmp_path / "out")) == sorted(
        {k.split("/")[0] for k in keys} | {f"{k}.txt" for k in keys})
    for key in keys:
        lines = (tmp_path / "out" / f"{key}.txt").read_text().splitlines()
        assert lines[0] == key.split("/")[1]
    gt = _gt(keys)
    for flavour in ("matlab", "pyport"):
        pred = read_txt_predictions(tmp_path / "out", gt, flavour)
        assert not pred.missing and not pred.messages
        assert {k for k, d in pred.images.items() if len(d.scores)} == set(keys[:-1])
        np.testing.assert_array_equal(pred.images["images/a"].boxes_xywh, [[1, 2, 10, 11]])
        assert pred.images["images/a"].scores.tolist() == [0.9]


@pytest.mark.parametrize("ids", [["a.jpg", "a.png"], ["images/a.jpg", "a.jpg"],
                                 ["x/y/z.jpg", "x__y/z.jpg"]])
def test_two_ids_for_one_file_are_refused_before_writing(ids: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, {i: (10, 10) for i in ids}, [(ids[0], 1, 1, 5, 5, 0.9)])
    with pytest.raises(ValueError, match="both map to") as info:
        export_wider_txt(run, tmp_path / "out")
    assert repr(ids[0]) in str(info.value) and repr(ids[1]) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    with pytest.raises(ValueError, match="both map to"):
        plan_wider_files(ids)


def test_failure_half_way_leaves_nothing(tmp_path: Path) -> None:
    run = tmp_path / "run"
    dets: list[Det] = [("a.jpg", 1, 1, 5, 5, 0.9), ("b.jpg", 1, 1, 5, 5, 0.8),
                       ("c.jpg", 1, 1, float("inf"), 5, 0.7)]  # refused by the formatter
    _write_run(run, {"a.jpg": (9, 9), "b.jpg": (9, 9), "c.jpg": (9, 9)}, dets)
    with pytest.raises(ValueError, match="finite"):
        export_wider_txt(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "out").mkdir()  # an existing empty folder: still empty after the failure
    with pytest.raises(ValueError, match="finite"):
        export_wider_txt(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]
    assert list((tmp_path / "out").iterdir()) == []


def test_rerun_replaces_its_own_export_only(tmp_path: Path) -> None:
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    _write_run(first, {"a.jpg": (9, 9), "old/b.jpg": (9, 9)}, [("a.jpg", 1, 1, 5, 5, 0.9)])
    _write_run(second, {"a.jpg": (9, 9), "c.jpg": (9, 9)},
               [("a.jpg", 1, 1, 5, 5, 0.9), ("c.jpg", 2, 2, 4, 4, 0.3)])
    export_wider_txt(first, out)
    export_wider_txt(second, out, min_score=0.5)
    assert sorted(_tree(out)) == ["images", "images/a.txt", "images/c.txt"]  # old/ is gone
    assert (out / "images/c.txt").read_text() == "c\n0\n"  # 0.3 < min_score
    assert (tmp_path / ".out.dsfd-export.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".out.dsfd-export.json", "first", "out", "second"]
    before = _tree(out)
    (out / "images/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"images/notes\.txt was not written"):
        export_wider_txt(first, out)
    (out / "images/notes.txt").unlink()
    (out / "images/a.txt").write_text("a\n0\n")
    with pytest.raises(ValueError, match=r"images/a\.txt was changed"):
        export_wider_txt(first, out)
    assert sorted(_tree(out)) == sorted(before)


def test_folder_of_someone_else_is_refused(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "mine"
    _write_run(run, {"a.jpg": (9, 9)}, [])
    (out / "ev").mkdir(parents=True)
    (out / "ev/x.txt").write_text("x\n0\n")
    with pytest.raises(ValueError, match="not an earlier WIDER export"):
        export_wider_txt(run, out)
    assert _tree(out) == {"ev": "dir", "ev/x.txt": hashlib.sha256(b"x\n0\n").hexdigest()}
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_wider_txt(run, empty).num_files == 1 and (empty / "images/a.txt").is_file()


# ---------------------------------------------------------------------------- clipping


def test_clip_boxes_golden() -> None:
    boxes = np.array([[-300, -300, 500, 500], [100, 100, 200, 200], [0.2, 0.2, 0.7, 0.9],
                      [-5, 0, 0, 1], [np.nan, 0, 1, 1]], np.float32)
    clipped, keep = clip_boxes_xyxy(boxes, 1, 1)
    assert clipped.dtype == np.float32 and clipped.shape == (5, 4)
    np.testing.assert_array_equal(clipped[:3], [[0, 0, 1, 1], [1, 1, 1, 1], boxes[2]])
    assert keep.tolist() == [True, False, True, False, False]
    c2, k2 = clip_boxes_xyxy(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert c2.shape == (0, 4) and k2.shape == (0,)
    per_box, _ = clip_boxes_xyxy(np.array([[0, 0, 50, 50]] * 2, np.float64), [10, 20], [30, 5])
    np.testing.assert_array_equal(per_box, [[0, 0, 10, 30], [0, 0, 20, 5]])


ONE_PIXEL: list[Det] = [("tiny.png", -300, -300, 500, 500, 0.9),
                        ("tiny.png", 100, 100, 200, 200, 0.8),  # wholly outside
                        ("tiny.png", 0.25, 0.25, 0.75, 0.875, 0.7)]


def test_pseudo_labels_are_clipped_to_a_one_pixel_image(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, {"tiny.png": (1, 1)}, ONE_PIXEL)
    parts = _tree(run)
    export_wider_txt(run, tmp_path / "wider", clip=True)
    assert (tmp_path / "wider/images/tiny.txt").read_text() == (
        "tiny\n2\n0 0 1 1 0.900\n0 0 1 1 0.700\n")
    summary = export_coco(run, tmp_path / "labels.json", clip=True)
    data = json.loads((tmp_path / "labels.json").read_text())
    assert summary.num_detections == 2 and data["info"]["clipped_to_image"] is True
    assert [a["bbox"] for a in data["annotations"]] == [[0.0, 0.0, 1.0, 1.0],
                                                        [0.25, 0.25, 0.5, 0.625]]
    assert [a["area"] for a in data["annotations"]] == [1.0, 0.3125]
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 1 and y + h <= 1
    assert _tree(run) == parts  # the Parquet rows stay as detected


def test_benchmark_submission_keeps_the_detected_boxes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, {"tiny.png": (1, 1)}, ONE_PIXEL)
    export_wider_txt(run, tmp_path / "wider")  # clip=False by default
    assert (tmp_path / "wider/images/tiny.txt").read_text() == (
        "tiny\n3\n-300 -300 800 800 0.900\n100 100 100 100 0.800\n0 0 1 1 0.700\n")
    export_coco(run, tmp_path / "all.json")
    boxes = [a["bbox"] for a in json.loads((tmp_path / "all.json").read_text())["annotations"]]
    assert boxes == [[-300.0, -300.0, 800.0, 800.0], [100.0, 100.0, 100.0, 100.0],
                     [0.25, 0.25, 0.5, 0.625]]


def test_dsfd_export_wider_keeps_boxes_and_refuses_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.cli import main

    run = tmp_path / "run"
    _write_run(run, {"ev/img_1": (1, 1)}, [("ev/img_1", -3, -3, 5, 5, 0.9)])
    assert main(["export", "wider", str(run), "--out", str(tmp_path / "txt")]) == 0
    assert (tmp_path / "txt/ev/img_1.txt").read_text() == "img_1\n1\n-3 -3 8 8 0.900\n"
    clash = tmp_path / "clash"
    _write_run(clash, {"a.jpg": (9, 9), "a.png": (9, 9)}, [])
    capsys.readouterr()
    assert main(["export", "wider", str(clash), "--out", str(tmp_path / "txt2")]) == 1
    err = capsys.readouterr().err.strip()
    assert "both map to images/a.txt" in err and "\n" not in err
    assert not (tmp_path / "txt2").exists()


def test_clip_needs_the_image_size(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, {"a.jpg": (None, None), "bad.jpg": (None, None)},
               [("a.jpg", 0, 0, 5, 5, 0.9)], errors=("bad.jpg",))
    with pytest.raises(ValueError, match="no width/height"):
        export_wider_txt(run, tmp_path / "wider", clip=True)
    with pytest.raises(ValueError, match="no width/height"):
        export_coco(run, tmp_path / "labels.json", clip=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert export_wider_txt(run, tmp_path / "wider").num_files == 2  # unclipped: fine


def test_coco_ids_stay_in_step_across_shards(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_run(run, {"a.jpg": (9, 9)}, [("a.jpg", 1, 1, 5, 5, 0.9)], repeat=2)
    _write_run(run, {"b.jpg": (9, 9)}, [("b.jpg", 2, 2, 30, 30, 0.8)], shard=1)
    export_coco(run, tmp_path / "labels.json", clip=True)
    data = json.loads((tmp_path / "labels.json").read_text())
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "a.jpg", "b.jpg"]
    by_name = {i["id"]: i["file_name"] for i in data["images"]}
    assert [by_name[a["image_id"]] for a in data["annotations"]] == ["a.jpg", "b.jpg"]
    assert data["annotations"][1]["bbox"] == [2.0, 2.0, 7.0, 7.0]
