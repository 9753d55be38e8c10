"""FDDB TPR as a validation metric of ``dsfd train``: the validation evaluator gives what
``dsfd eval fddb`` gives for a run of the same model over the same images, and a training run
validated on FDDB records both TPRs in metrics.jsonl and keeps best.pt by ``--select-by``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=11, num_train=4, num_val=2, num_fddb=6))
    return root


def test_fddb_validation_equals_dsfd_eval_fddb(synth_dir: Path, tmp_path: Path, ray_ctx,
                                               capsys) -> None:
    from dsfd.checkpoint import load_model
    from jobs.train import ValidationEvaluator
    from pipeline.training.validation import validation_metrics

    spec = f"synthetic-fddb:{synth_dir}"
    run_dir = tmp_path / "run"
    assert main(["run", "--dataset", spec, "--model", "shipped", "--out", str(run_dir),
                 "--workers", "1"]) == 0
    prefix = tmp_path / "eval-"
    assert main(["eval", "fddb", "--pred", str(run_dir), "--annotations",
                 str(synth_dir / "fddb"), "--sizes", str(synth_dir / "fddb" / "originalPics"),
                 "--out", str(prefix)]) == 0
    official = json.loads(Path(f"{prefix}fddb.json").read_text())
    assert official["num_images"] == 6 and official["tpr_cont"] > 0.2  # a real detector
    model, _ = load_model("shipped")
    metrics = validation_metrics(model, spec, ValidationEvaluator("fddb"))
    assert metrics["val_images"] == 6
    assert metrics["val_fddb_discrete"] == pytest.approx(official["tpr_disc"], abs=1e-9)
    assert metrics["val_fddb_continuous"] == pytest.approx(official["tpr_cont"], abs=1e-9)


def test_training_validated_on_fddb_keeps_best_by_select_by(synth_dir: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    args = ["train", "--dataset", f"synthetic:{synth_dir}", "--out", str(out),
            "--model", "vgg16", "--width", "0.0625", "--workers", "0", "--steps", "3",
            "--batch-size", "2", "--image-size", "64", "--checkpoint-every", "3",
            "--log-every", "1", "--val-dataset", f"fddb:{synth_dir / 'fddb'}",
            "--val-every", "1", "--val-limit", "3"]
    assert main([*args, "--select-by", "fddb_continuous"]) == 0
    entries = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [e for e in entries if "val_images" in e]
    assert [e["step"] for e in vals] == [1, 2, 3]
    for e in vals:
        assert e["val_images"] == 3 and "val_hard" not in e
        assert 0.0 <= e["val_fddb_discrete"] <= 1.0 and 0.0 <= e["val_fddb_continuous"] <= 1.0
    top = max(e["val_fddb_continuous"] for e in vals)
    best = json.loads((out / "best.json").read_text())
    assert best == {"step": min(e["step"] for e in vals if e["val_fddb_continuous"] == top),
                    "metric": "val_fddb_continuous", "value": top}


def test_select_by_must_fit_the_validation_set(synth_dir: Path, tmp_path: Path,
                                               capsys) -> None:
    args = ["train", "--dataset", f"synthetic:{synth_dir}", "--out", str(tmp_path / "c"),
            "--workers", "0", "--steps", "2", "--val-dataset", f"fddb:{synth_dir / 'fddb'}"]
    assert main([*args, "--select-by", "hard"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dsfd train: error: --select-by hard: the FDDB --val-dataset gives "
                   "fddb_discrete, fddb_continuous"]
    assert not (tmp_path / "c").exists()
    from jobs.train import FDDB_SELECT_BY, WIDER_SELECT_BY  # kept torch-free for --help
    from pipeline.training.config import FDDB_METRICS, WIDER_METRICS

    assert (WIDER_SELECT_BY, FDDB_SELECT_BY) == (WIDER_METRICS, FDDB_METRICS)
