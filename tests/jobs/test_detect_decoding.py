"""`dsfd detect` reads images as the pipeline does: 16-bit PNGs, EXIF orientation, bombs among
good images, folders. Real files, the real command line (``jobs.cli.main``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from jobs.cli import main
from pipeline.datasets.folder import iter_image_files
from pipeline.images import decode_image
from tests.pipeline.odd_images import gradient_rgb
from tests.pipeline.runner_support import (  # noqa: F401  (fixture)
    assert_same_detections,
    reference_detections,
    small_checkpoint,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the shared test machine; and the workers' summation order


def _detect_json(paths: list[Path], checkpoint: Path, capsys: pytest.CaptureFixture[str],
                 *extra: str) -> tuple[int, list[str], dict[str, np.ndarray], list[str]]:
    """Run ``dsfd detect --json --min-score 0``.

    Returns:
        ``(status, printed images in order, {image: (N, 5) boxes}, stderr lines)``.
    """
    status = main(["detect", *map(str, paths), "--model", str(checkpoint), "--json",
                   "--min-score", "0", *extra])
    captured = capsys.readouterr()
    items = json.loads(captured.out)
    boxes = {item["image"]: np.asarray(item["detections"], np.float32).reshape(-1, 5)
             for item in items}
    return status, [item["image"] for item in items], boxes, captured.err.splitlines()


def _sixteen_bit_png(path: Path) -> None:
    """A 16-bit grayscale PNG using the whole 0..65535 range (Pillow mode ``I;16``)."""
    deep = gradient_rgb(64, 48)[:, :, 0].astype(np.uint16) * 257
    Image.fromarray(deep).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"


def _exif6_jpeg(path: Path) -> None:
    """A 64 x 48 JPEG stored sideways: EXIF orientation 6 turns it to 48 x 64 for display."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gradient_rgb(64, 48, seed=4)).save(path, quality=90, exif=exif)


def _pipeline_detections(checkpoint: Path, paths: dict[str, str], run_dir: Path,
                         ) -> dict[str, np.ndarray]:
    """Detections of the pipeline's own worker (the class the Ray actor wraps), in process."""
    from pipeline.actors import ShardWorker, WorkerSettings
    from pipeline.datasets.manifest import ManifestEntry
    from pipeline.rundir import RunDir
    from pipeline.shards import iter_shards

    entries = [ManifestEntry(image_id=i, path=p) for i, p in paths.items()]
    shard = next(iter_shards(iter(entries), len(entries)))
    with RunDir.open_for_writing(run_dir) as run:
        writer = run.begin({"config": {"model": {"name": "test"}}})
        worker = ShardWorker(WorkerSettings(model=str(checkpoint)), writer)
        try:
            result = worker.process(shard)
        finally:
            worker.close()
    assert result.num_errors == 0
    assert RunDir.open(run_dir).images()["status"].to_pylist() == ["ok"] * len(paths)
    dets = pq.read_table(run_dir / "detections" / "part-00000.parquet").to_pandas()
    return {i: dets.loc[dets["image_id"] == i, ["x1", "y1", "x2", "y2", "score"]]
            .to_numpy(np.float32) for i in paths}


def test_sixteen_bit_and_rotated_images_give_the_pipelines_boxes(
        tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    deep, turned = tmp_path / "deep16.png", tmp_path / "turned.jpg"
    _sixteen_bit_png(deep)
    _exif6_jpeg(turned)
    assert decode_image(str(deep)).pixels.mean() < 200  # scaled, not clipped to white
    status, _, got, err = _detect_json([deep, turned], small_checkpoint, capsys)
    assert (status, err) == (0, [])
    assert all(len(boxes) for boxes in got.values())
    paths = {str(deep): str(deep), str(turned): str(turned)}
    assert_same_detections(got, reference_detections(small_checkpoint, paths))
    assert_same_detections(got, _pipeline_detections(small_checkpoint, paths, tmp_path / "run"))


def test_exif_orientation_puts_boxes_in_the_displayed_frame(
        tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    turned = tmp_path / "turned.jpg"
    _exif6_jpeg(turned)
    with Image.open(turned) as im:  # the stored (sideways) pixels, turned by hand, lossless
        stored = np.asarray(im.convert("RGB"))
    upright, sideways = tmp_path / "upright.png", tmp_path / "sideways.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(stored, k=-1))).save(upright)  # clockwise
    Image.fromarray(stored).save(sideways)
    assert Image.open(upright).size == (48, 64)
    status, _, got, err = _detect_json([turned, upright, sideways], small_checkpoint, capsys)
    assert (status, err) == (0, [])
    a, b, c = got[str(turned)], got[str(upright)], got[str(sideways)]
    assert len(a) > 0 and a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
    assert c.shape != a.shape or not np.allclose(c, a, atol=1.0)  # the stored frame differs


def test_a_bomb_among_good_images_costs_one_line(
        tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    good_a, bomb, good_b = tmp_path / "a.jpg", tmp_path / "bomb.png", tmp_path / "b.png"
    Image.fromarray(gradient_rgb(64, 48)).save(good_a, quality=90)
    Image.fromarray(gradient_rgb(40, 56, seed=2)).save(good_b)
    Image.new("1", (14000, 14000)).save(bomb)  # 196 M pixels in about 24 kB
    assert bomb.stat().st_size < 100_000
    status, images, got, err = _detect_json([good_a, bomb, good_b], small_checkpoint, capsys)
    assert status == 1
    assert err == [f"dsfd detect: error: {bomb}: decompression bomb: 14000x14000 = 196000000 "
                   "pixels over the limit of 178956970"]
    assert images == [str(good_a), str(good_b)]
    want = reference_detections(small_checkpoint, {str(good_a): str(good_a),
                                                   str(good_b): str(good_b)})
    assert_same_detections(got, want)
    # the table output too: both good images printed, the bomb on stderr only
    assert main(["detect", str(good_a), str(bomb), str(good_b), "--model",
                 str(small_checkpoint), "--min-score", "0"]) == 1
    captured = capsys.readouterr()
    assert [line.split(":")[0] for line in captured.out.splitlines()
            if not line.startswith(" ")] == [str(good_a), str(good_b)]
    assert len(captured.err.splitlines()) == 1
    # the limit is the command's too
    status, images, _, err = _detect_json([good_a, good_b], small_checkpoint, capsys,
                                          "--max-pixels", "2500")
    assert (status, images) == (1, [str(good_b)])
    assert err == [f"dsfd detect: error: {good_a}: decompression bomb: 64x48 = 3072 pixels "
                   "over the limit of 2500"]


def _photo_tree(root: Path) -> None:
    (root / "party" / "late").mkdir(parents=True)
    (root / "b trip").mkdir()
    Image.fromarray(gradient_rgb(40, 30, seed=1)).save(root / "z.jpg", quality=90)
    Image.fromarray(gradient_rgb(32, 40, seed=2)).save(root / "party" / "img_2.PNG")
    Image.fromarray(gradient_rgb(48, 32, seed=3)).save(root / "party" / "late" / "x.png")
    Image.fromarray(gradient_rgb(30, 30, seed=4)).save(root / "b trip" / "a.jpg", quality=90)
    Image.fromarray(gradient_rgb(30, 30, seed=5)).save(root / "party" / ".hidden.jpg")
    (root / "party" / "notes.txt").write_text("not an image, not named like one\n")


def test_detect_folder(tmp_path: Path, small_checkpoint: Path,  # noqa: F811
                       capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    _photo_tree(photos)
    status, images, got, err = _detect_json([photos], small_checkpoint, capsys)
    assert (status, err) == (0, [])
    expected = [str(photos / "b trip" / "a.jpg"), str(photos / "party" / "img_2.PNG"),
                str(photos / "party" / "late" / "x.png"), str(photos / "z.jpg")]
    assert images == expected == list(iter_image_files(photos))  # the folder: listing
    assert_same_detections(got, reference_detections(small_checkpoint,
                                                     {p: p for p in expected}))
    # a folder and a file together, a broken image inside and an empty folder: the good
    # images are still detected, one line per problem, status 1
    (photos / "party" / "broken.jpg").write_text("not an image\n")
    (tmp_path / "empty").mkdir()
    status, images, _, err = _detect_json([photos / "z.jpg", tmp_path / "empty", photos],
                                          small_checkpoint, capsys)
    assert status == 1
    assert images == [str(photos / "z.jpg"), *expected]
    assert err == [f"dsfd detect: error: {tmp_path / 'empty'}: no image files in this folder",
                   f"dsfd detect: error: {photos / 'party' / 'broken.jpg'}: not an image "
                   "(format not recognised)"]
