"""``dsfd eval wider``, ``dsfd eval fddb`` and ``dsfd report`` on run directories (and WIDER txt
folders, FDDB size tables) in object storage, against a real S3-compatible server (moto's
standalone server as a subprocess, ``tests/s3_support.py``; nothing mocked in the test process).

The runs are the report tests' runs (written through the run-directory API, no torch, no Ray),
uploaded file by file to a bucket; each command on the bucket copy must give what it gives on
the local folder. A missing run and a forbidden bucket fail in one line naming the URI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main
from pipeline.datasets.fddb.sizes import write_image_sizes_tsv
from reports.fddb.inputs import sizes_from_run_dir
from tests.reports.test_report import bench, runs  # noqa: F401  (fixtures)
from tests.s3_support import S3Server, s3, s3_server  # noqa: F401  (fixtures)

DENY_ALL = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Deny", "Principal": "*", "Action": "s3:*",
    "Resource": ["arn:aws:s3:::locked", "arn:aws:s3:::locked/*"]}]}


def _upload(server: S3Server, root: Path, bucket: str, prefix: str) -> None:
    """Every file under ``root`` as an object ``prefix/<relative path>`` in ``bucket``."""
    client = server.client()
    if bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(root).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def _eval_wider_json(pred: str, run_b: str, gt: Path, out: Path, flavour: str) -> dict:
    assert main(["eval", "wider", "--pred", pred, "--gt", str(gt), "--flavour", flavour,
                 "--json", str(out), "--bootstrap", "20", "--compare", run_b]) == 0
    doc = json.loads(out.read_text())
    assert doc["bootstrap"]["compare"].pop("run_b") == run_b
    return doc


def test_eval_wider_of_a_run_and_a_txt_folder_in_a_bucket_match_the_local_ones(
        s3: S3Server, runs: dict[str, Path], bench: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    _upload(s3, runs["wider"], "runs", "eval/wider")
    gt = bench / "wider"
    for flavour in ("matlab", "pyport"):
        local = _eval_wider_json(str(runs["wider"]), str(runs["wider"]), gt,
                                 tmp_path / f"local-{flavour}.json", flavour)
        remote = _eval_wider_json("s3://runs/eval/wider", "s3://runs/eval/wider", gt,
                                  tmp_path / f"remote-{flavour}.json", flavour)
        assert remote == local
        assert 0.2 < local["ap"]["easy"] <= 1.0
    # the official txt folder of the same run, exported locally and uploaded
    txt = tmp_path / "txt"
    assert main(["export", "wider", str(runs["wider"]), "--out", str(txt)]) == 0
    _upload(s3, txt, "runs", "eval/txt")
    capsys.readouterr()
    for flavour in ("matlab", "pyport"):
        assert main(["eval", "wider", "--pred", str(txt), "--gt", str(gt),
                     "--flavour", flavour]) == 0
        local_out = capsys.readouterr().out
        assert main(["eval", "wider", "--pred", "s3://runs/eval/txt", "--gt", str(gt),
                     "--flavour", flavour]) == 0
        assert capsys.readouterr().out == local_out and "easy" in local_out


def test_eval_fddb_of_a_run_in_a_bucket_matches_the_local_run(
        s3: S3Server, runs: dict[str, Path], bench: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    _upload(s3, runs["fddb"], "runs", "eval/fddb")
    sizes = tmp_path / "sizes.tsv"
    write_image_sizes_tsv(sizes, sizes_from_run_dir(runs["fddb"]))
    s3.client().put_object(Bucket="runs", Key="eval/sizes.tsv", Body=sizes.read_bytes())
    outputs = {}
    for where, pred, table in (("local", str(runs["fddb"]), str(sizes)),
                               ("remote", "s3://runs/eval/fddb", "s3://runs/eval/sizes.tsv")):
        prefix = tmp_path / where / "out-"
        prefix.parent.mkdir()
        assert main(["eval", "fddb", "--pred", pred, "--annotations", str(bench / "fddb"),
                     "--sizes", table, "--out", str(prefix), "--bootstrap", "10",
                     "--compare", pred]) == 0
        summary = json.loads(Path(f"{prefix}fddb.json").read_text())
        outputs[where] = (Path(f"{prefix}DiscROC.txt").read_bytes(),
                          Path(f"{prefix}ContROC.txt").read_bytes(),
                          summary["tpr_disc"], summary["bootstrap"]["intervals"])
    assert outputs["remote"] == outputs["local"]
    assert 0.0 < outputs["local"][2] <= 1.0


def test_report_of_runs_in_a_bucket_equals_the_local_report(
        s3: S3Server, runs: dict[str, Path], tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    _upload(s3, runs["wider"], "runs", "r/wider")
    _upload(s3, runs["fddb"], "runs", "r/fddb")
    assert main(["report", str(runs["wider"]), str(runs["fddb"]),
                 "--out", str(tmp_path / "local")]) == 0
    assert main(["report", "s3://runs/r/wider", "s3://runs/r/fddb",
                 "--out", str(tmp_path / "remote")]) == 0
    local = (tmp_path / "local" / "report.md").read_text()
    assert (tmp_path / "remote" / "report.md").read_text() == local
    assert "| wider | 8 | matlab |" in local and "FDDB" in local
    assert (tmp_path / "remote" / "index.html").is_file()


def test_a_missing_run_or_a_forbidden_bucket_fails_in_one_line(
        s3: S3Server, runs: dict[str, Path], bench: Path, tmp_path: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    client = s3.client()
    client.create_bucket(Bucket="runs")
    client.create_bucket(Bucket="locked")
    _upload(s3, runs["wider"], "locked", "run")
    client.put_bucket_policy(Bucket="locked", Policy=json.dumps(DENY_ALL))
    gt = str(bench / "wider")
    annotations, out = str(bench / "fddb"), str(tmp_path / "out-")
    commands = [
        (["eval", "wider", "--pred", "s3://runs/missing", "--gt", gt], "s3://runs/missing",
         "not found"),
        (["eval", "wider", "--pred", "s3://nobucket/run", "--gt", gt], "s3://nobucket/run",
         "no such bucket 'nobucket'"),
        (["eval", "wider", "--pred", "s3://locked/run", "--gt", gt], "s3://locked/run",
         "access denied"),
        (["eval", "fddb", "--pred", "s3://runs/missing", "--annotations", annotations,
          "--sizes", gt, "--out", out], "s3://runs/missing", "not found"),
        (["eval", "fddb", "--pred", "s3://nobucket/run", "--annotations", annotations,
          "--sizes", gt, "--out", out], "s3://nobucket/run", "no such bucket"),
        (["eval", "fddb", "--pred", "s3://locked/run", "--annotations", annotations,
          "--sizes", gt, "--out", out], "s3://locked/run", "access denied"),
        (["report", "s3://runs/missing", "--out", str(tmp_path / "r")], "s3://runs/missing",
         "no such run directory"),
        (["report", "s3://locked/run", "--out", str(tmp_path / "r")], "s3://locked/run",
         "access denied"),
        (["report", str(runs["wider"]), "--out", "s3://runs/report"], "s3://runs/report",
         "written locally"),
    ]
    for argv, uri, reason in commands:
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert uri in err and reason in err and "\n" not in err, (argv, err)
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob("out-*"))
