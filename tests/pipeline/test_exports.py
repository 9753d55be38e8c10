"""The export registry and the YOLO exporter on hand-made runs written through the real run
writer: golden label lines, empty and unreadable images, mirrored folders, clipping, refusals
with nothing written, reruns that replace only their own files, and the ``dsfd export`` /
``dsfd label --export`` commands (parser only for label: no Ray is started)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.exports import Exporter, ExportSummary, exporter_names, get_exporter, register
from pipeline.exports.yolo import export_yolo, format_yolo_labels
from tests.rundir_support import Det, add_rows

REPO = Path(__file__).resolve().parents[2]


_write_run = add_rows


def _tree(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest()
                                             if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


GOLDEN_SIZES: dict[str, tuple[int | None, int | None]] = {
    "photos/a.jpg": (100, 50), "b.png": (64, 64), "x/y/w.JPG": (3, 7), "x/y/z.png": (None, None)}
GOLDEN_DETS: list[Det] = [
    ("photos/a.jpg", 10, 5, 30, 25, 0.9),
    ("photos/a.jpg", -10, -10, 10, 10, 0.8),  # clipped to 0 0 10 10
    ("photos/a.jpg", 120, 0, 130, 10, 0.7),  # wholly outside: dropped
    ("photos/a.jpg", 40, 20, 60, 30, 0.2),  # under min_score
    ("x/y/w.JPG", 0, 0, 1, 1, 0.6),
]


def _golden_run(tmp_path: Path) -> Path:
    return _write_run(tmp_path / "run", GOLDEN_SIZES, GOLDEN_DETS, errors=("x/y/z.png",))


# ---------------------------------------------------------------------------- the registry


def test_registry_lists_every_format_with_its_label_output() -> None:
    assert exporter_names() == ("coco", "wider", "yolo")
    assert [get_exporter(n).default_output for n in exporter_names()] == [
        "labels.coco.json", "labels.wider", "labels.yolo"]
    assert [get_exporter(n).always_clips for n in exporter_names()] == [False, False, True]
    with pytest.raises(ValueError, match="no exporter named 'voc'; known: coco, wider, yolo"):
        get_exporter("voc")
    with pytest.raises(ValueError, match="already registered"):
        register(Exporter("coco", "again", "x.json", "pipeline.exports.coco:export_coco"))
    with pytest.raises(ValueError, match="module:function"):
        Exporter("voc", "VOC", "labels.voc", "pipeline.exports.voc")


@pytest.mark.parametrize("name", ["coco", "wider", "yolo"])
def test_every_exporter_exports_a_run(name: str, tmp_path: Path) -> None:
    run = _golden_run(tmp_path)
    out = tmp_path / get_exporter(name).default_output
    summary = get_exporter(name).export(run, out, min_score=0.5, clip=True)
    assert isinstance(summary, ExportSummary) and out.exists()
    assert (summary.num_detections, summary.num_empty) == (3, 1 if name != "wider" else 2)
    assert summary.num_errors == (0 if name == "wider" else 1)
    again = get_exporter(name).export(run, out, min_score=0.5, clip=True)  # replaces its own
    assert again == summary


# ---------------------------------------------------------------------------- YOLO


def test_yolo_golden_lines_empty_and_unreadable_images(tmp_path: Path) -> None:
    run = _golden_run(tmp_path)
    parts = _tree(run)
    summary = export_yolo(run, tmp_path / "labels", min_score=0.5)
    assert summary == ExportSummary(num_images=3, num_detections=3, num_empty=1, num_errors=1,
                                    num_files=4)
    assert summary.describe() == ("3 images in 4 files (3 detections, 1 images without "
                                  "detections, 1 unreadable images left out)")
    out = tmp_path / "labels"
    assert sorted(_tree(out)) == ["b.txt", "classes.txt", "photos", "photos/a.txt", "x", "x/y",
                                  "x/y/w.txt"]  # folders mirrored; no file for x/y/z.png
    assert (out / "classes.txt").read_text() == "face\n"
    assert (out / "photos/a.txt").read_text() == ("0 0.200000 0.300000 0.200000 0.400000\n"
                                                  "0 0.050000 0.100000 0.100000 0.200000\n")
    assert (out / "x/y/w.txt").read_text() == "0 0.166667 0.071429 0.333333 0.142857\n"
    assert (out / "b.txt").read_bytes() == b""
    receipt = json.loads((tmp_path / ".labels.dsfd-export.json").read_text())
    assert receipt["exporter"] == "dsfd-yolo-txt" and sorted(receipt["files"]) == [
        "b.txt", "classes.txt", "photos/a.txt", "x/y/w.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".labels.dsfd-export.json", "labels",
                                                          "run"]
    assert _tree(run) == parts  # the Parquet rows stay as detected


def test_format_yolo_labels_golden_and_refusals() -> None:
    assert format_yolo_labels([[0, 0, 1, 1]], 3, 7) == "0 0.166667 0.071429 0.333333 0.142857\n"
    assert format_yolo_labels([[0, 0, 640, 480]], 640, 480) == (
        "0 0.500000 0.500000 1.000000 1.000000\n")
    assert format_yolo_labels([], 10, 10) == ""
    with pytest.raises(ValueError, match="positive"):
        format_yolo_labels([[0, 0, 1, 1]], 0, 7)
    with pytest.raises(ValueError, match="finite"):
        format_yolo_labels([[0, 0, float("nan"), 1]], 3, 7)


def test_yolo_always_clips_even_when_asked_not_to(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"tiny.png": (1, 1)},
                     [("tiny.png", -300, -300, 500, 500, 0.9),
                      ("tiny.png", 100, 100, 200, 200, 0.8),  # wholly outside: dropped
                      ("tiny.png", 0.25, 0.25, 0.75, 0.875, 0.7)])
    summary = get_exporter("yolo").export(run, tmp_path / "out", min_score=0.0, clip=False)
    assert summary.num_detections == 2
    lines = (tmp_path / "out/tiny.txt").read_text().splitlines()
    assert lines == ["0 0.500000 0.500000 1.000000 1.000000",
                     "0 0.500000 0.562500 0.500000 0.625000"]
    for line in lines:
        cx, cy, w, h = map(float, line.split()[1:])
        assert 0 <= cx - w / 2 and cx + w / 2 <= 1 and 0 <= cy - h / 2 and cy + h / 2 <= 1


def test_yolo_needs_the_size_of_an_image_with_boxes_only(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"a.jpg": (None, None)}, [("a.jpg", 0, 0, 5, 5, 0.9)])
    with pytest.raises(ValueError, match="no width/height"):
        export_yolo(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert export_yolo(run, tmp_path / "out", min_score=0.95).num_empty == 1  # no box left


@pytest.mark.parametrize(("ids", "words"), [
    (["a.jpg", "a.png"], "image ids 'a.jpg' and 'a.png' both map to a.txt"),
    (["x/a.jpg", "x/./a.PNG"], "both map to x/a.txt"),
    (["classes.png"], "maps to classes.txt, which holds the class names"),
    (["a.jpg", "a.txt/b.jpg"], "needs a.txt as a folder"),
    (["a.txt/b.jpg", "a.jpg"], "maps to a.txt, the folder of the file of 'a.txt/b.jpg'"),
    (["../a.jpg"], "cannot be mapped to a YOLO file"),
])
def test_yolo_collisions_are_refused_before_writing(ids: list[str], words: str,
                                                     tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {i: (10, 10) for i in ids}, [(ids[0], 1, 1, 5, 5, 0.9)])
    with pytest.raises(ValueError, match="nothing was written|cannot be mapped") as info:
        export_yolo(run, tmp_path / "out")
    assert words in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_unreadable_images_take_no_yolo_file_so_cannot_collide(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"a.jpg": (10, 10), "a.png": (10, 10)}, [],
                     errors=("a.png",))
    assert export_yolo(run, tmp_path / "out").num_errors == 1
    assert sorted(_tree(tmp_path / "out")) == ["a.txt", "classes.txt"]


def test_a_failure_half_way_leaves_nothing(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"a.jpg": (9, 9), "b.jpg": (9, 9)},
                     [("a.jpg", 1, 1, 5, 5, 0.9), ("b.jpg", 1, 1, 5, 5, 0.8)])
    _write_run(run, {"c.jpg": (None, None)}, [("c.jpg", 1, 1, 5, 5, 0.8)], shard=1)
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="no width/height"):
        export_yolo(run, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "run"]
    assert list((tmp_path / "out").iterdir()) == []


def test_yolo_rerun_replaces_its_own_files_only(tmp_path: Path) -> None:
    first = _write_run(tmp_path / "first", {"a.jpg": (9, 9), "old/b.jpg": (9, 9)},
                       [("a.jpg", 1, 1, 5, 5, 0.9)])
    second = _write_run(tmp_path / "second", {"a.jpg": (9, 9), "c.jpg": (9, 9)},
                        [("a.jpg", 1, 1, 5, 5, 0.9), ("c.jpg", 2, 2, 4, 4, 0.3)])
    out = tmp_path / "out"
    export_yolo(first, out)
    export_yolo(second, out, min_score=0.5)
    assert sorted(_tree(out)) == ["a.txt", "c.txt", "classes.txt"]  # old/ is gone
    assert (out / "c.txt").read_text() == ""  # 0.3 < min_score
    before = _tree(out)
    (out / "new").mkdir()
    (out / "new/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"new was not written by the YOLO export"):
        export_yolo(first, out)
    (out / "new/notes.txt").unlink()
    (out / "new").rmdir()
    (out / "a.txt").write_text("0 0.5 0.5 1 1\n")
    with pytest.raises(ValueError, match=r"a\.txt was changed since the YOLO export"):
        export_yolo(first, out)
    assert sorted(_tree(out)) == sorted(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".out.dsfd-export.json", "first", "out", "second"]


def test_yolo_refuses_a_foreign_folder_and_another_exporters_folder(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"ev/a.jpg": (9, 9)}, [])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("keep\n")
    with pytest.raises(ValueError, match="not an earlier YOLO export"):
        export_yolo(run, mine)
    assert _tree(mine) == {"a.txt": hashlib.sha256(b"keep\n").hexdigest()}
    get_exporter("wider").export(run, tmp_path / "wider", min_score=0.0, clip=False)
    before = _tree(tmp_path / "wider")
    with pytest.raises(ValueError, match="not an earlier YOLO export"):
        export_yolo(run, tmp_path / "wider")
    assert _tree(tmp_path / "wider") == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        export_yolo(run, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_yolo(run, empty).num_images == 1 and (empty / "ev/a.txt").is_file()


def test_a_repeated_id_gets_one_file_and_its_boxes_once(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"a.jpg": (10, 10)}, [("a.jpg", 0, 0, 5, 5, 0.9)],
                     repeat=2)
    summary = export_yolo(run, tmp_path / "yolo")
    assert (summary.num_images, summary.num_detections) == (1, 1)
    assert (tmp_path / "yolo/a.txt").read_text() == "0 0.250000 0.250000 0.500000 0.500000\n"
    wider = get_exporter("wider").export(run, tmp_path / "wider", min_score=0.0, clip=False)
    assert (wider.num_images, wider.num_detections) == (1, 1)


def test_coco_refuses_to_replace_a_file_it_did_not_write(tmp_path: Path) -> None:
    run = _golden_run(tmp_path)
    precious = tmp_path / "precious.json"
    precious.write_text('{"mine": 1}\n')
    with pytest.raises(ValueError, match="not an earlier COCO export"):
        get_exporter("coco").export(run, precious, min_score=0.0, clip=False)
    assert precious.read_text() == '{"mine": 1}\n'
    with pytest.raises(ValueError, match="is not a file"):
        get_exporter("coco").export(run, run, min_score=0.0, clip=False)


# ---------------------------------------------------------------------------- commands


def test_dsfd_export_every_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    run = _write_run(tmp_path / "run", {"ev/img_1": (10, 10), "ev/img_2": (10, 10)},
                     [("ev/img_1", -3, -3, 5, 5, 0.9), ("ev/img_1", 1, 1, 2, 2, 0.1)])
    capsys.readouterr()
    assert main(["export", "wider", str(run), "--out", str(tmp_path / "txt")]) == 0
    assert capsys.readouterr().out == (f"wrote 2 files (2 detections, 1 images without "
                                       f"detections) to {tmp_path / 'txt'}\n")
    assert (tmp_path / "txt/ev/img_1.txt").read_text() == (
        "img_1\n2\n-3 -3 8 8 0.900\n1 1 1 1 0.100\n")  # a submission keeps the boxes
    assert main(["export", "coco", str(run), "--out", str(tmp_path / "c.json"),
                 "--min-score", "0.5"]) == 0
    coco = json.loads((tmp_path / "c.json").read_text())
    assert [a["bbox"] for a in coco["annotations"]] == [[-3.0, -3.0, 8.0, 8.0]]
    assert "2 images in 1 file (1 detections" in capsys.readouterr().out
    assert main(["export", "yolo", str(run), "--out", str(tmp_path / "yolo"),
                 "--min-score", "0.5"]) == 0
    assert (tmp_path / "yolo/ev/img_1.txt").read_text() == (
        "0 0.250000 0.250000 0.500000 0.500000\n")  # clipped to 0 0 5 5
    assert (tmp_path / "yolo/ev/img_2.txt").read_text() == ""
    assert "2 images in 3 files (1 detections, 1 images without detections)" in (
        capsys.readouterr().out)


def test_dsfd_export_fails_in_one_line(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    clash = _write_run(tmp_path / "clash", {"a.jpg": (9, 9), "a.png": (9, 9)}, [])
    capsys.readouterr()
    assert main(["export", "yolo", str(clash), "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsfd export: error: ") and "both map to a.txt" in err
    assert "\n" not in err and not (tmp_path / "y").exists()
    assert main(["export", "coco", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"dsfd export: error: {tmp_path / 'nope'}: not a folder"
    with pytest.raises(SystemExit):
        main(["export", "voc", str(clash), "--out", str(tmp_path / "v")])


def test_dsfd_export_loads_neither_torch_nor_ray(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "run", {"a.jpg": (9, 9)}, [("a.jpg", 1, 1, 5, 5, 0.9)])
    code = ("import sys; from jobs.cli import main; rc = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'heavy import'; "
            "sys.exit(rc)")
    for kind in exporter_names():
        result = subprocess.run([sys.executable, "-c", code, "export", kind, str(run), "--out",
                                 str(tmp_path / f"out-{kind}")], capture_output=True, text=True,
                                cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr


def test_dsfd_label_takes_every_registered_format() -> None:
    from jobs.cli import build_parser

    argv = ["label", "--images", "/x", "--out", "/r", "--export", "yolo"]
    assert build_parser(argv).parse_args(argv).export == "yolo"
    argv = ["label", "--images", "/x", "--out", "/r"]
    assert build_parser(argv).parse_args(argv).export == "coco"
    argv = ["label", "--images", "/x", "--out", "/r", "--export", "voc"]
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args(argv)


def test_label_export_writes_each_format_inside_the_run_clipped(tmp_path: Path) -> None:
    from jobs.label import export_labels

    run = _write_run(tmp_path / "run", {"ev/a.jpg": (10, 10)},
                     [("ev/a.jpg", -3, -3, 5, 5, 0.9), ("ev/a.jpg", 1, 1, 2, 2, 0.1)])
    for kind in exporter_names():
        text = export_labels(str(run), kind, 0.5)
        assert text.endswith(f"to {run / get_exporter(kind).default_output}")
    assert (run / "labels.wider/ev/a.txt").read_text() == "a\n1\n0 0 5 5 0.900\n"
    assert (run / "labels.yolo/ev/a.txt").read_text() == "0 0.250000 0.250000 0.500000 0.500000\n"
    coco = json.loads((run / "labels.coco.json").read_text())
    assert [a["bbox"] for a in coco["annotations"]] == [[0.0, 0.0, 5.0, 5.0]]
