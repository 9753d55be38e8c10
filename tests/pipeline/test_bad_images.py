"""Bad and odd image files beyond ``odd_images``: truncated PNG, tiny and huge sizes, a real
decompression bomb, Pillow's own limit, pipes, unreadable files, non-UTF-8 and spaced names.

The shard-level cases run :class:`~pipeline.actors.ShardWorker` in this process (the class the
Ray actor wraps), so the written Parquet parts are checked without starting Ray.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_image, read_image_size
from tests.pipeline.odd_images import gradient_rgb, write_odd_images
from tests.pipeline.runner_support import small_checkpoint  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, width: int, height: int, *, bit_depth: int = 8, rows: bytes | None = None,
         row_bytes: int | None = None) -> None:
    """A grayscale PNG written by hand: any header size, pixel rows streamed through zlib."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    if rows is None:  # every row: filter byte 0, then zeros; compressed without holding them
        per_row = b"\x00" * (1 + (row_bytes if row_bytes is not None else width))
        packer = zlib.compressobj(9)
        rows = b"".join(packer.compress(per_row) for _ in range(height)) + packer.flush()
    else:
        rows = zlib.compress(rows)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))


def test_truncated_png_and_one_pixel_image(tmp_path: Path) -> None:
    Image.fromarray(gradient_rgb(64, 48)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match="^corrupt or truncated image: "):
        decode_image(str(tmp_path / "cut.png"))
    _png(tmp_path / "one.png", 1, 1, rows=b"\x00\xc8")
    one = decode_image(str(tmp_path / "one.png"))
    assert (one.width, one.height) == (1, 1)
    assert one.pixels.tolist() == [[[200, 200, 200]]]


def test_huge_header_and_a_real_bomb_are_refused_before_decoding(tmp_path: Path) -> None:
    # a 30000 x 30000 header in a 65-byte file: our check, not Pillow's, with our message
    _png(tmp_path / "huge.png", 30000, 30000, rows=b"")
    with pytest.raises(ImageReadError) as info:
        decode_image(str(tmp_path / "huge.png"))
    assert str(info.value) == ("decompression bomb: 30000x30000 = 900000000 pixels over the "
                               f"limit of {DEFAULT_MAX_PIXELS}")
    # a real bomb: 14000 x 14000 one-bit pixels (196 M) that inflate from a few kilobytes
    _png(tmp_path / "bomb.png", 14000, 14000, bit_depth=1, row_bytes=14000 // 8)
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(ImageReadError, match="14000x14000 = 196000000 pixels over the limit"):
        decode_image(str(tmp_path / "bomb.png"))
    with pytest.raises(ImageReadError, match="over the limit of 1000000$"):
        decode_image(str(tmp_path / "bomb.png"), max_pixels=1_000_000)


def test_the_limit_is_ours_in_both_directions(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow refuses more than twice its global by itself; ``max_pixels`` replaces it."""
    Image.fromarray(gradient_rgb(40, 30)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 1200 px
    assert decode_image(str(tmp_path / "small.png"), max_pixels=1200).width == 40
    assert Image.MAX_IMAGE_PIXELS == 100  # restored after the call
    with pytest.raises(ImageReadError, match="40x30 = 1200 pixels over the limit of 1199"):
        decode_image(str(tmp_path / "small.png"), max_pixels=1199)
    with pytest.raises(ValueError, match="max_pixels must be > 0"):
        decode_image(str(tmp_path / "small.png"), max_pixels=0)


def test_more_modes_decode(tmp_path: Path) -> None:
    rgb = gradient_rgb(32, 24)
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    Image.fromarray(rgb).save(tmp_path / "rot8.png", exif=exif)  # lossless: exact pixels
    turned = decode_image(str(tmp_path / "rot8.png"))
    assert (turned.width, turned.height) == (24, 32)
    np.testing.assert_array_equal(turned.pixels, np.rot90(rgb, k=1))
    Image.fromarray(rgb[:, :, 0].astype(np.int32) * 100, mode="I").save(tmp_path / "int32.tif")
    Image.fromarray(rgb[:, :, 0].astype(np.float32) / 255.0, mode="F").save(tmp_path / "f.tif")
    Image.fromarray(rgb).convert("LA").save(tmp_path / "gray_alpha.png")
    for name in ("int32.tif", "f.tif", "gray_alpha.png"):
        image = decode_image(str(tmp_path / name))
        assert image.pixels.shape == (24, 32, 3) and image.pixels.dtype == np.uint8, name
        assert image.pixels.max() > 0, name


def test_the_header_size_is_the_decoded_frame(tmp_path: Path) -> None:
    """``read_image_size`` (header only) agrees with ``decode_image`` on every odd file."""
    expect = write_odd_images(tmp_path)
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(gradient_rgb(32, 24)).save(tmp_path / "rot8.png", exif=exif)
    expect["rot8.png"] = "ok"
    for name, status in expect.items():
        if status == "ok":
            image = decode_image(str(tmp_path / name))
            assert read_image_size(str(tmp_path / name)) == (image.width, image.height), name
        elif name != "truncated.jpg":  # whole header, cut pixels: only decoding finds it
            with pytest.raises(ImageReadError):
                read_image_size(str(tmp_path / name))
    assert read_image_size(str(tmp_path / "rotated.jpg")) == (48, 64)  # EXIF 6: turned
    assert read_image_size(str(tmp_path / "rot8.png")) == (24, 32)
    _png(tmp_path / "bomb.png", 14000, 14000, bit_depth=1, row_bytes=14000 // 8)
    with pytest.raises(ImageReadError, match="^decompression bomb: 14000x14000"):
        read_image_size(str(tmp_path / "bomb.png"))


def test_a_pipe_named_jpg_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading would wait for a writer forever
    with pytest.raises(ImageReadError, match="not a regular file"):
        decode_image(str(tmp_path / "pipe.jpg"))
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageReadError, match="is a directory"):
        decode_image(str(tmp_path / "folder.jpg"))


def _decode_as_nobody(path: Path) -> subprocess.CompletedProcess[str]:
    """Decode ``path`` in a child process that drops root for ``nobody`` once its modules
    are loaded (the interpreter itself may live where ``nobody`` cannot read)."""
    code = ("import os, sys\nfrom PIL import Image\nImage.init()\n"
            "from pipeline.images import ImageReadError, decode_image\n"
            "os.setgid(65534)\nos.setuid(65534)\n"
            "try:\n    decode_image(sys.argv[1])\nexcept ImageReadError as e:\n"
            "    print(e)\n    sys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_unreadable_file_names_the_reason() -> None:
    # root reads files whatever their mode, so as root the reader drops to ``nobody``
    folder = Path(tempfile.mkdtemp(prefix="dsfd-perm-"))
    try:
        folder.chmod(0o755)
        path = folder / "locked.png"
        Image.fromarray(gradient_rgb(8, 8)).save(path)
        path.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(ImageReadError, match=f"^permission denied: {path}$"):
                decode_image(str(path))
            return
        done = _decode_as_nobody(path)
        assert done.returncode == 3, done.stderr[-2000:]
        assert done.stdout.strip() == f"permission denied: {path}"
    finally:
        (folder / "locked.png").unlink(missing_ok=True)
        folder.rmdir()


def test_a_shard_with_odd_names_and_a_vanished_file_is_written(
        tmp_path: Path, small_checkpoint: Path) -> None:  # noqa: F811
    from pipeline.actors import ShardWorker, WorkerSettings
    from pipeline.datasets.folder import FolderDataset
    from pipeline.rundir import RunDir, inspect_part, part_name
    from pipeline.shards import iter_shards

    photos = tmp_path / "photos"
    (photos / "a trip").mkdir(parents=True)
    Image.fromarray(gradient_rgb(40, 30)).save(photos / "a trip" / "day one .jpg")
    Image.fromarray(gradient_rgb(40, 30, seed=1)).save(photos / "gone.png")
    raw = os.fsencode(photos) + b"/caf\xe9 \xff.png"  # not UTF-8: Latin-1 and a stray byte
    Image.fromarray(gradient_rgb(40, 30, seed=2)).save(raw.decode("utf-8", "surrogateescape"))
    _png(photos / "tiny.png", 1, 1, rows=b"\x00\x10")
    entries = list(FolderDataset(photos).iter_manifest())
    assert [e.image_id for e in entries] == ["a trip/day one .jpg", "caf\\xe9 \\xff.png",
                                             "gone.png", "tiny.png"]
    (photos / "gone.png").unlink()  # vanished between listing and decoding
    shard = next(iter_shards(iter(entries), 8))
    with RunDir.open_for_writing(tmp_path / "run") as run:
        writer = run.begin({"config": {"model": {"name": "test"}}})
        worker = ShardWorker(WorkerSettings(model=str(small_checkpoint), max_size=64), writer)
        try:
            result = worker.process(shard)
        finally:
            worker.close()
    assert (result.num_images, result.num_errors) == (4, 1)
    images = RunDir.open(tmp_path / "run").images().to_pandas().set_index("image_id")
    assert images.loc["gone.png", "error"] == f"file not found: {photos / 'gone.png'}"
    assert list(images["status"]) == ["ok", "ok", "error", "ok"]
    assert images.loc["caf\\xe9 \\xff.png", "path"] == f"{photos}/caf\\xe9 \\xff.png"
    assert tuple(images.loc["tiny.png", ["width", "height"]]) == (1, 1)
    dets = pq.read_table(tmp_path / "run" / "detections" / "part-00000.parquet")
    assert set(dets["image_id"].to_pylist()) <= {"a trip/day one .jpg", "caf\\xe9 \\xff.png",
                                                 "tiny.png"}
    part = inspect_part(tmp_path / "run" / "images" / part_name(0), "images")
    assert part.problem is None and part.meta["digest"] == shard.digest
    assert not [p for p in (tmp_path / "run").rglob(".tmp-*")]


def test_gallery_tiles_are_decoded_like_the_run(tmp_path: Path) -> None:
    """A 16-bit image is drawn as decoded (not white); an unreadable one is a grey tile."""
    from pipeline.datasets.wider import WiderGroundTruth, WiderImageGT
    from reports.figures.gallery import TILE, GalleryItem, draw_gallery

    deep = tmp_path / "deep16.png"
    Image.fromarray(gradient_rgb(64, 48)[:, :, 0].astype(np.uint16) * 257).save(deep)
    (tmp_path / "broken.jpg").write_text("not an image\n")
    gt = WiderGroundTruth(images=tuple(
        WiderImageGT(image_id=name, boxes_xywh=np.array([[8, 8, 16, 16]], np.int32),
                     attributes={}, keep={}) for name in ("deep", "broken")), events=("e",))
    items = [GalleryItem("miss", name, str(path), (8.0, 8.0, 24.0, 24.0), float("nan"))
             for name, path in (("deep", deep), ("broken", tmp_path / "broken.jpg"))]
    out = draw_gallery(items, gt, tmp_path / "gallery.png", columns=2)
    assert out is not None
    sheet = np.asarray(Image.open(out).convert("RGB"))
    deep_tile, broken_tile = sheet[:TILE, :TILE], sheet[:TILE, TILE + 4:2 * TILE + 4]
    assert deep_tile.mean() < 200  # Pillow's own convert would clip 16 bits to white
    assert (broken_tile == [209, 213, 219]).all(axis=2).mean() > 0.8  # grey, with the reason
