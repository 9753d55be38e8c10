"""Fault soak: seeded SIGKILLs of detector actors, worker processes and drivers mid-run.

Each trial runs the pipeline over the same few synthetic images with a tiny model (``vgg16``
width 0.125, random weights saved as a checkpoint) on one local Ray started here, injects
one fault and checks the run directory against an uninterrupted run made first:

- ``actor``: ``ray.kill(actor, no_restart=True)`` of a detector actor (the runner replaces it);
- ``worker``: SIGKILL of a detector actor's worker process (Ray restarts the actor);
- ``driver``: SIGKILL of a ``dsfd run --address ...`` driver process, then the same command
  again (it resumes);
- ``concurrent``: two ``dsfd run`` drivers of different configs started at once into the same
  folder: one must run, the other be refused (the lock, or the config check once the first
  has finished), and the folder must hold one run only;
- ``truncate``: a complete part is cut to a drawn length (or emptied) while the run goes on;
  the same command run again must find it, redo its shard and reach the uninterrupted result.

Every trial's folder also holds a user's file beside the run (``notes.txt``), which must
come out untouched.

The fault kind, the number of finished shards to wait for and an extra delay are drawn from
the seed. After each trial: every image exactly once, the detections and image rows equal to
the uninterrupted run's (``seconds`` aside), every part readable and paired, no ``.tmp-*``
file anywhere in the run directory, ``run.json`` complete, every part carrying the config
digest ``run.json`` records (read through ``RunDir``, which refuses a mixed folder), and
the user's file unchanged. Prints one line per trial and a
summary with PASS or FAIL (exit status 1 on FAIL)::

    .venv/bin/python benchmarks/soak_faults.py [--trials 20] [--seed 0] [--cycle] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parents[1]
KINDS = ("actor", "worker", "driver", "concurrent", "truncate")
USER_FILE = "notes.txt"
USER_TEXT = "a user's notes, kept beside the run\n"
MAX_SIZE = 128  # small inputs: random weights give hundreds of boxes to post-process


@dataclass(frozen=True)
class SoakSetup:
    """What every trial shares: images, model, run settings, the reference tables."""

    root: Path
    checkpoint: Path
    work: Path
    address: str
    num_images: int
    shard_size: int
    reference: dict[str, Any]


@dataclass
class TrialResult:
    """One trial's outcome (``injected`` is False when the run finished before the fault)."""

    trial: int
    kind: str
    wait_parts: int
    delay_s: float
    injected: bool = False
    images_found: int = 0
    duplicates: int = 0
    partial_files: int = 0
    orphaned_tmp: int = 0
    equal_to_uninterrupted: bool = False
    complete: bool = False
    mixed: bool = False
    user_files_lost: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _prepare(work: Path, num_images: int) -> tuple[Path, Path]:
    """Generate the synthetic images and save the tiny model; return (root, checkpoint)."""
    import torch

    import dsfd
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = work / "synth"
    generate_benchmark(root, SynthConfig(seed=3, num_val=num_images, num_train=0, num_fddb=0))
    torch.manual_seed(0)
    checkpoint = work / "vgg16-w0125.pt"
    dsfd.save_checkpoint(checkpoint, dsfd.build_model("vgg16", width=0.125))
    return root, checkpoint


def _configs(checkpoint: Path, shard_size: int, prefix: str | None = None) -> tuple[Any, Any]:
    from pipeline.runner import ClusterConfig, RunConfig

    return (RunConfig(model=str(checkpoint), shard_size=shard_size, max_size=MAX_SIZE),
            ClusterConfig(num_workers=2, num_cpus_per_worker=1, actor_name_prefix=prefix))


def read_tables(run_dir: Path) -> dict[str, Any]:
    """The run's rows in a canonical order: detections sorted, images by id, no timings.

    Read through :class:`RunDir`, as every reader does: it refuses damaged parts and parts of
    another config.
    """
    from pipeline.rundir import RunDir

    run = RunDir.open(run_dir)
    dets = run.detections().to_pandas()
    dets = dets.sort_values(["image_id", "score", "x1", "y1", "x2", "y2"]).reset_index(drop=True)
    table = run.images()
    images = table.to_pandas().drop(columns=["seconds"])
    return {"detections": dets, "images": images.sort_values("image_id").reset_index(drop=True),
            "ids": list(table["image_id"].to_pylist())}


def check_run(run_dir: Path, setup: SoakSetup, result: TrialResult) -> None:
    """Fill the counts and ``problems`` of ``result`` from the finished run directory."""
    import pyarrow.parquet as pq

    result.orphaned_tmp = len([p for p in run_dir.rglob(".tmp-*")])
    for table in ("detections", "images"):
        for path in (run_dir / table).glob("part-*.parquet"):
            other = "images" if table == "detections" else "detections"
            try:
                pq.read_metadata(path)
            except Exception:  # noqa: BLE001 - any unreadable part counts as partial
                result.partial_files += 1
                continue
            if not (run_dir / other / path.name).is_file():
                result.partial_files += 1
    user_file = run_dir / USER_FILE
    result.user_files_lost = int(not user_file.is_file() or user_file.read_text() != USER_TEXT)
    try:
        tables = read_tables(run_dir)
    except ValueError as exc:  # RunDir refuses a mixed or damaged folder
        result.mixed = True
        result.problems.append(f"unreadable run: {exc}"[:300])
        return
    ids = tables["ids"]
    result.images_found = len(set(ids))
    result.duplicates = len(ids) - len(set(ids))
    ref = setup.reference
    result.equal_to_uninterrupted = (tables["images"].equals(ref["images"])
                                     and tables["detections"].equals(ref["detections"]))
    record = json.loads((run_dir / "run.json").read_text())
    result.complete = bool(record["plan"].get("complete"))
    checks = {"images missing": result.images_found != setup.num_images,
              "duplicate rows": result.duplicates > 0, "partial files": result.partial_files > 0,
              "orphaned .tmp files": result.orphaned_tmp > 0,
              "tables differ from the uninterrupted run": not result.equal_to_uninterrupted,
              "run.json not complete": not result.complete,
              "user file lost or changed": result.user_files_lost > 0}
    result.problems.extend(name for name, bad in checks.items() if bad)


def _parts(run_dir: Path) -> int:
    folder = run_dir / "images"
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


def _wait_parts(run_dir: Path, count: int, alive: Any, timeout: float = 300) -> bool:
    """Wait until ``count`` shards are complete; False when the run ended first."""
    deadline = time.monotonic() + timeout
    while _parts(run_dir) < count:
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _worker_pids() -> list[int]:
    """Pids of live detector actor processes (Ray titles them ``ray::ShardWorker...``)."""
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if cmd.startswith("ray::ShardWorker"):
            pids.append(int(proc.info["pid"]))
    return sorted(pids)


def _in_process_trial(setup: SoakSetup, result: TrialResult, run_dir: Path,
                      rng: random.Random) -> None:
    """Run in a thread of this driver; kill an actor (Ray API) or its process (SIGKILL)."""
    import ray

    from pipeline.datasets import open_dataset
    from pipeline.runner import run_inference

    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    config, cluster = _configs(setup.checkpoint, setup.shard_size, prefix)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = run_inference(open_dataset(f"synthetic:{setup.root}"), run_dir,
                                           config, cluster, progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported as a problem below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    if _wait_parts(run_dir, result.wait_parts, thread.is_alive):
        time.sleep(result.delay_s)
        if thread.is_alive():
            result.injected = _inject_in_process(result.kind, prefix, rng, ray)
    thread.join(timeout=600)
    if thread.is_alive() or "error" in box:
        result.problems.append(f"run failed: {box.get('error', 'did not finish')!r}"[:300])


def _inject_in_process(kind: str, prefix: str, rng: random.Random, ray: Any) -> bool:
    if kind == "actor":
        try:
            ray.kill(ray.get_actor(f"{prefix}-{rng.randrange(2)}"), no_restart=True)
        except ValueError:  # that actor was already replaced (named -rN) or is gone
            return False
        return True
    pids = _worker_pids()
    if not pids:
        return False
    os.kill(rng.choice(pids), signal.SIGKILL)
    return True


def _driver_argv(setup: SoakSetup, run_dir: Path, max_size: int = MAX_SIZE) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "run", "--dataset", f"synthetic:{setup.root}",
            "--out", str(run_dir), "--model", str(setup.checkpoint), "--workers", "2",
            "--cpus-per-worker", "1", "--shard-size", str(setup.shard_size), "--max-size",
            str(max_size), "--address", setup.address]


def _concurrent_trial(setup: SoakSetup, result: TrialResult, run_dir: Path,
                      rng: random.Random) -> None:
    """Two drivers of different configs at once: exactly one may write the folder."""
    first = _driver_argv(setup, run_dir)
    second = _driver_argv(setup, run_dir, max_size=MAX_SIZE // 2)
    order = [first, second] if rng.random() < 0.5 else [second, first]
    jobs = [subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True) for argv in order]
    outcomes = [(job.wait(timeout=600), job.communicate()[1]) for job in jobs]
    result.injected = True
    ok = [rc == 0 for rc, _ in outcomes]
    refused = [rc != 0 and ("in use by" in err or "another config" in err)
               for rc, err in outcomes]
    if sum(ok) != 1 or sum(refused) != 1:
        result.problems.append("two drivers at once: want one run and one refusal, got "
                               + "; ".join(f"rc={rc} {err.strip()[-160:]!r}"
                                           for rc, err in outcomes))
        return
    if order[ok.index(True)] is second:  # the other config won the race: rerun as the reference
        done = subprocess.run(first, cwd=REPO, capture_output=True,
                              text=True, timeout=600)
        if done.returncode == 0 or "another config" not in done.stderr:
            result.problems.append("a changed config was not refused")
        subprocess.run([*first, "--restart"], cwd=REPO, capture_output=True, timeout=600,
                       check=True)


def _truncate_trial(setup: SoakSetup, result: TrialResult, run_dir: Path,
                    rng: random.Random) -> None:
    """Cut a complete part while the run goes on, then resume with the same command."""
    argv = _driver_argv(setup, run_dir)
    job = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if _wait_parts(run_dir, max(1, result.wait_parts), lambda: job.poll() is None) or \
                _parts(run_dir):
            time.sleep(result.delay_s)
            table = rng.choice(("detections", "images"))
            parts = sorted((run_dir / table).glob("part-*.parquet"))
            if parts:
                victim = rng.choice(parts)
                data = victim.read_bytes()
                victim.write_bytes(data[:rng.randrange(0, max(1, len(data) - 8))])
                result.injected = True
        job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        result.problems.append(f"resume failed: {done.stderr.strip()[-300:]}")


def _driver_trial(setup: SoakSetup, result: TrialResult, run_dir: Path) -> None:
    """SIGKILL a ``dsfd run`` driver joined to this Ray, then run the same command again."""
    argv = _driver_argv(setup, run_dir)
    job = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, start_new_session=True)
    try:
        if _wait_parts(run_dir, result.wait_parts, lambda: job.poll() is None):
            time.sleep(result.delay_s)
            if job.poll() is None:
                job.send_signal(signal.SIGKILL)  # the driver only: Ray reaps its actors
                result.injected = True
        job.wait(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
        if job.stderr is not None:
            job.stderr.close()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        result.problems.append(f"resume failed: {done.stderr.strip()[-300:]}")


def run_trial(setup: SoakSetup, trial: int, seed: int, cycle: bool = False) -> TrialResult:
    """One seeded trial: draw the fault (or take the next kind in turn), run, inject, check."""
    rng = random.Random(seed * 100_003 + trial)
    kind = rng.choice(KINDS)
    if cycle:
        kind = KINDS[trial % len(KINDS)]
    num_shards = -(-setup.num_images // setup.shard_size)
    result = TrialResult(trial=trial, kind=kind,
                         wait_parts=rng.randrange(0, num_shards // 2 + 1),
                         delay_s=round(rng.uniform(0.0, 0.3), 3))
    run_dir = setup.work / f"trial-{trial:03d}"
    run_dir.mkdir()
    (run_dir / USER_FILE).write_text(USER_TEXT)
    start = time.perf_counter()
    if kind == "driver":
        _driver_trial(setup, result, run_dir)
    elif kind == "concurrent":
        _concurrent_trial(setup, result, run_dir, rng)
    elif kind == "truncate":
        _truncate_trial(setup, result, run_dir, rng)
    else:
        _in_process_trial(setup, result, run_dir, rng)
    if not result.problems:
        check_run(run_dir, setup, result)
    result.seconds = round(time.perf_counter() - start, 1)
    return result


def _reference(root: Path, checkpoint: Path, work: Path, shard_size: int) -> dict[str, Any]:
    from pipeline.datasets import open_dataset
    from pipeline.runner import run_inference

    config, cluster = _configs(checkpoint, shard_size)
    run_dir = work / "uninterrupted"
    run_inference(open_dataset(f"synthetic:{root}"), run_dir, config, cluster, progress=False)
    return read_tables(run_dir)


def summarise(results: list[TrialResult], num_images: int) -> dict[str, Any]:
    """The totals printed at the end (and written to JSON)."""
    return {
        "trials_run": len(results),
        "faults_injected": sum(r.injected for r in results),
        "faults_by_kind": dict(Counter(r.kind for r in results if r.injected)),
        "trials_by_kind": dict(Counter(r.kind for r in results)),
        "images_expected": num_images * len(results),
        "images_found": sum(r.images_found for r in results),
        "duplicates": sum(r.duplicates for r in results),
        "partial_files": sum(r.partial_files for r in results),
        "orphaned_tmp_files": sum(r.orphaned_tmp for r in results),
        "unequal_to_uninterrupted": sum(not r.equal_to_uninterrupted for r in results),
        "mixed_directories": sum(r.mixed for r in results),
        "user_files_lost": sum(r.user_files_lost for r in results),
        "failed_trials": [r.trial for r in results if not r.ok],
        "verdict": "PASS" if results and all(r.ok for r in results) else "FAIL",
    }


def _print_trial(r: TrialResult) -> None:
    state = "ok" if r.ok else "FAIL: " + "; ".join(r.problems)
    print(f"trial {r.trial:3d} {r.kind:10s} after {r.wait_parts} parts +{r.delay_s:.2f}s "
          f"injected={'yes' if r.injected else 'no '} images={r.images_found} "
          f"dup={r.duplicates} partial={r.partial_files} tmp={r.orphaned_tmp} "
          f"equal={'yes' if r.equal_to_uninterrupted else 'no'} "
          f"mixed={'yes' if r.mixed else 'no'} lost={r.user_files_lost} {r.seconds:6.1f}s  {state}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=12, help="synthetic images per run")
    parser.add_argument("--shard-size", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument("--cycle", action="store_true",
                        help="take the fault kinds in turn instead of drawing them")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.images < 2 or args.shard_size < 1:
        parser.error("--trials >= 1, --images >= 2 and --shard-size >= 1 are needed")
    import ray

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dsfd-soak-") as tmp:
        work = Path(tmp)
        root, checkpoint = _prepare(work, args.images)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            setup = SoakSetup(root=root, checkpoint=checkpoint, work=work,
                              address=ray.get_runtime_context().gcs_address,
                              num_images=args.images, shard_size=args.shard_size,
                              reference=_reference(root, checkpoint, work, args.shard_size))
            results = []
            for trial in range(args.trials):
                results.append(run_trial(setup, trial, args.seed, args.cycle))
                _print_trial(results[-1])
        finally:
            ray.shutdown()
    summary = summarise(results, args.images)
    summary.update(seed=args.seed, images_per_run=args.images, shard_size=args.shard_size,
                   seconds=round(time.perf_counter() - started, 1),
                   trials=[{**asdict(r), "ok": r.ok} for r in results])
    for key in ("trials_run", "faults_injected", "faults_by_kind", "images_expected",
                "images_found", "duplicates", "partial_files", "orphaned_tmp_files",
                "unequal_to_uninterrupted", "mixed_directories", "user_files_lost", "seconds",
                "verdict"):
        print(f"{key}: {summary[key]}")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
