"""Image folders (streamed, sorted, ids relative with extension, escaped reversibly, odd entries
reported not raised) and list files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.datasets.folder import (
    FolderDataset,
    escape_path,
    is_image_name,
    iter_image_files,
    unescape_path,
    utf8_id,
)
from pipeline.datasets.listfile import ListFileDataset
from pipeline.images import ImageReadError, decode_image


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


# ---------------------------------------------------------------------------- odd names


def _raw_write(folder: Path, name: bytes, data: bytes) -> None:
    """Create a file whose name is the raw bytes ``name`` (skips where the file system
    refuses names that are not valid UTF-8)."""
    try:
        with open(os.path.join(os.fsencode(folder), name), "wb") as fh:
            fh.write(data)
    except OSError as exc:
        pytest.skip(f"file system refuses the name {name!r}: {exc}")


def test_colliding_escapes_get_distinct_ids_and_paths_reopen(tmp_path: Path) -> None:
    _raw_write(tmp_path, b"caf\xe9.png", b"raw byte name")
    _raw_write(tmp_path, b"caf\\xe9.png", b"literal backslash name")
    _raw_write(tmp_path, b"plain.png", b"plain")
    entries = list(FolderDataset(tmp_path).iter_manifest())
    ids = [e.image_id for e in entries]
    assert sorted(ids) == sorted(["caf\\xe9.png", "caf\\\\xe9.png", "plain.png"])
    assert len(set(ids)) == 3 and all(i.encode("utf-8") for i in ids)
    expected = {
        "caf\\xe9.png": b"raw byte name",
        "caf\\\\xe9.png": b"literal backslash name",
        "plain.png": b"plain",
    }
    for entry in entries:
        stored = escape_path(entry.path)  # the text a run directory stores
        stored.encode("utf-8")
        with open(unescape_path(stored), "rb") as fh:
            assert fh.read() == expected[entry.image_id]
        with open(os.fsencode(unescape_path(stored)), "rb") as fh:  # the exact raw bytes
            assert fh.read() == expected[entry.image_id]
        with open(entry.path, "rb") as fh:
            assert fh.read() == expected[entry.image_id]
    assert escape_path(str(tmp_path / "plain.png")) == str(tmp_path / "plain.png")


def test_escape_is_the_old_one_for_names_without_backslash() -> None:
    raw = os.fsdecode(b"d\xffir/caf\xe9.jpg")
    assert escape_path(raw) == utf8_id(raw) == "d\\xffir/caf\\xe9.jpg"
    assert escape_path("Ω/ü.ppm") == "Ω/ü.ppm"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=12), min_size=2, max_size=2))
def test_escape_path_is_injective_and_reversible(names: list[bytes]) -> None:
    texts = [os.fsdecode(name) for name in names]
    escaped = [escape_path(text) for text in texts]
    for text, esc in zip(texts, escaped, strict=True):
        esc.encode("utf-8")  # valid UTF-8
        assert unescape_path(esc) == text
        assert os.fsencode(unescape_path(esc)) == os.fsencode(text)
    assert (escaped[0] == escaped[1]) == (names[0] == names[1])


@given(st.text(max_size=20))
def test_escape_path_round_trips_any_text(text: str) -> None:
    assert unescape_path(escape_path(text)) == text


@pytest.mark.parametrize("text", ["a\\b", "a\\x41", "a\\udc80", "a\\x4", "end\\"])
def test_unescape_refuses_what_escape_never_writes(text: str) -> None:
    with pytest.raises(ValueError, match="not an escaped path"):
        unescape_path(text)


# ---------------------------------------------------------------------------- odd entries


def test_links_that_cannot_be_followed_become_entries(tmp_path: Path) -> None:
    _touch(tmp_path, "ok.jpg", "sub/b.jpg")
    (tmp_path / "ok.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "missing.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")  # ELOOP
    (tmp_path / "ping.png").symlink_to(tmp_path / "pong.png")
    (tmp_path / "pong.png").symlink_to(tmp_path / "ping.png")
    (tmp_path / "selfdir").symlink_to(tmp_path / "selfdir")  # a "folder" that loops
    (tmp_path / "gone_dir").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (tmp_path / "sub/up").symlink_to(tmp_path, target_is_directory=True)  # a cycle
    (tmp_path / "notes.txt").write_text("not an image")
    os.mkfifo(tmp_path / "pipe.jpg")
    entries = list(FolderDataset(tmp_path).iter_manifest())  # does not raise
    assert [e.image_id for e in entries] == [
        "dangling.jpg",
        "gone_dir",
        "loop.jpg",
        "ok.jpg",
        "ping.png",
        "pipe.jpg",
        "pong.png",
        "selfdir",
        "sub/b.jpg",
    ]
    reasons = {}
    for entry in entries:
        try:
            decode_image(entry.path)
        except ImageReadError as exc:
            reasons[entry.image_id] = str(exc)
    assert "file not found" in reasons["dangling.jpg"]
    assert "file not found" in reasons["gone_dir"]
    assert "symbolic links" in reasons["loop.jpg"] and "symbolic links" in reasons["selfdir"]
    assert "not a regular file" in reasons["pipe.jpg"]
    assert "empty file" in reasons["sub/b.jpg"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unreadable_folder_becomes_an_entry(tmp_path: Path) -> None:
    _touch(tmp_path, "a.jpg", "locked/x.jpg", "z.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        ids = [e.image_id for e in FolderDataset(tmp_path).iter_manifest()]
    finally:
        (tmp_path / "locked").chmod(0o755)
    assert ids == ["a.jpg", "locked", "z.jpg"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_unlistable_root_fails_at_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o100)  # can enter, cannot list
    try:
        with pytest.raises(PermissionError, match="image folder cannot be listed"):
            FolderDataset(root)
    finally:
        root.chmod(0o755)
