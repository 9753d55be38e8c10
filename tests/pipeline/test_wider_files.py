"""WIDER FACE readers and writers: annotation txt, evaluation .mat files, dataset root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.wider import (
    ATTRIBUTE_NAMES,
    SETTINGS,
    WiderDataset,
    WiderImageRecord,
    format_wider_detections,
    load_wider_gt_dir,
    read_wider_annotations,
    read_wider_eval_mat,
    write_wider_annotations,
    write_wider_eval_mats,
)

MATS = ("wider_face_val", "wider_easy_val", "wider_medium_val", "wider_hard_val")


def _attrs(k: int, blur: int = 0) -> dict[str, np.ndarray]:
    a = {name: np.zeros(k, np.uint8) for name in ATTRIBUTE_NAMES}
    a["blur"] = np.full(k, blur, np.uint8)
    return a


def _records() -> list[WiderImageRecord]:
    return [
        WiderImageRecord(
            "0--Parade/0_Parade_a_1", np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), _attrs(2)
        ),
        WiderImageRecord("0--Parade/0_Parade_b_2", np.zeros((0, 4), np.int32), _attrs(0)),
        WiderImageRecord("1--Handshaking/1_H_c_3", np.array([[10, 10, 20, 25]]), _attrs(1, 2)),
    ]


@pytest.fixture(scope="module")
def real_gt(data_dir: Path):
    return load_wider_gt_dir(data_dir / "wider_val_gt")


def test_real_gt_statistics(real_gt) -> None:
    assert len(real_gt) == 3226 and len(real_gt.events) == 61
    assert real_gt.num_faces() == 39708
    assert [real_gt.num_faces(s) for s in SETTINGS] == [7211, 13319, 31958]
    img = real_gt["39--Ice_Skating/39_Ice_Skating_iceskiing_39_583"]
    bad = np.flatnonzero(img.boxes_xywh[:, 2] == -2)
    assert len(bad) == 1 and bad[0] in img.keep["hard"]
    dummy = real_gt["0--Parade/0_Parade_Parade_0_275"]
    assert dummy.boxes_xywh.tolist() == [[0, 0, 0, 0]]
    assert all(len(dummy.keep[s]) == 0 for s in SETTINGS)
    assert real_gt.images[0].boxes_xywh.dtype == np.int32


def _compare_cells(a, b, where: str) -> None:
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert (a.dtype, a.shape) == (b.dtype, b.shape), (where, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype == object:
            for i, (u, v) in enumerate(zip(a.flat, b.flat, strict=True)):
                _compare_cells(u, v, f"{where}[{i}]")
        else:
            assert np.array_equal(a, b), where


def test_mat_writer_reproduces_the_real_files(real_gt, data_dir: Path, tmp_path: Path) -> None:
    records = [WiderImageRecord(g.image_id, g.boxes_xywh, g.attributes) for g in real_gt]
    keep = {s: [g.keep[s] for g in real_gt] for s in SETTINGS}
    write_wider_eval_mats(tmp_path, records, keep)
    for name in MATS:
        real_path = data_dir / "wider_val_gt" / f"{name}.mat"
        ours = scipy.io.loadmat(tmp_path / f"{name}.mat", mat_dtype=True)
        real = scipy.io.loadmat(real_path, mat_dtype=True)
        assert scipy.io.whosmat(tmp_path / f"{name}.mat") == scipy.io.whosmat(real_path)
        variables = [k for k in real if not k.startswith("__")]
        if name != "wider_face_val":  # the other variables repeat wider_face_val's
            variables = ["event_list", "gt_list"]
        for var in variables:
            _compare_cells(ours[var], real[var], f"{name}.{var}")


def test_mat_writer_round_trip_and_empty_shapes(tmp_path: Path) -> None:
    recs = _records()
    keep = {
        "easy": [np.array([1]), np.array([], int), np.array([], int)],
        "medium": [np.array([0, 1]), np.array([], int), np.array([0])],
        "hard": [np.array([0, 1]), np.array([], int), np.array([0])],
    }
    write_wider_eval_mats(tmp_path, recs, keep)
    easy = scipy.io.loadmat(tmp_path / "wider_easy_val.mat", mat_dtype=True)
    assert [str(e[0]) for e in easy["event_list"].ravel()] == ["0--Parade", "1--Handshaking"]
    gt_list = easy["gt_list"]
    assert gt_list[0, 0][0, 0].tolist() == [[2.0]]  # 1-based
    assert gt_list[0, 0][1, 0].shape == (0, 0)  # one-box image (the dummy box)
    assert gt_list[1, 0][0, 0].shape == (0, 0)
    gt = load_wider_gt_dir(tmp_path)
    assert gt.image_ids == [r.image_id for r in recs]
    assert gt["0--Parade/0_Parade_b_2"].boxes_xywh.tolist() == [[0, 0, 0, 0]]
    assert gt["0--Parade/0_Parade_a_1"].keep["easy"].tolist() == [1]
    assert gt["1--Handshaking/1_H_c_3"].attributes["blur"].tolist() == [2]
    records, none = read_wider_eval_mat(tmp_path / "wider_face_val.mat")
    assert none is None and len(records) == 3


def test_mat_writer_rejects_bad_keep(tmp_path: Path) -> None:
    recs = _records()
    ok = [np.array([0]), np.array([], int), np.array([0])]
    with pytest.raises(ValueError, match="missing"):
        write_wider_eval_mats(tmp_path, recs, {"easy": ok, "medium": ok})
    bad = [np.array([2]), np.array([], int), np.array([0])]
    with pytest.raises(ValueError, match="0_Parade_a_1.*0..1"):
        write_wider_eval_mats(tmp_path, recs, {"easy": bad, "medium": ok, "hard": ok})


def test_annotation_round_trip_with_dummy_line(tmp_path: Path) -> None:
    path = tmp_path / "gt.txt"
    write_wider_annotations(path, _records())
    text = path.read_text()
    assert "0--Parade/0_Parade_b_2.jpg\n0\n0 0 0 0 0 0 0 0 0 0 \n" in text
    assert "1 2 3 4 0 0 0 0 0 0 \n" in text
    back = read_wider_annotations(path)
    assert [r.image_id for r in back] == [r.image_id for r in _records()]
    for a, b in zip(back, _records(), strict=True):
        assert np.array_equal(a.boxes_xywh, b.boxes_xywh)
        for name in ATTRIBUTE_NAMES:
            assert np.array_equal(a.attributes[name], b.attributes[name])


def test_annotation_bom_crlf_trailing_spaces(tmp_path: Path) -> None:
    body = (
        "0--P/a.jpg \r\n1\r\n1 2 3 4 1 0 1 0 2 1   \r\n0--P/b.jpg\r\n0\r\n0 0 0 0 0 0 0 0 0 0 \r\n"
    )
    path = tmp_path / "gt.txt"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    recs = read_wider_annotations(path)
    assert [r.image_id for r in recs] == ["0--P/a", "0--P/b"]
    assert recs[0].boxes_xywh.tolist() == [[1, 2, 3, 4]]
    assert recs[0].attributes["pose"].tolist() == [1] and recs[1].num_faces == 0


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("0--P/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n", 4, "face line"),
        ("0--P/a.jpg\nx\n", 2, "number of faces"),
        ("0--P/a.jpg\n1\n1 2 3 4 0 0 0\n", 3, "10 integers"),
        ("0--P/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0\na.png\n", 4, "EVENT/NAME.jpg"),
        ("0--P/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n0--P/a.jpg\n0\n", 4, "already listed at line 1"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path: Path, body, line, what) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(body)
    with pytest.raises(ValueError, match=rf"bad.txt: line {line}: .*{what}"):
        read_wider_annotations(path)


def test_record_validation() -> None:
    with pytest.raises(ValueError, match="EVENT/NAME"):
        WiderImageRecord("noevent", np.zeros((0, 4)), _attrs(0))
    with pytest.raises(TypeError, match="integers"):
        WiderImageRecord("e/n", np.array([[1.5, 2, 3, 4]]), _attrs(1))
    with pytest.raises(ValueError, match="missing \\['pose'\\]"):
        WiderImageRecord("e/n", np.zeros((0, 4)), {k: [] for k in ATTRIBUTE_NAMES[:-1]})


def _make_root(tmp_path: Path, with_txt: bool) -> Path:
    root = tmp_path / "wider"
    for rec in _records():
        img = root / "WIDER_val" / "images" / f"{rec.image_id}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        img.write_bytes(b"")
    if with_txt:
        # annotation order differs from sorted tree order on purpose
        recs = _records()[::-1]
        write_wider_annotations(root / "wider_face_split" / "wider_face_val_bbx_gt.txt", recs)
    return root


def test_dataset_manifest_orders(tmp_path: Path) -> None:
    root = _make_root(tmp_path, with_txt=True)
    ds = WiderDataset(root, "val")
    entries = list(ds.iter_manifest())
    assert [e.image_id for e in entries] == [r.image_id for r in _records()[::-1]]
    assert isinstance(entries[0], ManifestEntry)
    assert entries[0].path == str(root / "WIDER_val/images/1--Handshaking/1_H_c_3.jpg")
    info = ds.describe()
    json.dumps(info)
    assert (info["num_images"], info["num_faces"], info["num_events"]) == (3, 3, 2)
    gt = ds.ground_truth()
    assert len(gt) == 3 and gt.settings == ()
    tree = WiderDataset(_make_root(tmp_path / "b", with_txt=False), "val")
    assert [e.image_id for e in tree.iter_manifest()] == sorted(r.image_id for r in _records())
    with pytest.raises(ValueError, match="split"):
        WiderDataset(root, "dev")
    with pytest.raises(FileNotFoundError):
        WiderDataset(tmp_path / "nothing", "train")


def test_dataset_ground_truth_from_eval_mats(tmp_path: Path) -> None:
    root = _make_root(tmp_path, with_txt=True)
    keep = {s: [np.array([0]), np.array([], int), np.array([0])] for s in SETTINGS}
    write_wider_eval_mats(root / "eval_tools" / "ground_truth", _records(), keep)
    gt = WiderDataset(root, "val").ground_truth()
    assert gt.settings == SETTINGS and gt.num_faces("hard") == 2


def test_format_wider_detections_rounding() -> None:
    text = format_wider_detections(
        "img",
        np.array([[10.2, 20.7, 30.1, 40.7], [-1.5, 0.0, 2.0, 3.0]], np.float32),
        [0.98765, 0.5],
    )
    # floor(x1) floor(y1) ceil(x2 - x1) ceil(y2 - y1), score %.3f; exclusive x2 so no +1
    assert text == "img\n2\n10 20 20 20 0.988\n-2 0 4 3 0.500\n"
    assert format_wider_detections("e", np.zeros((0, 4)), []) == "e\n0\n"
