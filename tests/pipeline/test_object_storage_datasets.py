"""Benchmark datasets and list files read from object storage, against a real S3-compatible
server (moto's standalone server as a subprocess, ``tests/s3_support.py``; nothing mocked in
the test process).

Covered: ``dsfd run --dataset wider:s3://...`` over a synthetic WIDER benchmark uploaded to a
bucket gives the detections of the same run from the local folder, and ``dsfd eval wider
--gt s3://...`` the AP of the local ground truth; the spec grammar with ``scheme://`` inside
(``wider:``, ``synthetic:``, ``fddb:``, ``list:``); ``list:s3://...`` with relative lines; a
missing ground-truth key and a forbidden bucket in one line; ``--threshold-from s3://...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from jobs.cli import main
from pipeline.datasets import face_records, ground_truth, open_dataset
from pipeline.datasets.fddb import read_annotations
from pipeline.images import decode_image
from pipeline.rundir import RunDir
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    assert_same_detections,
    run_detections,
    small_checkpoint,
    synthetic_root,
)
from tests.s3_support import S3Server, s3, s3_server  # noqa: F401

DENY_ALL = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Deny", "Principal": "*", "Action": "s3:*",
    "Resource": ["arn:aws:s3:::locked", "arn:aws:s3:::locked/*"]}]}


def _upload_tree(server: S3Server, root: Path, bucket: str, prefix: str,
                 skip: tuple[str, ...] = ()) -> int:
    """Every file under ``root`` as an object under ``prefix`` (relative paths in ``skip``
    left out); returns the number uploaded."""
    client = server.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    count = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel not in skip:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=path.read_bytes())
            count += 1
    return count


@pytest.fixture(scope="module")
def fddb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated benchmark with a small FDDB part (10 images over the 10 folds)."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth-fddb")
    generate_benchmark(root, SynthConfig(seed=5, num_val=1, num_train=0, num_fddb=10))
    return root


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_and_eval_of_a_wider_root_in_a_bucket_match_the_local_folder(
        s3: S3Server, synthetic_root: Path, small_checkpoint: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    _upload_tree(s3, synthetic_root, "bench", "synth")
    common = ["--model", str(small_checkpoint), "--max-size", "128", "--workers", "1",
              "--cpus-per-worker", "1", "--shard-size", "6"]
    local_run, remote_run = tmp_path / "local", tmp_path / "remote"
    assert main(["run", "--dataset", f"wider:{synthetic_root}/wider:val", "--out",
                 str(local_run), *common]) == 0
    assert main(["run", "--dataset", "wider:s3://bench/synth/wider:val", "--out",
                 str(remote_run), *common]) == 0
    assert_same_detections(run_detections(remote_run), run_detections(local_run))
    images = RunDir.open(remote_run).images()
    assert images.num_rows == 12 and set(images["status"].to_pylist()) == {"ok"}
    assert all(p.startswith("s3://bench/synth/wider/WIDER_val/images/")
               for p in images["path"].to_pylist())
    record = json.loads((remote_run / "run.json").read_text())
    assert "s3://bench/synth/wider" in json.dumps(record)

    # the official ground truth read from the bucket gives the AP of the local files
    capsys.readouterr()
    aps = []
    for gt in (f"{synthetic_root}/wider/eval_tools/ground_truth",
               "s3://bench/synth/wider/eval_tools/ground_truth", "s3://bench/synth/wider"):
        out = tmp_path / f"eval{len(aps)}.json"
        assert main(["eval", "wider", "--pred", str(remote_run), "--gt", gt,
                     "--json", str(out)]) == 0, capsys.readouterr().err
        aps.append(json.loads(out.read_text())["ap"])
    assert aps[0] == aps[1] == aps[2] and set(aps[0]) == {"easy", "medium", "hard"}

    # --threshold-from an eval JSON in a bucket: the same threshold as from the file, with
    # the URI and the SHA-256 of its bytes recorded
    from jobs.label import chosen_threshold
    from reports.thresholds import threshold_from_file

    raw = (tmp_path / "eval0.json").read_bytes()
    s3.client().put_object(Bucket="bench", Key="evals/val.json", Body=raw)
    args = argparse.Namespace(threshold_from="s3://bench/evals/val.json", precision=None,
                              recall=0.01, subset="hard", min_score=None)
    chosen = chosen_threshold(args)
    local = threshold_from_file(tmp_path / "eval0.json", recall=0.01)
    assert chosen.score == local.score
    assert chosen.to_json()["source"] == "s3://bench/evals/val.json"
    assert chosen.to_json()["sha256"] == hashlib.sha256(raw).hexdigest() == local.sha256


def test_specs_with_a_uri_inside_and_the_benchmark_kinds_in_a_bucket(
        s3: S3Server, synthetic_root: Path, fddb_root: Path) -> None:  # noqa: F811
    _upload_tree(s3, synthetic_root, "bench", "synth")
    _upload_tree(s3, fddb_root, "bench", "both")
    local = [(e.image_id, e.path) for e in open_dataset(f"wider:{synthetic_root}/wider")
             .iter_manifest()]
    prefix = f"{synthetic_root}/wider/"
    want = [(i, "s3://bench/synth/wider/" + p[len(prefix):]) for i, p in local]
    # no split, a split, the synthetic form, and a gcs-style double slash are the same images
    for spec in ("wider:s3://bench/synth/wider", "wider:s3://bench/synth/wider:val",
                 "wider:s3://bench//synth/wider/:val", "synthetic:s3://bench/synth",
                 "synthetic:s3://bench/synth:val"):
        source = open_dataset(spec)
        assert [(e.image_id, e.path) for e in source.iter_manifest()] == want, spec
    source = open_dataset("synthetic:s3://bench/synth")
    assert source.name == "synthetic:s3://bench/synth:val"
    assert source.describe()["synthetic"]["seed"] == 3
    assert decode_image(want[0][1]).pixels.shape[2] == 3
    records = face_records("wider:s3://bench/synth/wider:val")
    assert [r.image_id for r in records] == [i for i, _ in want]
    gt = ground_truth("wider:s3://bench/synth/wider")
    assert gt.source == "s3://bench/synth/wider/eval_tools/ground_truth"
    want_gt = ground_truth(f"wider:{synthetic_root}/wider")
    assert gt.events == want_gt.events and gt.settings == ("easy", "medium", "hard")
    for a, b in zip(gt.images, want_gt.images, strict=True):
        assert a.image_id == b.image_id and (a.boxes_xywh == b.boxes_xywh).all()
        assert all((a.keep[s] == b.keep[s]).all() for s in gt.settings)

    # wider-gt: the evaluation file in the bucket, its images beside it in the layout
    gt_spec = "wider-gt:s3://bench/synth/wider/eval_tools/ground_truth"
    assert [(e.image_id, e.path) for e in open_dataset(gt_spec).iter_manifest()] == want
    assert [r.image_id for r in face_records(gt_spec)] == [i for i, _ in want]
    assert ground_truth(gt_spec).source == "s3://bench/synth/wider/eval_tools/ground_truth"

    # FDDB: the folds read from the bucket, the images as URIs
    fddb = open_dataset("fddb:s3://bench/both/fddb")
    entries = list(fddb.iter_manifest())
    assert len(entries) == 10
    assert entries[0].path == f"s3://bench/both/fddb/originalPics/{entries[0].image_id}.jpg"
    remote_gt = ground_truth("synthetic-fddb:s3://bench/both")
    local_gt = ground_truth(f"fddb:{fddb_root}/fddb")
    assert [(a.image_id, a.ellipses.tolist()) for a in remote_gt] == \
        [(a.image_id, a.ellipses.tolist()) for a in local_gt]
    folds = read_annotations("s3://bench/both/fddb/FDDB-folds")  # `eval fddb --annotations`
    assert [a.image_id for a in folds] == [a.image_id for a in local_gt]

    # the grammar: one line naming the spec for each mistake
    cases = [
        ("wider:s3://bench/synth/wider:testing", "unknown split 'testing'"),
        ("wider:s3://bench/nothing", "not found or not a directory"),
        ("synthetic:s3://bench/synth:test", "splits train and val"),
        ("fddb:s3://bench/synth", "FDDB folds folder not found: s3://bench/synth/FDDB-folds"),
        ("s3://bench/synth/wider", "a s3:// location needs a KIND: prefix"),
        ("wider:http://example.com/wider", "unsupported URI scheme 'http'"),
        ("list:s3://", "empty path"),
    ]
    for spec, reason in cases:
        with pytest.raises(ValueError) as info:
            open_dataset(spec)
        message = str(info.value)
        assert reason in message and repr(spec) in message and "\n" not in message, message


def test_a_list_file_in_a_bucket(s3: S3Server, synthetic_root: Path,  # noqa: F811
                                 tmp_path: Path) -> None:
    images = synthetic_root / "wider" / "WIDER_val" / "images"
    files = sorted(images.rglob("*.jpg"))[:3]
    client = s3.client()
    for bucket in ("lists", "other"):
        client.create_bucket(Bucket=bucket)
    for path in files[:2]:
        client.put_object(Bucket="lists", Key=f"set/imgs/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket="other", Key="far.jpg", Body=files[2].read_bytes())
    text = f"\ufeff# three images\nimgs/{files[0].name}\n\n  imgs/{files[1].name}  \n" \
           "s3://other/far.jpg\nimgs/gone.jpg\n"
    client.put_object(Bucket="lists", Key="set/val.txt", Body=text.encode())

    source = open_dataset("list:s3://lists/set/val.txt")
    entries = list(source.iter_manifest())
    assert [(e.image_id, e.path) for e in entries] == [
        (f"imgs/{files[0].name}", f"s3://lists/set/imgs/{files[0].name}"),
        (f"imgs/{files[1].name}", f"s3://lists/set/imgs/{files[1].name}"),
        ("s3://other/far.jpg", "s3://other/far.jpg"),
        ("imgs/gone.jpg", "s3://lists/set/imgs/gone.jpg")]
    for entry, path in zip(entries, [*files, None], strict=False):
        if path is not None:
            assert (decode_image(entry.path).pixels == decode_image(str(path)).pixels).all()
    assert source.describe() == {"kind": "list", "path": "s3://lists/set/val.txt",
                                 "num_images": 4,
                                 "sha256": hashlib.sha256(text.encode()).hexdigest()}
    # a local list may name objects too
    (tmp_path / "l.txt").write_text("s3://other/far.jpg\n")
    assert [e.path for e in open_dataset(f"list:{tmp_path}/l.txt").iter_manifest()] == \
        ["s3://other/far.jpg"]

    client.put_object(Bucket="lists", Key="set/bad.txt", Body=b"imgs/a.jpg\n../b.jpg\n")
    with pytest.raises(ValueError, match=r"^s3://lists/set/bad\.txt:2: .*'\.\.' is not allowed"):
        list(open_dataset("list:s3://lists/set/bad.txt").iter_manifest())
    with pytest.raises(ValueError, match=r"list file s3://lists/set/none\.txt not found"):
        open_dataset("list:s3://lists/set/none.txt")


def test_a_missing_ground_truth_key_or_a_forbidden_bucket_is_one_line(
        s3: S3Server, synthetic_root: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    hard = "eval_tools/ground_truth/wider_hard_val.mat"
    _upload_tree(s3, synthetic_root / "wider", "bench", "w1", skip=(hard,))
    with pytest.raises(ValueError) as info:
        ground_truth("wider:s3://bench/w1")
    message = str(info.value)
    assert "\n" not in message
    assert "s3://bench/w1/eval_tools/ground_truth: missing WIDER ground-truth files " \
           "['wider_hard_val.mat']" in message
    run = tmp_path / "run"  # a run directory is only needed to reach the ground truth
    with RunDir.open_for_writing(run) as rd:
        rd.prepare({"model": "m"}, [])
    assert main(["eval", "wider", "--pred", str(run), "--gt", "s3://bench/w1"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "missing WIDER ground-truth files" in err, err

    # no evaluation files and no annotation txt: the missing key is named
    _upload_tree(s3, synthetic_root / "wider", "bench", "w2",
                 skip=(*(f"eval_tools/ground_truth/{n}" for n in (
                     "wider_face_val.mat", "wider_easy_val.mat", "wider_medium_val.mat",
                     "wider_hard_val.mat")), "wider_face_split/wider_face_val_bbx_gt.txt"))
    with pytest.raises(ValueError, match=r"s3://bench/w2/wider_face_split/wider_face_val_bbx_"
                                         r"gt\.txt: annotation file not found; valid forms"):
        ground_truth("wider:s3://bench/w2")

    # a forbidden bucket: access denied, named, in one line
    client = s3.client()
    client.create_bucket(Bucket="locked")
    client.put_object(Bucket="locked", Key="wider/wider_face_split/x.txt", Body=b"x")
    client.put_bucket_policy(Bucket="locked", Policy=json.dumps(DENY_ALL))
    with pytest.raises(ValueError) as info:
        open_dataset("wider:s3://locked/wider")
    message = str(info.value)
    assert "s3://locked/wider" in message and "access denied" in message
    assert "\n" not in message
