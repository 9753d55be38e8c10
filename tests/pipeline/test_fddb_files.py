"""FDDB readers and writers: real folds, official format round trips, tolerated and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.fddb import (
    FddbDataset,
    FddbDetections,
    ellipse_list_name,
    fold_list_name,
    read_annotations,
    read_detections,
    read_ellipse_list,
    read_image_sizes_from_dir,
    read_image_sizes_tsv,
    write_detections,
    write_fddb_folds,
    write_image_sizes_tsv,
)


def test_real_folds_counts_and_order(data_dir: Path) -> None:
    ds = FddbDataset(data_dir / "fddb")
    info = ds.describe()
    assert (info["num_images"], info["num_faces"]) == (2845, 5171)
    assert len(info["folds"]) == 10  # type: ignore[arg-type]
    manifest = list(ds.iter_manifest())
    assert manifest[0].image_id == "2002/08/11/big/img_591"
    assert manifest[0].path.endswith("originalPics/2002/08/11/big/img_591.jpg")
    annotations = ds.annotations()
    assert [a.image_id for a in annotations] == [m.image_id for m in manifest]
    assert all(a.num_faces > 0 for a in annotations)
    np.testing.assert_allclose(
        annotations[0].ellipses, [[123.5833, 85.5495, 1.265839, 269.6934, 161.7812]]
    )


def test_writer_reproduces_real_files_byte_for_byte(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "fddb" / "FDDB-folds"
    folds = [
        [(im.image_id, im.ellipses) for im in read_ellipse_list(src / ellipse_list_name(k))]
        for k in range(1, 11)
    ]
    write_fddb_folds(tmp_path, folds)
    for k in range(1, 11):
        for name in (fold_list_name(k), ellipse_list_name(k)):
            assert (tmp_path / "FDDB-folds" / name).read_bytes() == (src / name).read_bytes()


def test_write_fddb_folds_synthetic_layout(tmp_path: Path) -> None:
    folds = [
        [("synth/big/img_00001", np.array([[30.0, 20.0, 1.5, 50.0, 60.0]]))],
        [("synth/big/img_00002", np.zeros((0, 5))), ("synth/big/img_00003", np.ones((2, 5)))],
    ]
    paths = write_fddb_folds(tmp_path, folds)
    assert [p.name for p in paths] == [
        "FDDB-fold-01.txt",
        "FDDB-fold-01-ellipseList.txt",
        "FDDB-fold-02.txt",
        "FDDB-fold-02-ellipseList.txt",
    ]
    text = (tmp_path / "FDDB-folds" / "FDDB-fold-01-ellipseList.txt").read_text()
    assert text == "synth/big/img_00001\n1\n30.000000 20.000000 1.500000 50.000000 60.000000  1\n"
    images = read_annotations(tmp_path)
    assert [i.image_id for i in images] == [
        "synth/big/img_00001",
        "synth/big/img_00002",
        "synth/big/img_00003",
    ]
    assert [i.num_faces for i in images] == [1, 0, 2]
    assert [i.image_id for i in read_annotations(tmp_path / "FDDB-folds")] == [
        i.image_id for i in images
    ]


def test_tolerated_quirks(tmp_path: Path) -> None:
    path = tmp_path / "ell.txt"
    text = (
        "\ufeffa/b/img_1\r\n2.0\r\n10 5 0.5 20 30  1  \r\n11 6 -0.5 21 31 1\r\n"
        "\r\na/b/img_2\r\n0\r\n"
    )
    path.write_bytes(text.encode("utf-8"))
    images = read_ellipse_list(path)
    assert [i.image_id for i in images] == ["a/b/img_1", "a/b/img_2"]
    np.testing.assert_array_equal(images[0].ellipses[1], [11, 6, -0.5, 21, 31])


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("img\n2\n1 2 3 4 5 1\n", 4, "file ends inside image 'img'"),
        ("img\ntwo\n", 2, "number of regions"),
        ("img\n1\n1 2 x 4 5 1\n", 3, "found 'x'"),
        ("img\n1\n1 2 3\n", 3, "expected 5 numbers"),
        ("img\n1\n1 2 nan 4 5 1\n", 3, "finite"),
        ("img\n", 2, "expected its number of regions"),
    ],
)
def test_bad_ellipse_files_name_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt:{line}:") as info:
        read_ellipse_list(path)
    assert fragment in str(info.value)


def test_detection_round_trip_both_formats(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for fmt, width in (("rect", 4), ("ellipse", 5)):
        dets = [
            FddbDetections("x/1", rng.normal(size=(3, width)) * 100, rng.normal(size=3)),
            FddbDetections("x/2", np.zeros((0, width)), np.zeros(0)),
        ]
        path = tmp_path / f"{fmt}.txt"
        write_detections(path, dets, fmt)  # type: ignore[arg-type]
        back = read_detections(path, fmt)  # type: ignore[arg-type]
        assert [d.image_id for d in back] == ["x/1", "x/2"]
        np.testing.assert_array_equal(back[0].regions, dets[0].regions)
        np.testing.assert_array_equal(back[0].scores, dets[0].scores)
        assert back[1].num_detections == 0


def test_detection_file_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_text("img\n2\n1 2 3 4 0.5\n1 2 3 4\n")
    with pytest.raises(ValueError, match=r"det\.txt:4: expected 5 numbers \(x y w h score\)"):
        read_detections(path, "rect")


def test_sizes_tsv_and_image_headers(tmp_path: Path) -> None:
    from PIL import Image

    sizes = {"a/img_1": (40, 30), "b/img_2": (7, 9)}
    write_image_sizes_tsv(tmp_path / "sizes.tsv", sizes)
    assert read_image_sizes_tsv(tmp_path / "sizes.tsv") == sizes
    for name, (w, h) in sizes.items():
        (tmp_path / "pics" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (w, h)).save(tmp_path / "pics" / f"{name}.jpg")
    assert read_image_sizes_from_dir(tmp_path / "pics", list(sizes)) == sizes
    (tmp_path / "bad.tsv").write_text("name\twidth\theight\na\t10\n")
    with pytest.raises(ValueError, match=r"bad\.tsv:2:"):
        read_image_sizes_tsv(tmp_path / "bad.tsv")
    with pytest.raises(FileNotFoundError):
        read_image_sizes_from_dir(tmp_path / "pics", ["missing/img"])


def test_ellipse_list_must_follow_fold_list(tmp_path: Path) -> None:
    write_fddb_folds(tmp_path, [[("a", np.ones((1, 5))), ("b", np.ones((1, 5)))]])
    (tmp_path / "FDDB-folds" / "FDDB-fold-01.txt").write_text("b\na\n")
    with pytest.raises(ValueError, match="image 1 differs"):
        FddbDataset(tmp_path).annotations()
