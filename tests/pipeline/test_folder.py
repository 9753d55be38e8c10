"""Image folders (streamed, sorted, ids relative with extension) and list files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.datasets.folder import FolderDataset, is_image_name, iter_image_files
from pipeline.datasets.listfile import ListFileDataset


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_extensions_are_case_insensitive() -> None:
    for name in (
        "a.jpg",
        "a.JPEG",
        "a.Png",
        "a.bmp",
        "a.webp",
        "a.TIF",
        "a.tiff",
        "a.ppm",
        "a.pgm",
    ):
        assert is_image_name(name), name
    for name in ("a.gif", "a.txt", "jpg", "a.jpg.bak", "a"):
        assert not is_image_name(name), name


def test_folder_order_and_ids(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "b.jpg",
        "a.PNG",
        "notes.txt",
        "sub/z.jpeg",
        "sub/deeper/c.bmp",
        "sub/a.webp",
        "A/x.tif",
        ".hidden/h.jpg",
        ".h.jpg",
        "sub/.cache/y.jpg",
        "Ω/ü.ppm",
    )
    dataset = FolderDataset(tmp_path)
    entries = list(dataset.iter_manifest())
    # Sorted by code point within each directory, depth first: "A" < "a.PNG" < "b.jpg" < ...
    assert [e.image_id for e in entries] == [
        "A/x.tif",
        "a.PNG",
        "b.jpg",
        "sub/a.webp",
        "sub/deeper/c.bmp",
        "sub/z.jpeg",
        "Ω/ü.ppm",
    ]
    for entry in entries:
        assert Path(entry.path) == tmp_path / entry.image_id
        assert os.path.isabs(entry.path) and entry.width is None and entry.height is None
    assert dataset.describe() == {"kind": "folder", "root": str(tmp_path)}
    assert dataset.name == f"folder:{tmp_path}"


def test_folder_is_streamed(tmp_path: Path) -> None:
    _touch(tmp_path, *(f"d{i}/img{j}.jpg" for i in range(3) for j in range(3)))
    stream = iter_image_files(tmp_path)
    assert next(stream).endswith("d0/img0.jpg")
    # Created after the walk started, in a directory not yet listed: still seen.
    _touch(tmp_path, "d2/img_late.jpg")
    rest = [Path(p).relative_to(tmp_path).as_posix() for p in stream]
    assert rest[-1] == "d2/img_late.jpg" and len(rest) == 9


def test_folder_follows_links_without_cycles(tmp_path: Path) -> None:
    _touch(tmp_path, "real/a.jpg")
    (tmp_path / "real/loop").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    ids = [e.image_id for e in FolderDataset(tmp_path).iter_manifest()]
    assert ids == ["alias/a.jpg", "real/a.jpg"]


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="missing"):
        FolderDataset(tmp_path / "missing")
    assert list(FolderDataset(tmp_path).iter_manifest()) == []


def test_list_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists/images.txt"
    listing.write_bytes(
        "\ufeff# a comment\n\nimg/a.jpg\r\n  spaced name.png  \n   # indented comment\n"
        f"{tmp_path}/abs.jpg\nimg/a.jpg\n".encode()
    )
    dataset = ListFileDataset(listing)
    entries = list(dataset.iter_manifest())
    assert [e.image_id for e in entries] == [
        "img/a.jpg",
        "spaced name.png",
        f"{tmp_path}/abs.jpg",
        "img/a.jpg",
    ]
    assert entries[0].path == str(tmp_path / "lists/img/a.jpg")
    assert entries[1].path == str(tmp_path / "lists/spaced name.png")
    assert entries[2].path == f"{tmp_path}/abs.jpg"
    info = dataset.describe()
    assert info["kind"] == "list" and info["num_images"] == 4 and len(info["sha256"]) == 64
    listing.write_text("img/a.jpg\nimg/b.jpg\n")
    assert ListFileDataset(listing).describe()["sha256"] != info["sha256"]


@pytest.mark.parametrize(
    ("content", "line", "what"),
    [
        (b"ok.jpg\nbad\x00name.jpg\n", 2, "control character"),
        (b"# c\n\nok.jpg\n\xff\xfe.jpg\n", 4, "UTF-8"),
    ],
)
def test_list_file_malformed_lines(tmp_path: Path, content: bytes, line: int, what: str) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(content)
    with pytest.raises(ValueError, match=rf"list\.txt:{line}: .*{what}"):
        list(ListFileDataset(listing).iter_manifest())


def test_list_file_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        ListFileDataset(tmp_path / "nope.txt")
