"""ShardWorker batching: bucketed batches of mixed sizes (optimised model) give the boxes of
one image at a time (model as loaded), and a tiny memory budget splits every batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from pipeline.actors import ShardWorker, WorkerSettings
from pipeline.datasets.manifest import ManifestEntry
from pipeline.rundir import RunDir
from pipeline.shards import iter_shards


def _entries(folder: Path) -> list[ManifestEntry]:
    folder.mkdir()
    out = []
    for i, (h, w) in enumerate([(120, 160), (100, 150), (128, 128), (90, 200), (120, 160)]):
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = np.stack([(xx * (i + 3)) % 256, (yy * (i + 5)) % 256, (xx + yy) % 256], 2)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        out.append(ManifestEntry(image_id=f"img{i}", path=str(path), width=w, height=h))
    return out


def _boxes(tmp: Path, name: str, entries: list[ManifestEntry],
           **settings: object) -> dict[str, np.ndarray]:
    shard = next(iter_shards(iter(entries), len(entries)))
    with RunDir.open_for_writing(tmp / name) as run:
        worker = ShardWorker(WorkerSettings(model="shipped", **settings),  # type: ignore[arg-type]
                             run.begin({"config": {}}))
        try:
            worker.process(shard)
            plan = worker.detector.detector.planned_batches(  # type: ignore[attr-defined]
                [(e.height, e.width) for e in entries])
        finally:
            worker.close()
    table = pq.read_table(next((tmp / name / "detections").glob("*.parquet"))).to_pandas()
    out = {k: g[["x1", "y1", "x2", "y2", "score"]].to_numpy() for k, g in
           table.groupby("image_id")}
    out["_batches"] = np.array([len(b) for b in plan])
    return out


def test_bucketed_optimised_batches_equal_single_images(tmp_path: Path) -> None:
    entries = _entries(tmp_path / "images")
    single = _boxes(tmp_path, "single", entries, batch_size=1, optimize=False, bucket=True)
    batched = _boxes(tmp_path, "batched", entries, batch_size=8, optimize=True, bucket=True)
    split = _boxes(tmp_path, "split", entries, batch_size=8, optimize=True, bucket=True,
                   memory_budget=1.0)
    assert sorted(batched.pop("_batches").tolist()) == [1, 4]  # buckets 128x256 and 128x192
    assert split.pop("_batches").tolist() == [1] * 5  # every image alone under the budget
    single.pop("_batches")
    assert single.keys() == batched.keys() == split.keys() and len(single) == 5
    for key, want in single.items():
        for got in (batched[key], split[key]):
            confident_w, confident_g = want[want[:, 4] > 0.3], got[got[:, 4] > 0.3]
            assert confident_w.shape == confident_g.shape
            np.testing.assert_allclose(confident_g, confident_w, rtol=1e-4, atol=1e-2)


def _forward_batches(tmp: Path, name: str, entries: list[ManifestEntry],
                     **settings: object) -> tuple[list[int], dict[str, np.ndarray]]:
    """Batch sizes of the worker's forwards over one shard, and its boxes per image."""
    shard = next(iter_shards(iter(entries), len(entries)))
    sizes: list[int] = []
    with RunDir.open_for_writing(tmp / name) as run:
        worker = ShardWorker(WorkerSettings(model="shipped", **settings),  # type: ignore[arg-type]
                             run.begin({"config": {}}))
        model = worker.detector.detector.model  # type: ignore[attr-defined]
        calibration = (2 * worker.detector.detector.stride,) * 2  # type: ignore[attr-defined]

        def count(_m: object, inputs: tuple[torch.Tensor, ...], _o: object) -> None:
            if tuple(inputs[0].shape[-2:]) != calibration:  # the memory estimate's forward
                sizes.append(int(inputs[0].shape[0]))

        hook = model.register_forward_hook(count)
        try:
            worker.process(shard)
        finally:
            hook.remove()
            worker.close()
    table = pq.read_table(next((tmp / name / "detections").glob("*.parquet"))).to_pandas()
    return sizes, {k: g[["x1", "y1", "x2", "y2", "score"]].to_numpy() for k, g in
                   table.groupby("image_id")}


def test_worker_groups_a_window_of_batches_by_bucket(tmp_path: Path) -> None:
    entries = _entries(tmp_path / "images")  # buckets 128x256 (4 images) and 128x128 (1)
    sizes, _ = _forward_batches(tmp_path, "grouped", entries, batch_size=2, optimize=False,
                                bucket=True)
    # windows of 2 would run [0, 1], [2], [3], [4]: grouped, the 128x256 images pair up
    assert sorted(sizes) == [1, 2, 2]


def test_worker_multiscale_batches_passes_with_the_same_boxes(tmp_path: Path) -> None:
    entries = _entries(tmp_path / "images")
    chosen = [entries[0], entries[1], entries[4]]  # 0 and 4 share their size
    alone, want = _forward_batches(tmp_path, "alone", chosen, batch_size=1, optimize=False,
                                   multiscale=True)
    together, got = _forward_batches(tmp_path, "together", chosen, batch_size=8,
                                     optimize=False, multiscale=True)
    assert len(alone) == 33 and len(together) == 20  # flips with originals, 0 with 4
    assert want.keys() == got.keys() and len(want) == 3
    for key, boxes in want.items():
        assert boxes.shape == got[key].shape
        np.testing.assert_allclose(got[key], boxes, rtol=1e-4, atol=1e-2)


def test_where_outside_ray_starts_no_ray(tmp_path: Path) -> None:
    """In a fresh interpreter (other tests of this process may have started Ray), a worker
    driven without Ray, as on a GPU machine without it, says where it runs and starts no Ray."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from pipeline.actors import ShardWorker, WorkerSettings\n"
        "from pipeline.rundir import RunDir\n"
        f"with RunDir.open_for_writing({str(tmp_path / 'run')!r}) as run:\n"
        "    worker = ShardWorker(WorkerSettings(model='shipped'), run.begin({'config': {}}))\n"
        "    place = worker.where()\n"
        "    worker.close()\n"
        "ray = sys.modules.get('ray')\n"
        "print(json.dumps({**place, 'ray_started': bool(ray and ray.is_initialized())}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    place = json.loads(done.stdout.strip().splitlines()[-1])
    assert place["node"] == "" and place["device"] == "cpu"
    assert place["ray_started"] is False


def test_batches_without_buckets_give_the_one_image_results(tmp_path: Path) -> None:
    """The default (no --bucket): only equal sizes share a forward, nothing is padded, and a
    batch gives every image the boxes it gets alone."""
    entries = _entries(tmp_path / "images")
    alone_sizes, alone = _forward_batches(tmp_path, "alone", entries, batch_size=1,
                                          optimize=False)
    batch_sizes, batched = _forward_batches(tmp_path, "batched", entries, batch_size=8,
                                            optimize=False)
    assert alone_sizes == [1] * 5 and sorted(batch_sizes) == [1, 1, 1, 2]  # 0 and 4 pair up
    assert alone.keys() == batched.keys() and len(alone) == 5
    for key, want in alone.items():
        assert batched[key].shape == want.shape
        np.testing.assert_allclose(batched[key], want, rtol=1e-5, atol=1e-3)
