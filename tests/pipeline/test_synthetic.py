"""The synthetic benchmark: determinism, both layouts, readers agree, pixels match boxes, size
distribution, output-folder rules and `dsfd synth`."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipeline.datasets.fddb import FddbDataset, read_fold_list
from pipeline.datasets.synthetic import INFO_FILE, is_synthetic_benchmark, read_synth_info
from pipeline.datasets.wider import (
    SETTING_MATS,
    WiderDataset,
    load_wider_gt_dir,
    read_wider_annotations,
)
from pipeline.synthetic import (
    EVENTS,
    SettingRules,
    SynthConfig,
    generate_benchmark,
    prepare_output_dir,
    render_fddb_image,
    render_wider_image,
    scene_boxes_and_attributes,
)

SMALL = SynthConfig(seed=11, num_val=8, num_train=4, num_fddb=12)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    generate_benchmark(out, SMALL)
    return out


def test_same_seed_gives_byte_identical_files(bench: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_benchmark(again, SMALL)
    first, second = _tree_digest(bench), _tree_digest(again)
    assert first == second
    assert any(name.endswith(".mat") for name in first)  # the .mat files are covered too
    other = tmp_path / "other"
    generate_benchmark(other, SynthConfig(seed=12, num_val=2, num_train=1, num_fddb=0))
    a = (bench / "wider/wider_face_split/wider_face_val_bbx_gt.txt").read_text()
    b = (other / "wider/wider_face_split/wider_face_val_bbx_gt.txt").read_text()
    assert a.splitlines()[:3] != b.splitlines()[:3]


def test_wider_layout_and_counts(bench: Path) -> None:
    info = read_synth_info(bench)
    assert info["status"] == "complete" and info["seed"] == SMALL.seed
    assert set(info["setting_rules"]) == {"hard_min_height", "medium_min_height", "easy_min_height"}
    root = bench / "wider"
    for split, count in (("train", SMALL.num_train), ("val", SMALL.num_val)):
        records = read_wider_annotations(root / f"wider_face_split/wider_face_{split}_bbx_gt.txt")
        assert len(records) == count == info["counts"][split]["images"]
        assert sum(r.num_faces for r in records) == info["counts"][split]["faces"]
        events = {e for e, _, _ in EVENTS}
        for rec in records:
            assert rec.event in events
            path = root / f"WIDER_{split}/images/{rec.image_id}.jpg"
            with Image.open(path) as img:
                assert img.format == "JPEG" and img.mode == "RGB"
                assert 320 <= max(img.size) <= 640
                x, y, w, h = rec.boxes_xywh.T
                assert (x >= 0).all() and (y >= 0).all() and (w > 0).all() and (h > 0).all()
                assert (x + w <= img.size[0]).all() and (y + h <= img.size[1]).all()
    for name in ("wider_face_val.mat", *SETTING_MATS.values()):
        assert (root / "eval_tools/ground_truth" / name).is_file()


def test_wider_txt_and_mat_files_agree(bench: Path) -> None:
    root = bench / "wider"
    records = read_wider_annotations(root / "wider_face_split/wider_face_val_bbx_gt.txt")
    gt = load_wider_gt_dir(root / "eval_tools/ground_truth")
    assert gt.image_ids == [r.image_id for r in records]
    assert set(gt.settings) == {"easy", "medium", "hard"}
    rules = SettingRules()
    for rec, img in zip(records, gt, strict=True):
        np.testing.assert_array_equal(img.boxes_xywh, rec.boxes_xywh)
        for name, values in rec.attributes.items():
            np.testing.assert_array_equal(img.attributes[name], values)
        expected = rules.keep(rec.boxes_xywh, rec.attributes)
        for setting in ("easy", "medium", "hard"):
            np.testing.assert_array_equal(img.keep[setting], expected[setting])
        assert set(img.keep["easy"]) <= set(img.keep["medium"]) <= set(img.keep["hard"])
    info = read_synth_info(bench)["counts"]["val"]
    assert [gt.num_faces(s) for s in ("easy", "medium", "hard")] == [
        info["easy"],
        info["medium"],
        info["hard"],
    ]
    dataset = WiderDataset(root, "val")
    assert [e.image_id for e in dataset.iter_manifest()] == gt.image_ids


def test_keep_rules_follow_size_and_attributes() -> None:
    boxes = np.array(
        [
            [0, 0, 5, 7],
            [0, 0, 8, 10],
            [0, 0, 20, 25],
            [0, 0, 40, 50],
            [0, 0, 40, 50],
            [0, 0, 40, 50],
            [0, 0, 40, 50],
        ],
        np.int32,
    )
    zeros = np.zeros(7, np.uint8)
    attributes = {
        n: zeros.copy()
        for n in ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    }
    attributes["occlusion"][4] = 2  # heavy occlusion: hard only
    attributes["blur"][5] = 1  # normal blur: medium, not easy
    attributes["invalid"][6] = 1  # invalid: nowhere
    keep = SettingRules().keep(boxes, attributes)
    assert keep["hard"].tolist() == [1, 2, 3, 4, 5]
    assert keep["medium"].tolist() == [2, 3, 5]
    assert keep["easy"].tolist() == [3]


def test_fddb_layout_reads_back_and_ellipses_fit_faces(bench: Path) -> None:
    root = bench / "fddb"
    folds = [read_fold_list(root / f"FDDB-folds/FDDB-fold-{k:02d}.txt") for k in range(1, 11)]
    assert all(folds) and sum(len(f) for f in folds) == SMALL.num_fddb
    dataset = FddbDataset(root)
    annotations = dataset.annotations()
    assert [a.image_id for a in annotations] == [i for f in folds for i in f]
    assert (
        sum(a.num_faces for a in annotations) == read_synth_info(bench)["counts"]["fddb"]["faces"]
    )
    for index, ann in enumerate(annotations):
        image_id, scene = render_fddb_image(SMALL.seed, index, SMALL.num_fddb)
        assert image_id == ann.image_id and dataset.image_path(image_id).is_file()
        valid = [f for f in scene.faces if not f.invalid]
        assert ann.num_faces == len(valid) >= 1
        np.testing.assert_allclose(ann.ellipses, [f.ellipse for f in valid], atol=1e-6)
        for face, (ra, rb, angle, cx, cy) in zip(valid, ann.ellipses, strict=True):
            assert ra >= rb > 0 and face.box_xywh[3] >= 20  # FDDB faces are >= 20 px
            # Drawn as the FDDB evaluator draws it, the ellipse fills the face's box.
            mask = np.zeros(scene.image.shape[:2], np.uint8)
            cv2.ellipse(
                mask,
                (int(round(cx)), int(round(cy))),
                (int(ra), int(rb)),
                math.degrees(angle),
                0,
                360,
                10,
                -1,
            )
            x, y, w, h = face.box_xywh
            box = np.zeros_like(mask)
            box[y : y + h, x : x + w] = 10
            inter = np.count_nonzero(mask & box)
            assert inter / np.count_nonzero(mask) > 0.95
            assert inter / (w * h) > 0.7


def _person_region(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """Where a person with this face box may have drawn (face, body, occluder)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return cx - 1.6 * h, y - 0.5 * h, cx + 1.6 * h, cy + 3.5 * h


def _ring(changed: np.ndarray, box: tuple[int, int, int, int], m: int) -> np.ndarray:
    """Changed-pixel flags of an m-pixel band above and beside the upper half of the box."""
    x, y, w, h = box
    parts = [
        changed[max(0, y - m) : y, max(0, x - m) : x + w + m].ravel(),
        changed[y : y + h // 2, max(0, x - m) : x].ravel(),
        changed[y : y + h // 2, x + w : x + w + m].ravel(),
    ]
    return np.concatenate(parts)


def test_pixels_match_boxes() -> None:
    """Each clear face's box holds drawn pixels (vs the background render) up to its four
    edges, and an isolated face leaves the pixels just outside its box untouched."""
    checked = isolated = 0
    for index in range(16):
        _, scene = render_wider_image(5, "val", index)
        changed = np.any(scene.image != scene.background, axis=2)  # (H, W)
        boxes = [f.box_xywh for f in scene.faces]
        for k, face in enumerate(scene.faces):
            x, y, w, h = face.box_xywh
            if face.occlusion or h < 8:
                continue
            inside = changed[y : y + h, x : x + w]
            assert inside.mean() > 0.7, (index, face)  # an ellipse fills pi/4 of its box
            assert inside[0].any() and inside[-1].any(), (index, face)  # tight rows
            assert inside[:, 0].any() and inside[:, -1].any(), (index, face)  # tight columns
            checked += 1
            band = (x - 3, y - 3, x + w + 3, y + h)
            crowded = any(
                j != k
                and not (r[0] > band[2] or r[2] < band[0] or r[1] > band[3] or r[3] < band[1])
                for j, r in enumerate(map(_person_region, boxes))
            )
            if face.blur or crowded:
                continue
            assert _ring(changed, face.box_xywh, 3).mean() < 0.25, (index, face)
            isolated += 1
    assert checked >= 100 and isolated >= 10


def test_written_jpeg_is_the_rendered_image(bench: Path) -> None:
    image_id, scene = render_wider_image(SMALL.seed, "val", 0)
    path = bench / f"wider/WIDER_val/images/{image_id}.jpg"
    decoded = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert decoded.shape == scene.image.shape
    assert np.abs(decoded - scene.image).mean() < 4.0


def test_size_distribution_is_wider_like() -> None:
    heights, events, attrs = [], set(), []
    for index in range(40):
        image_id, scene = render_wider_image(3, "train", index)
        events.add(image_id.split("/")[0])
        boxes, attributes = scene_boxes_and_attributes(scene.faces)
        heights.append(boxes[:, 3])
        attrs.append(attributes)
    h = np.concatenate(heights)
    assert events == {e for e, _, _ in EVENTS}
    assert 0.4 < np.mean(h < 20) < 0.75  # many small faces
    assert 0.05 < np.mean(h >= 40) < 0.3 and h.max() >= 100  # and a tail of large ones
    for name in ("blur", "expression", "illumination", "occlusion", "pose", "invalid"):
        values = np.concatenate([a[name] for a in attrs])
        top = 2 if name in ("blur", "occlusion") else 1
        assert set(np.unique(values).tolist()) == set(range(top + 1)), name
        assert np.mean(values == 0) > 0.5, name  # most faces are typical


def test_attributes_follow_visibility() -> None:
    for index in range(10):
        _, scene = render_wider_image(9, "val", index)
        for face in scene.faces:
            hidden = 1.0 - face.visible_fraction
            assert face.occlusion == (2 if hidden >= 0.35 else 1 if hidden >= 0.05 else 0)
            assert face.invalid == int(face.box_xywh[3] < 6 or face.visible_fraction < 0.3)


def test_output_folder_rules(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing"):
        prepare_output_dir(foreign)
    assert (foreign / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        prepare_output_dir(a_file)
    out = tmp_path / "bench"
    generate_benchmark(out, SynthConfig(seed=1, num_val=3, num_train=2, num_fddb=10))
    stale = out / "wider/WIDER_val/images/stale.jpg"
    stale.write_bytes(b"old")
    smaller = SynthConfig(seed=1, num_val=2, num_train=1, num_fddb=0)
    with pytest.raises(ValueError, match="stale.jpg was not written by dsfd synth"):
        generate_benchmark(out, smaller)  # a file it did not write: refused, nothing deleted
    assert stale.read_bytes() == b"old" and (out / "fddb").is_dir()
    stale.unlink()
    info = generate_benchmark(out, smaller)  # its own earlier benchmark: replaced
    assert is_synthetic_benchmark(out) and info["counts"]["val"]["images"] == 2
    assert not (out / "fddb").exists()
    assert json.loads((out / INFO_FILE).read_text())["status"] == "complete"


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"num_val": 0}, {"num_train": -2}, {"jpeg_quality": 0}]
)
def test_config_rejects_bad_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SynthConfig(**kwargs)  # type: ignore[arg-type]


def test_dsfd_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    out = tmp_path / "b"
    argv = [
        "synth",
        "--out",
        str(out),
        "--images",
        "2",
        "--train-images",
        "1",
        "--fddb-images",
        "0",
        "--seed",
        "4",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "WIDER val:   2 images" in capsys.readouterr().out
    assert read_synth_info(out)["seed"] == 4
    assert main(argv) == 0  # a previous benchmark of its own is replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x").write_text("x")
    assert main(["synth", "--out", str(foreign), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsfd synth: error:") and "\n" not in err
