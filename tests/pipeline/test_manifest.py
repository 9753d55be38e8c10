"""``manifest:URI`` datasets: formats, columns, bad rows, embedded bytes, flat listing memory,
and a run over embedded images (limited, then extended) equal to the same images as files."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.datasets import limit_dataset, open_dataset
from pipeline.datasets.manifest_files import EmbeddedEntry, image_source, load_embedded
from pipeline.images import decode_image
from pipeline.shards import ManifestDigest, iter_shards
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    assert_same_detections,
    reference_detections,
    run_detections,
    small_checkpoint,
    synthetic_root,
)
from tests.s3_support import S3Server, s3, s3_server  # noqa: F401  (fixtures)


def _png(value: int, size: tuple[int, int] = (6, 4)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def _entries(spec: str, **options: Any) -> list[Any]:
    return list(open_dataset(spec, options).iter_manifest())


def test_parquet_csv_jsonl_and_folder_resolve_paths_and_ids(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    pq.write_table(pa.table({"path": ["a.jpg", "/abs/b.jpg"], "key": [7, 8]}),
                   tmp_path / "m.parquet")
    (tmp_path / "m.csv").write_text("uri,key\nsub/c.png,c\ns3://bucket/d.png,d\n")
    (tmp_path / "m.jsonl").write_text('{"path": "e.jpg", "key": 1}\n\n{"path": "f.jpg"}\n')
    for i in range(2):  # a folder of Parquet files: sorted paths, relative to the folder
        pq.write_table(pa.table({"path": [f"g{i}.jpg"]}), tmp_path / "sub" / f"part-{i}.parquet")

    got = _entries(f"manifest:{tmp_path / 'm.parquet'}", id_column="key")
    assert [(e.image_id, e.path) for e in got] == [("7", str(tmp_path / "a.jpg")),
                                                  ("8", "/abs/b.jpg")]
    got = _entries(f"manifest:{tmp_path / 'm.csv'}", path_column="uri")
    assert [(e.image_id, e.path) for e in got] == [
        ("sub/c.png", str(tmp_path / "sub" / "c.png")),
        ("s3://bucket/d.png", "s3://bucket/d.png")]
    got = _entries(f"manifest:{tmp_path / 'm.jsonl'}")
    assert [e.path for e in got] == [str(tmp_path / "e.jpg"), str(tmp_path / "f.jpg")]
    source = open_dataset(f"manifest:{tmp_path / 'sub'}")
    assert [e.path for e in source.iter_manifest()] == [str(tmp_path / "sub" / "g0.jpg"),
                                                        str(tmp_path / "sub" / "g1.jpg")]
    assert source.describe() | {"size_bytes": 0} == {
        "kind": "manifest", "uri": str(tmp_path / "sub"), "format": "parquet",
        "path_column": "path", "id_column": None, "embedded": False, "num_files": 2,
        "size_bytes": 0, "num_rows": 2}
    limited = limit_dataset(open_dataset(f"manifest:{tmp_path / 'm.parquet'}"), 1)
    assert [e.image_id for e in limited.iter_manifest()] == ["a.jpg"]


@pytest.mark.parametrize(("name", "content", "options", "message"), [
    ("m.parquet", {"path": ["a.jpg", None]}, {}, r"m.parquet: row 1: null path in column 'path'"),
    ("m.parquet", {"file": ["a.jpg"]}, {},
     r"m.parquet: no column 'path' \(columns: file\); name the image column with --path-column"),
    ("m.parquet", {"path": ["a", "b", "c"], "id": ["x", "y", None]}, {"id_column": "id"},
     r"m.parquet: row 2: null in id column 'id'"),
    ("m.parquet", {"path": [1, 2]}, {}, r"column 'path' is int64, not a path"),
    ("m.csv", "path,id\na.jpg,1\n,2\n", {}, r"m.csv: row 1: null path in column 'path'"),
    ("m.csv", "path\na.jpg\n", {"id_column": "key"},
     r"m.csv: no column 'key' \(columns: path\); name the id column with --id-column"),
    ("m.jsonl", '{"path": "a.jpg"}\n{"path": 3}\n', {}, r"m.jsonl: line 2: a int, not a path"),
    ("m.jsonl", '{"path": "a.jpg"}\n\n{"pat\n', {}, r"m.jsonl: line 3: not JSON"),
    ("m.txt", "a.jpg\n", {}, r"m.txt: unknown format '.txt'"),
])
def test_bad_manifests_name_the_file_and_row(tmp_path: Path, name: str, content: Any,
                                             options: dict[str, str], message: str) -> None:
    path = tmp_path / name
    if isinstance(content, dict):
        pq.write_table(pa.table(content), path)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        _entries(f"manifest:{path}", **options)


def test_options_are_refused_by_kinds_that_do_not_take_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    pq.write_table(pa.table({"image": [b"x"]}), tmp_path / "hf.parquet")
    assert main(["run", "--dataset", f"manifest:{tmp_path / 'hf.parquet'}", "--out",
                 str(tmp_path / "run"), "--id-column", "key"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no column 'key' (columns: image); name the id column with --id-column" in err
    assert "\n" not in err and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"option 'path_column' does not apply to kind "
                                         r"'folder' \(only to manifest\)"):
        open_dataset(f"folder:{tmp_path}", {"path_column": "uri"})
    with pytest.raises(ValueError, match=r"manifest .*nothing.parquet not found"):
        open_dataset(f"manifest:{tmp_path / 'nothing.parquet'}")


def test_embedded_bytes_stay_in_the_file_until_a_worker_loads_its_rows(tmp_path: Path) -> None:
    images = [_png(40 * i) for i in range(7)]
    hf = pa.array([{"bytes": b, "path": f"{i}.png"} for i, b in enumerate(images)])
    pq.write_table(pa.table({"image": hf}), tmp_path / "hf.parquet", row_group_size=3)
    pq.write_table(pa.table({"jpeg": pa.array(images, pa.binary()), "name": list("abcdefg")}),
                   tmp_path / "bin.parquet", row_group_size=2)

    entries = _entries(f"manifest:{tmp_path / 'hf.parquet'}", path_column="image")
    assert [e.image_id for e in entries] == [f"hf.parquet#{i}" for i in range(7)]
    assert entries[4].path == f"{tmp_path / 'hf.parquet'}#row=4"
    assert all(isinstance(e, EmbeddedEntry) and e.data is None for e in entries)
    loaded = load_embedded(entries[2:6])  # rows 2..5 span row groups 0, 1 and 2
    assert [e.data for e in loaded] == images[2:6]
    assert decode_image(image_source(loaded[1])).pixels[0, 0].tolist() == [120, 120, 120]

    entries = _entries(f"manifest:{tmp_path / 'bin.parquet'}", path_column="jpeg",
                       id_column="name")
    assert [e.image_id for e in entries] == list("abcdefg")
    assert [e.data for e in load_embedded(entries[5:])] == images[5:]
    source = open_dataset(f"manifest:{tmp_path / 'bin.parquet'}", {"path_column": "jpeg"})
    assert source.describe()["embedded"] is True and source.describe()["num_rows"] == 7


def _planning_peak(manifest: Path) -> tuple[int, int]:
    """(images, peak traced bytes) of the driver's planning pass over ``manifest``."""
    tracemalloc.start()
    digest = ManifestDigest()
    for shard in iter_shards(open_dataset(f"manifest:{manifest}").iter_manifest(), 64):
        digest.update(shard)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return digest.num_images, peak


def test_listing_memory_stays_flat_as_the_manifest_grows(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.datasets.manifest_files.BATCH_ROWS", 1000)  # both above it
    for rows in (4_000, 40_000):
        paths = [f"images/{i // 1000:04d}/img_{i:07d}.jpg" for i in range(rows)]
        pq.write_table(pa.table({"path": paths}), tmp_path / f"m{rows}.parquet")
    small, small_peak = _planning_peak(tmp_path / "m4000.parquet")
    large, large_peak = _planning_peak(tmp_path / "m40000.parquet")
    assert (small, large) == (4_000, 40_000)
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)  # 10x rows, flat memory


def test_a_run_over_embedded_images_equals_the_same_images_as_files(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path) -> None:  # noqa: F811
    from pipeline.runner import ClusterConfig, RunConfig, run_inference

    files = {e.image_id: e.path for e in open_dataset(f"synthetic:{synthetic_root}")
             .iter_manifest()}
    chosen = dict(list(files.items())[:5])
    table = pa.table({"image": pa.array([{"bytes": Path(p).read_bytes(), "path": p}
                                         for p in chosen.values()]),
                      "id": list(chosen)})
    pq.write_table(table, tmp_path / "hf.parquet", row_group_size=2)
    spec, options = f"manifest:{tmp_path / 'hf.parquet'}", {"path_column": "image",
                                                          "id_column": "id"}
    config = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=160)
    cluster = ClusterConfig(num_workers=1, num_cpus_per_worker=1)
    run_dir = tmp_path / "run"
    first = run_inference(limit_dataset(open_dataset(spec, options), 3), run_dir, config,
                          cluster, progress=False)
    assert (first.num_images, first.shards_run) == (3, 2)
    rest = run_inference(open_dataset(spec, options), run_dir, config, cluster, progress=False)
    assert (rest.num_images, rest.shards_run, rest.shards_skipped) == (5, 2, 1)  # 3rd redone
    assert rest.num_errors == 0
    assert_same_detections(run_detections(run_dir),
                           reference_detections(small_checkpoint, chosen, max_size=160))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["dataset"]["path_column"] == "image"
    from pipeline.rundir import RunDir

    paths = RunDir.open(run_dir).images()["path"].to_pylist()
    assert paths == [f"{tmp_path / 'hf.parquet'}#row={i}" for i in range(5)]


def test_a_manifest_in_a_bucket_lists_and_its_workers_read_embedded_rows(
        s3: S3Server) -> None:  # noqa: F811
    images = [_png(30 * i) for i in range(5)]
    client = s3.client()
    client.create_bucket(Bucket="lake")
    for name, table in {
            "hf/part-0.parquet": pa.table({"image": pa.array(
                [{"bytes": b, "path": None} for b in images[:3]])}),
            "hf/part-1.parquet": pa.table({"image": pa.array(
                [{"bytes": b, "path": None} for b in images[3:]])})}.items():
        out = io.BytesIO()
        pq.write_table(table, out)
        client.put_object(Bucket="lake", Key=name, Body=out.getvalue())
    client.put_object(Bucket="lake", Key="m.csv", Body=b"path\nphotos/a.jpg\n")

    entries = _entries("manifest:s3://lake/m.csv")
    assert [(e.image_id, e.path) for e in entries] == [("photos/a.jpg",
                                                        "s3://lake/photos/a.jpg")]
    entries = _entries("manifest:s3://lake/hf", path_column="image")
    assert [e.image_id for e in entries] == ["part-0.parquet#0", "part-0.parquet#1",
                                             "part-0.parquet#2", "part-1.parquet#0",
                                             "part-1.parquet#1"]
    assert entries[3].path == "s3://lake/hf/part-1.parquet#row=0"
    assert [e.data for e in load_embedded(entries[1:])] == images[1:]
    with pytest.raises(ValueError, match=r"manifest s3://lake/nothing.csv not found"):
        open_dataset("manifest:s3://lake/nothing.csv")
