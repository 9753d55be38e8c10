"""Object storage in and out, against a real S3-compatible server: moto's standalone server run
as a subprocess on a local port (``tests/s3_support.py``), reached over HTTP by pyarrow's S3
client and by ``dsfd`` subprocesses; nothing is mocked in the test process.

Covered: a ``dsfd label`` job from a bucket prefix of images (model from a bucket too) into
another bucket prefix with a COCO export, its driver SIGKILLed mid-run and resumed from the
bucket with exactly-once rows; the run directory's rules on a bucket (foreign object refused
by key, lock refusal and take-over, half-written shard redone, mixed configs refused);
exports into a bucket; a missing and a forbidden key reported in one line.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from jobs.cli import main
from pipeline.images import ImageReadError, decode_image
from pipeline.rundir import LOCK_FILE, RunDir, RunDirError, RunLockedError, RunMismatchError
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.shards import Shard
from pipeline.storage import ObjectPath, forwarded_env, location
from tests.pipeline.runner_support import small_checkpoint, synthetic_root  # noqa: F401
from tests.s3_support import SECRET_KEY, S3Server, s3, s3_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
DENY_ALL = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Deny", "Principal": "*", "Action": "s3:*",
    "Resource": ["arn:aws:s3:::locked", "arn:aws:s3:::locked/*"]}]}


def _upload_photos(server: S3Server, root: Path, bucket: str, prefix: str) -> set[str]:
    """The synthetic benchmark's 12 val images as objects under ``prefix``, plus a text file
    and a hidden image that a folder listing must skip; returns the image ids expected."""
    client = server.client()
    client.create_bucket(Bucket=bucket)
    images = root / "wider" / "WIDER_val" / "images"
    ids = set()
    for path in sorted(images.rglob("*.jpg")):
        rel = path.relative_to(images).as_posix()
        client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=path.read_bytes())
        ids.add(rel)
    client.put_object(Bucket=bucket, Key=f"{prefix}/README.txt", Body=b"not an image")
    client.put_object(Bucket=bucket, Key=f"{prefix}/.cache/skip.jpg", Body=b"hidden")
    return ids


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def _wait_for_a_part(job: subprocess.Popen[str], server: S3Server, bucket: str,
                     prefix: str) -> None:
    deadline = time.monotonic() + 150
    while not server.keys(bucket, f"{prefix}/images/part-"):
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            raise AssertionError(f"no part appeared: {job.communicate()[1][-3000:]}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_label_from_a_bucket_into_a_bucket_killed_and_resumed_exactly_once(
        s3: S3Server, synthetic_root: Path, small_checkpoint: Path) -> None:  # noqa: F811
    ids = _upload_photos(s3, synthetic_root, "photos", "set1")
    client = s3.client()
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="vgg16-w0125.pt", Body=small_checkpoint.read_bytes())
    client.create_bucket(Bucket="results")
    argv = [sys.executable, "-m", "jobs.cli", "label", "--images", "s3://photos/set1",
            "--out", "s3://results/labels/run1", "--model", "s3://models/vgg16-w0125.pt",
            "--export", "coco", "--min-score", "0.1", "--shard-size", "1", "--max-size", "128",
            "--multiscale", "--workers", "1", "--cpus-per-worker", "1"]
    env = {**_env(), "DSFD_CACHE_DIR": str(small_checkpoint.parent / "cache")}
    job = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    _wait_for_a_part(job, s3, "results", "labels/run1")
    job.kill()  # SIGKILL: no clean-up runs, the lock object stays
    job.communicate(timeout=60)
    before = s3.keys("results", "labels/run1/images/")
    assert 1 <= len(before) < len(ids), "the job ended before it could be killed"
    assert "labels/run1/run.lock" in s3.keys("results")

    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"took over s3://results/labels/run1/{LOCK_FILE} of pid {job.pid}" in done.stderr
    assert "12 images in 12 shards: 0 errors" in done.stdout
    # the killed driver's worker may finish its shard before the local Ray is reaped
    found = re.search(r"this call ran (\d+) shards \((\d+) already done\)", done.stdout)
    assert found and int(found[1]) + int(found[2]) == 12, done.stdout
    assert len(before) - 1 <= int(found[2]) < 12  # a shard's pair may be half there

    parts = [f"labels/run1/{t}/part-{i:05d}.parquet" for t in ("detections", "images")
             for i in range(12)]
    keys = s3.keys("results")
    # pyarrow leaves zero-byte folder markers (``prefix/``) where it deleted an object
    assert [k for k in keys if not k.endswith("/")] == sorted(
        [*parts, "labels/run1/labels.coco.json", "labels/run1/run.json"])
    assert {k for k in keys if k.endswith("/")} <= {"labels/", "labels/run1/",
                                                     "labels/run1/images/",
                                                     "labels/run1/detections/"}
    run = RunDir.open("s3://results/labels/run1")
    images = run.images()
    assert sorted(images["image_id"].to_pylist()) == sorted(ids)  # each once
    assert set(images["status"].to_pylist()) == {"ok"}
    assert images["path"].to_pylist()[0].startswith("s3://photos/set1/")
    detections = run.detections()
    assert detections.num_rows == sum(images["num_detections"].to_pylist())
    coco = json.loads(client.get_object(Bucket="results",
                                        Key="labels/run1/labels.coco.json")["Body"].read())
    assert sorted(i["file_name"] for i in coco["images"]) == sorted(ids)
    kept = sum(1 for s in detections["score"].to_pylist() if s >= 0.1)
    assert len(coco["annotations"]) <= kept
    record = client.get_object(Bucket="results", Key="labels/run1/run.json")["Body"].read()
    assert SECRET_KEY.encode() not in record  # credentials are never recorded
    log = re.search(r"Ray's logs go to (\S+)", done.stderr)
    assert log and SECRET_KEY not in Path(log[1]).read_text(errors="replace")
    assert SECRET_KEY not in done.stderr + done.stdout
    assert b"s3://photos/set1" in record


def _shards(names: list[str], size: int) -> list[Shard]:
    from pipeline.datasets.manifest import ManifestEntry
    from pipeline.shards import iter_shards

    entries = [ManifestEntry(image_id=n, path=f"s3://photos/{n}") for n in names]
    return list(iter_shards(entries, size))


def _tables(shard: Shard) -> tuple[pa.Table, pa.Table]:
    n = len(shard.entries)
    ids = [e.image_id for e in shard.entries]
    detections = pa.table({"image_id": ids, "x1": [1.0] * n, "y1": [2.0] * n,
                           "x2": [11.0] * n, "y2": [12.0] * n, "score": [0.9] * n},
                          schema=DETECTIONS_SCHEMA)
    images = pa.table({"image_id": ids, "path": [e.path for e in shard.entries],
                       "width": [32] * n, "height": [24] * n, "status": ["ok"] * n,
                       "error": [None] * n, "num_detections": [1] * n, "seconds": [0.0] * n},
                      schema=IMAGES_SCHEMA)
    return detections, images


def test_the_run_directory_rules_hold_on_a_bucket(s3: S3Server) -> None:  # noqa: F811
    client = s3.client()
    client.create_bucket(Bucket="results")
    uri = "s3://results/runs/a"
    shards = _shards(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], 2)
    config = {"model": "m", "shard_size": 2}
    with RunDir.open_for_writing(uri) as run:
        # one owner at a time: a live holder on this host is refused, naming it
        with pytest.raises(RunLockedError, match=f"in use by pid {os.getpid()}"):
            RunDir.open_for_writing(uri)
        run.prepare(config, shards)
        writer = run.begin({"config": config})
        for shard in shards:
            writer.write(shard.index, shard.digest, *_tables(shard))
        assert run.is_done(0) and run.is_done(1)
    assert "runs/a/run.lock" not in s3.keys("results")  # released

    read = RunDir.open(uri)
    assert read.images()["image_id"].to_pylist() == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert read.detections().num_rows == 4

    # a half-written shard (its images part lost) is removed by prepare and so redone
    client.delete_object(Bucket="results", Key="runs/a/images/part-00001.parquet")
    with RunDir.open_for_writing(uri) as run:
        state = run.prepare(config, shards)
        assert state.done.num_shards == 1 and not run.is_done(1)
    assert "runs/a/detections/part-00001.parquet" not in s3.keys("results")

    # another config is refused; nothing is removed
    with RunDir.open_for_writing(uri) as run, pytest.raises(RunMismatchError,
                                                            match="another config"):
        run.prepare({"model": "other", "shard_size": 2}, shards)

    # a foreign object where the run writes is refused before anything, naming its key
    client.put_object(Bucket="results", Key="runs/a/detections/notes.txt", Body=b"mine")
    with pytest.raises(RunDirError, match=r"s3://results/runs/a/detections/notes\.txt: not "
                                          r"written by this run"):
        RunDir.open_for_writing(uri)
    client.delete_object(Bucket="results", Key="runs/a/detections/notes.txt")

    # a lock object of another host is refused (with how to clear it), then --force-unlock
    lock = {"kind": "dsfd-run-lock", "host": "gpu-node-7", "pid": 4242, "started": "then",
            "process_start": 1.0, "token": "x"}
    client.put_object(Bucket="results", Key="runs/a/run.lock", Body=json.dumps(lock).encode())
    with pytest.raises(RunLockedError, match="pid 4242 on host gpu-node-7.*--force-unlock"):
        RunDir.open_for_writing(uri)
    with RunDir.open_for_writing(uri, force_unlock=True) as run:
        assert run.record is not None and run.record["config"] == config
    assert "runs/a/run.lock" not in s3.keys("results")
    # an object that is not a dsfd lock is not ours to replace
    client.put_object(Bucket="results", Key="runs/a/run.lock", Body=b"user notes")
    with pytest.raises(RunDirError, match="not a dsfd lock file"):
        RunDir.open_for_writing(uri)
    assert client.get_object(Bucket="results", Key="runs/a/run.lock")["Body"].read() == \
        b"user notes"


def test_exports_into_a_bucket_replace_only_an_earlier_export(
        s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    client = s3.client()
    client.create_bucket(Bucket="results")
    uri = "s3://results/runs/b"
    shards = _shards(["x/a.jpg", "x/b.jpg"], 2)
    with RunDir.open_for_writing(uri) as run:
        run.prepare({"model": "m"}, shards)
        writer = run.begin({"config": {"model": "m"}})
        writer.write(0, shards[0].digest, *_tables(shards[0]))
    for _ in range(2):  # the second export replaces the first (its own earlier export)
        assert main(["export", "coco", uri, "--out", "s3://results/exports/l.json"]) == 0
        assert main(["export", "wider", uri, "--out", "s3://results/exports/wider"]) == 0
    capsys.readouterr()
    keys = s3.keys("results", "exports/")
    assert keys == ["exports/.wider.dsfd-export.json", "exports/l.json",
                    "exports/wider/x/a.txt", "exports/wider/x/b.txt"]
    coco = json.loads(client.get_object(Bucket="results", Key="exports/l.json")["Body"].read())
    assert [a["bbox"] for a in coco["annotations"]] == [[1.0, 2.0, 10.0, 10.0]] * 2
    client.put_object(Bucket="results", Key="exports/other.json", Body=b"{}")
    assert main(["export", "coco", uri, "--out", "s3://results/exports/other.json"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not an earlier COCO export" in err
    assert client.get_object(Bucket="results", Key="exports/other.json")["Body"].read() == b"{}"


def test_a_missing_or_forbidden_key_is_reported_in_one_line(
        s3: S3Server, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    client = s3.client()
    client.create_bucket(Bucket="photos")
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 6), (200, 10, 10)).save(buffer, format="PNG")
    client.put_object(Bucket="photos", Key="ok.png", Body=buffer.getvalue())
    assert decode_image("s3://photos/ok.png").pixels.shape == (6, 8, 3)
    client.create_bucket(Bucket="locked")
    client.put_object(Bucket="locked", Key="k.png", Body=buffer.getvalue())
    client.put_bucket_policy(Bucket="locked", Policy=json.dumps(DENY_ALL))

    # the decoder's error (an image's error row) names the key and the reason
    with pytest.raises(ImageReadError, match=r"^s3://photos/gone\.png: no such object$"):
        decode_image("s3://photos/gone.png")
    with pytest.raises(ImageReadError, match=r"^s3://locked/k\.png: cannot read it: access "
                                             r"denied"):
        decode_image("s3://locked/k.png")

    # the commands: one line each, before any Ray starts
    cases = [
        (["label", "--images", "s3://photos/none", "--out", "s3://photos/run"],
         "dsfd label: error: --images s3://photos/none: no objects under this prefix"),
        (["label", "--images", "s3://photos", "--out", "s3://photos/run", "--model",
          "s3://photos/missing.pt"],
         "dsfd label: error: --model s3://photos/missing.pt: s3://photos/missing.pt: no such "
         "object"),
        (["label", "--images", "s3://photos", "--out", "s3://locked/run", "--model", "vgg16"],
         "dsfd label: error: --out s3://locked/run: s3://locked/run: cannot look it up: "
         "access denied (check the credentials and the bucket policy)"),
        (["export", "coco", "s3://locked/run", "--out", "s3://photos/l.json"],
         "dsfd export: error: s3://locked/run: cannot look it up: access denied (check the "
         "credentials and the bucket policy)"),
    ]
    for argv, expected in cases:
        assert main([*argv, "--address", "127.0.0.1:1"] if argv[0] == "label" else argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == expected
    assert s3.keys("photos") == ["ok.png"]  # nothing was written


def test_storage_locations_and_the_forwarded_environment(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'..' is not allowed"):
        location("s3://bkt/a/../c")
    path = location("s3://bkt/runs//r1/")
    assert isinstance(path, ObjectPath) and str(path) == "s3://bkt/runs/r1"
    assert str(path / "images" / "part-00000.parquet") == \
        "s3://bkt/runs/r1/images/part-00000.parquet"
    assert path.name == "r1" and str(path.parent) == "s3://bkt/runs"
    assert str(location("gcs://bkt/x")) == "gs://bkt/x"
    assert location(f"file://{tmp_path}/r") == tmp_path / "r"
    with pytest.raises(ValueError, match=r"^s3://\.\.\.@bkt: credentials in a URI") as info:
        location("s3://AKIA:hunter2@bkt/run")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ValueError, match="unsupported URI scheme 'http'"):
        location("http://example.com/x")
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:1", "MY_TOKEN": "t"}
    assert forwarded_env(env) == {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                                  "AWS_ENDPOINT_URL": "http://127.0.0.1:1"}
