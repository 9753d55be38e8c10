"""The WIDER evaluator against the official tools' recorded outputs (oracle_public/wider_pub)
and the frozen checker, in both flavours, through the library and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from reports.wider import WiderPortCrash, evaluate_run, load_ground_truth

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def case(data_dir: Path) -> Path:
    return data_dir / "oracle_public" / "cases" / "wider_pub"


@pytest.fixture(scope="module")
def gt(data_dir: Path):
    return load_ground_truth(data_dir / "wider_val_gt")


@pytest.fixture(scope="module")
def preds(case: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wider_pub")
    for name in ("pred", "pred_missing"):
        with tarfile.open(case / f"{name}.tar.gz") as tar:
            tar.extractall(out, filter="data")
    return out


def _expected(case: Path) -> dict:
    return json.loads((case / "expected.json").read_text())["variants"]


@pytest.mark.parametrize("variant", ["pred", "pred_missing"])
@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_oracle_ap_and_pr(case, gt, preds, variant, flavour) -> None:
    exp = _expected(case)[variant][flavour]
    if exp["status"] == "crash":
        with pytest.raises(WiderPortCrash, match=r"KeyError: '0_Parade_Parade_0_72'.*matlab"):
            evaluate_run(preds / variant, gt, flavour)
        return
    res = evaluate_run(preds / variant, gt, flavour)
    for s in ("easy", "medium", "hard"):
        assert abs(res.ap[s] - exp["ap"][s]) <= 1e-12, (s, res.ap[s], exp["ap_17g"][s])
        for key in ("precision", "recall"):
            want = np.array([np.nan if v is None else v for v in exp["pr"][s][key]])
            got = res.pr[s][key]
            assert np.array_equal(np.isnan(got), np.isnan(want))
            assert np.nanmax(np.abs(got - want)) <= 1e-12


def test_matlab_messages_match_the_tool(case, gt, preds) -> None:
    res = evaluate_run(preds / "pred_missing", gt, "matlab")
    printed = (case / "oracle_out" / "pred_missing.matlab.stdout.txt").read_text().splitlines()
    assert list(res.messages) == [ln.rstrip() for ln in printed if "AP" not in ln]


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from jobs.cli import main; rc = main(sys.argv[1:]); "
        "heavy = [m for m in ('torch', 'ray') if m in sys.modules]; "
        "assert not heavy, heavy; sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("variant", "flavour", "rc"),
    [
        ("pred", "matlab", 0),
        ("pred", "pyport", 0),
        ("pred_missing", "matlab", 0),
        ("pred_missing", "pyport", 1),
    ],
)
def test_cli_json_passes_checker(case, data_dir, preds, tmp_path, variant, flavour, rc) -> None:
    out = tmp_path / "r.json"
    gt_dir = data_dir / "wider_val_gt"
    proc = _cli(
        "eval",
        "wider",
        "--pred",
        str(preds / variant),
        "--gt",
        str(gt_dir),
        "--flavour",
        flavour,
        "--json",
        str(out),
    )
    assert proc.returncode == rc, proc.stderr
    if rc:
        assert len(proc.stderr.strip().splitlines()) == 1 and "flavour='matlab'" in proc.stderr
    doc = json.loads(out.read_text())
    if not rc:
        assert set(doc) >= {"flavour", "ap", "pr", "num_images", "num_detections"}
        assert doc["num_images"] == 3226 and doc["flavour"] == flavour
    checker = data_dir / "oracle_public" / "check_wider.py"
    check = subprocess.run(
        [
            sys.executable,
            str(checker),
            str(case),
            str(out),
            "--variant",
            variant,
            "--flavour",
            flavour,
            "--pr",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0 and check.stdout.startswith("PASS"), check.stdout


def test_cli_bad_gt_is_one_line(tmp_path, preds) -> None:
    proc = _cli("eval", "wider", "--pred", str(preds / "pred"), "--gt", str(tmp_path))
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "wider_face_val.mat" in proc.stderr
