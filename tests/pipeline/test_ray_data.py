"""``pipeline.ray_data.DetectBatch`` in a real Ray Data pipeline (local Ray): read_images ->
map_batches -> write_parquet gives the boxes and scores ``dsfd run`` stores for the same
images, in plain Parquet."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.datasets import open_dataset
from pipeline.ray_data import BOXES_TYPE, SCORES_TYPE, DetectBatch
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    run_detections,
    small_checkpoint,
    synthetic_root,
)

MAX_SIZE = 160


def _sorted(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.lexsort(boxes.T[::-1])]


def test_detect_batch_in_ray_data_equals_dsfd_run(ray_ctx: None, tmp_path: Path,
                                                  small_checkpoint: Path,  # noqa: F811
                                                  synthetic_root: Path) -> None:  # noqa: F811
    import ray
    from ray.data import ActorPoolStrategy

    from pipeline.runner import ClusterConfig, RunConfig, run_inference

    folder = tmp_path / "photos"
    folder.mkdir()
    for entry in list(open_dataset(f"synthetic:{synthetic_root}").iter_manifest())[:5]:
        shutil.copy(entry.path, folder / Path(entry.path).name)
    run_dir = tmp_path / "run"
    run_inference(open_dataset(f"folder:{folder}"), run_dir,
                  RunConfig(model=str(small_checkpoint), shard_size=3, max_size=MAX_SIZE),
                  ClusterConfig(num_workers=1, num_cpus_per_worker=1), progress=False)
    want = {str(folder / image_id): boxes for image_id, boxes in run_detections(run_dir).items()}

    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.read_images(str(folder), include_paths=True, mode="RGB")
    ds = ds.map_batches(DetectBatch, fn_constructor_args=(str(small_checkpoint),),
                        fn_constructor_kwargs={"max_size": MAX_SIZE},
                        batch_format="pyarrow", batch_size=3,
                        compute=ActorPoolStrategy(size=1), num_cpus=1)
    ds.drop_columns(["image"]).write_parquet(str(tmp_path / "faces"))

    table = pq.read_table(tmp_path / "faces")  # plain Parquet: no Ray needed to read it
    assert table.schema.field("boxes").type == BOXES_TYPE
    assert table.schema.field("scores").type == SCORES_TYPE
    rows = table.to_pylist()
    assert sorted(row["path"] for row in rows) == sorted(want)
    assert sum(len(b) for b in want.values()) > 0
    for row in rows:
        got = np.column_stack([np.asarray(row["boxes"], np.float32).reshape(-1, 4),
                               np.asarray(row["scores"], np.float32)])
        np.testing.assert_array_equal(_sorted(got), _sorted(want[row["path"]]),
                                      err_msg=row["path"])


def test_detect_batch_takes_numpy_batches_and_says_what_is_wrong(
        small_checkpoint: Path) -> None:  # noqa: F811
    udf = DetectBatch(str(small_checkpoint), device="cpu", max_size=64, keep_score=0.2)
    images = np.empty(2, dtype=object)
    images[0] = np.zeros((40, 30, 3), np.uint8)
    images[1] = np.full((20, 50, 3), 200, np.uint8)
    out = udf({"image": images, "path": np.array(["a.png", "b.png"], dtype=object)})
    assert isinstance(out, pa.Table)
    assert out.column_names == ["image", "path", "boxes", "scores"]
    assert out.column("path").to_pylist() == ["a.png", "b.png"]
    for boxes, scores in zip(out.column("boxes").to_pylist(), out.column("scores").to_pylist(),
                             strict=True):
        assert len(boxes) == len(scores) and all(s >= np.float32(0.2) for s in scores)
    with pytest.raises(ValueError, match=r"no column 'image' \(columns: pixels\)"):
        udf({"pixels": images})
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8 array .* got float64 \(4, 4\)"):
        udf({"image": np.zeros((1, 4, 4))})
