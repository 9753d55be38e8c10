"""Malformed lines the format tests do not already cover: negative counts and counts that do
not match in WIDER annotations, FDDB ellipse lists and FDDB detection files, text where a
number goes, and BOM/CRLF/trailing spaces in detection files (tolerated, as the official
tools tolerate them). Each error names the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets.fddb import read_detections, read_ellipse_list
from pipeline.datasets.wider import read_wider_annotations


@pytest.mark.parametrize(("body", "line"), [
    ("0--P/a.jpg\n-1\n", 2),
    ("0--P/a.jpg\n1.5\n1 2 3 4 0 0 0 0 0 0\n", 2),
    ("0--P/a.jpg\n1\n1 2 three 4 0 0 0 0 0 0\n", 3),
    ("0--P/a.jpg\n1\n1 2 3 4 0 0 0 0 0 0 7\n", 3),
    ("0--P/a.jpg\n1\n", 3),
])
def test_wider_annotation_bad_counts_and_fields(tmp_path: Path, body: str, line: int) -> None:
    path = tmp_path / "gt.txt"
    path.write_text(body)
    with pytest.raises(ValueError, match=rf"gt\.txt: line {line}: ") as info:
        read_wider_annotations(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "line"), [
    ("img\n-2\n", 2),
    # one region more than counted: the extra line reads as the next image name, with no count
    ("img\n1\n1 2 3 4 5 1\n2 2 3 4 5 1\n", 5),
    ("img\n\n", 2),
])
def test_fddb_ellipse_bad_counts(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "ell.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"ell\.txt:{line}:"):
        read_ellipse_list(path)


@pytest.mark.parametrize(("text", "line"), [
    ("img\n-1\n", 2),
    ("img\nthree\n", 2),
    ("img\n2\n1 2 3 4 0.5\n", 4),
    ("img\n1\n1 2 3 four 0.5\n", 3),
    ("img\n1\n1 2 3 4\n", 3),
])
def test_fddb_detection_file_bad_lines(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "det.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"det\.txt:{line}:"):
        read_detections(path, "rect")


def test_fddb_detection_file_bom_crlf_trailing_spaces(tmp_path: Path) -> None:
    path = tmp_path / "det.txt"
    path.write_bytes("\ufeffa/img_1\r\n1\r\n1 2 3 4 0.5  \r\na/img_2\r\n0\r\n".encode())
    dets = read_detections(path, "rect")
    assert [d.image_id for d in dets] == ["a/img_1", "a/img_2"]
    assert dets[0].regions.tolist() == [[1, 2, 3, 4]] and dets[0].scores.tolist() == [0.5]
