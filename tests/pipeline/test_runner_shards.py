"""Shard plan, run-directory bookkeeping and the COCO export (no Ray needed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.datasets.manifest import ManifestEntry
from pipeline.exports.coco import export_coco
from pipeline.rundir import config_differences
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.shards import ManifestDigest, iter_shards, shard_digest
from tests.rundir_support import write_run_dir


def _manifest(n: int) -> Iterator[ManifestEntry]:
    for i in range(n):
        yield ManifestEntry(f"img{i:03d}.jpg", f"/data/img{i:03d}.jpg")


@pytest.mark.parametrize(("n", "k"), [(0, 3), (1, 3), (9, 3), (10, 3), (10, 1), (5, 100)])
def test_shard_k_holds_entries_kK_to_k1K(n: int, k: int) -> None:
    shards = list(iter_shards(_manifest(n), k))
    assert [s.index for s in shards] == list(range(len(shards)))
    assert len(shards) == -(-n // k)
    flat = [e for s in shards for e in s.entries]
    assert flat == list(_manifest(n))
    for s in shards:
        assert list(s.entries) == list(_manifest(n))[s.index * k:(s.index + 1) * k]
        assert s.digest == shard_digest(s.entries)


def test_shards_are_streamed_not_materialised() -> None:
    consumed = 0

    def counting() -> Iterator[ManifestEntry]:
        nonlocal consumed
        for entry in _manifest(1000):
            consumed += 1
            yield entry

    it = iter_shards(counting(), 10)
    next(it)
    assert consumed == 10


def test_bad_shard_size_and_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="shard_size must be an int >= 1, got 0"):
        list(iter_shards(_manifest(3), 0))
    with pytest.raises(ValueError, match="manifest entry 0 must be a ManifestEntry"):
        list(iter_shards(iter([("a", "b")]), 2))  # type: ignore[list-item]


def test_manifest_digest_changes_with_any_entry() -> None:
    def digest(entries: list[ManifestEntry]) -> str:
        d = ManifestDigest()
        for s in iter_shards(iter(entries), 4):
            d.update(s)
        return d.hexdigest()

    base = list(_manifest(10))
    changed = base[:7] + [ManifestEntry("other.jpg", base[7].path)] + base[8:]
    assert digest(base) == digest(list(base))
    assert digest(base) != digest(changed)
    assert digest(base) != digest(base[:9])


def _tables(ids: list[str], boxes_per_image: int) -> tuple[pa.Table, pa.Table]:
    det_ids = [i for i in ids for _ in range(boxes_per_image)]
    n = len(det_ids)
    dets = pa.table({"image_id": det_ids, "x1": [1.5] * n, "y1": [2.0] * n,
                     "x2": [11.5] * n, "y2": [22.0] * n,
                     "score": [0.9 if j % 2 == 0 else 0.2 for j in range(n)]},
                    schema=DETECTIONS_SCHEMA)
    imgs = pa.table({"image_id": ids, "path": [f"/d/{i}" for i in ids],
                     "width": [40] * len(ids), "height": [30] * len(ids),
                     "status": ["ok"] * len(ids), "error": [None] * len(ids),
                     "num_detections": [boxes_per_image] * len(ids),
                     "seconds": [0.1] * len(ids)}, schema=IMAGES_SCHEMA)
    return dets, imgs


def test_config_differences_name_every_changed_leaf() -> None:
    old = {"config": {"multiscale": False, "model": {"checksum": "ab"}}}
    new = {"config": {"multiscale": True, "model": {"checksum": "cd"}}}
    assert config_differences(old, new) == ["config.model.checksum: 'ab' -> 'cd'",
                                            "config.multiscale: False -> True"]


def test_coco_export_streams_parts_and_applies_min_score(tmp_path: Path) -> None:
    dets, imgs = _tables(["a.jpg", "b.jpg"], 2)
    dets2, imgs2 = _tables(["c.jpg"], 2)
    imgs2 = imgs2.set_column(4, IMAGES_SCHEMA.field("status"), pa.array(["error"]))
    write_run_dir(tmp_path, [(dets, imgs), (dets2.slice(0, 0), imgs2)])
    out = tmp_path / "coco.json"
    summary = export_coco(tmp_path, out, min_score=0.5)
    data = json.loads(out.read_text())
    assert (summary.num_images, summary.num_detections, summary.num_errors) == (2, 2, 1)
    assert [i["file_name"] for i in data["images"]] == ["a.jpg", "b.jpg"]
    assert data["images"][0] == {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}
    assert data["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    first = data["annotations"][0]
    assert first["bbox"] == [1.5, 2.0, 10.0, 20.0] and first["area"] == 200.0
    assert first["score"] == 0.9 and first["category_id"] == 1
    assert [a["image_id"] for a in data["annotations"]] == [1, 2]
    assert len(json.loads(export_coco_text(tmp_path, 0.0))["annotations"]) == 4
    with pytest.raises(ValueError, match="min_score must be a number in"):
        export_coco(tmp_path, out, min_score=1.5)


def export_coco_text(run_dir: Path, min_score: float) -> str:
    out = run_dir / "all.json"
    export_coco(run_dir, out, min_score=min_score)
    return out.read_text()


def test_progress_bar_counts_images_and_errors(capsys: pytest.CaptureFixture) -> None:
    from pipeline.progress import Progress

    bar = Progress(10, enabled=True)
    bar.update(4, 1)
    bar.update(6, 2)
    bar.close()
    err = capsys.readouterr().err
    assert "10/10" in err and "errors=3" in err
    quiet = Progress(None, enabled=False)
    quiet.update(3, 3)
    quiet.close()
    assert capsys.readouterr().err == "" and quiet.errors == 3
