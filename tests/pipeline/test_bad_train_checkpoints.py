"""Torn training checkpoints (the training code lives in ``pipeline/training/``).

A checkpoint is written to a temporary name and renamed, so a killed writer leaves a torn
temporary file, never a torn ``last.pt``. These tests put torn files next to good ones and
check that none is ever loaded.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from dsfd.checkpoint import read_weights_file
from dsfd.config import ModelConfig
from pipeline.training import TrainConfig, fit


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=3, num_train=4, num_val=1, num_fddb=0))
    return root


def _config(synth_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        dataset=f"synthetic:{synth_dir}", out=str(out.resolve()),
        model=ModelConfig(name="vgg16", width=0.0625, input_size=64),
        workers=0, steps=4, batch_size=2, checkpoint_every=2, log_every=1, seed=5)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _tear(path: Path, dest: Path) -> None:
    """Write the first half of ``path`` to ``dest`` (what a killed writer leaves)."""
    data = path.read_bytes()
    dest.write_bytes(data[: len(data) // 2])


def test_torn_temporaries_beside_a_good_checkpoint_are_never_loaded(
        synth_dir: Path, tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "ckpt", stop_at=2)
    fit(cfg)
    out = Path(cfg.out)
    good = out / "checkpoint-0000002.pt"
    _tear(good, out / ".last.pt.tmp")  # the copy to last.pt was cut short
    _tear(good, out / ".checkpoint-0000004.pt.x1y2z3.tmp")  # save_checkpoint was cut short
    fit(replace(cfg, stop_at=None))
    last = read_weights_file(out / "last.pt")
    assert last["extra"]["step"] == 4  # resumed from step 2 and went on


def test_only_torn_checkpoints_are_refused_naming_the_file(synth_dir: Path,
                                                            tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "ckpt", stop_at=2)
    fit(cfg)
    out = Path(cfg.out)
    _tear(out / "checkpoint-0000002.pt", out / "last.pt")  # e.g. a copy by hand, cut short
    (out / "checkpoint-0000002.pt").unlink()  # nothing good to fall back to
    with pytest.warns(UserWarning, match="last.pt"), \
            pytest.raises(ValueError, match=f"^{out / 'last.pt'}: not a loadable weights-only"):
        fit(replace(cfg, stop_at=None))


def test_a_torn_last_pt_falls_back_to_the_newest_good_checkpoint(
        synth_dir: Path, tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "ckpt", stop_at=2)
    fit(cfg)
    out = Path(cfg.out)
    _tear(out / "checkpoint-0000002.pt", out / "last.pt")
    with pytest.warns(UserWarning, match="last.pt"):
        fit(replace(cfg, stop_at=None))
    assert read_weights_file(out / "last.pt")["extra"]["step"] == 4


FILE_SIZE_LIMIT = 256 * 1024  # below a checkpoint (~1.5 MB), above metrics.jsonl


def limit_file_size() -> None:
    """Ray worker setup hook: writes past 256 KiB fail with EFBIG (as a full disk fails with
    ENOSPC); Ray's own processes keep their limits."""
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_full_disk_while_checkpointing_is_one_line(synth_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A Ray Train worker that cannot write its checkpoint stops the training with one line
    naming the step, the folder and the system's reason; the log has the whole story."""
    import os

    import ray

    from jobs.cli import main

    out = tmp_path / "ckpt"
    if ray.is_initialized():
        ray.shutdown()
    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(repo), str(Path(__file__).parent)]))
    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "60")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": limit_file_size})
    try:
        capsys.readouterr()
        code = main(["train", "--dataset", f"synthetic:{synth_dir}", "--out", str(out),
                     "--model", "vgg16", "--width", "0.0625", "--workers", "1", "--steps",
                     "4", "--batch-size", "2", "--image-size", "64", "--checkpoint-every",
                     "2", "--max-failures", "0"])
    finally:
        ray.shutdown()
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "\n" not in err, err
    assert err.startswith(f"dsfd train: error: training failed: OSError: cannot write the step 2 "
                          f"checkpoint to {out}: File too large; free space"), err
    assert err.endswith(f"(full log: {out / 'logs' / 'ray.log'})")
    assert "Traceback" in (out / "logs" / "ray.log").read_text()
    assert not (out / "last.pt").exists() and not list(out.glob(".*.tmp"))
