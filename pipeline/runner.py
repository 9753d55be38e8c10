"""Distributed inference: a streamed manifest, cut into shards, through a pool of Ray actors.

The driver reads the manifest lazily, cuts it into shards of ``K`` images and hands each
incomplete shard to one of ``N`` :class:`~pipeline.actors.ShardWorker` actors, keeping at most
``N * max_in_flight_per_worker`` shards in flight. Each actor writes its shard's Parquet part
pair itself and returns only counts, so the driver's memory does not grow with the dataset.

Fault tolerance: actors are created with ``max_restarts > 0`` and ``max_task_retries=-1``, so
Ray restarts a dead actor (on another node when its node died) and reruns its shards; an actor
that cannot be restarted is replaced here and its shard resubmitted. A shard's files are
replaced atomically, so a rerun shard never leaves duplicates.

Resume: the same run directory and config skip complete shards; a run whose config, model or
dataset differs raises :class:`~pipeline.rundir.RunMismatchError` before anything is written,
unless ``restart`` clears the old parts first. This module expects Ray to be initialised by
the caller (``jobs/``) and never calls ``ray.init``.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pipeline.actors import ShardResult, ShardWorker, WorkerSettings
from pipeline.datasets.manifest import ManifestEntry
from pipeline.images import DEFAULT_MAX_PIXELS
from pipeline.progress import Progress
from pipeline.rundir import (
    RUN_FORMAT,
    OutputWriteError,
    RunMismatchError,
    clean_incomplete,
    clear_run,
    config_differences,
    config_digest,
    has_parts,
    images_part,
    is_shard_complete,
    read_run_json,
    read_shard_metadata,
    write_run_json,
)
from pipeline.schema import IMAGES_DIR
from pipeline.shards import ManifestDigest, Shard, iter_shards


class DatasetSource(Protocol):
    """What the runner needs of a dataset (``pipeline.datasets.spec.open_dataset``)."""

    name: str

    def iter_manifest(self) -> Iterable[ManifestEntry]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RunConfig:
    """Settings that decide the results; a resumed run must repeat them exactly.

    Attributes:
        model: model spec for ``dsfd.load_model``; the run records the loaded model's name
            and checksum, which is what a resume compares.
        multiscale: the official multi-scale test instead of one scale.
        max_size: longer-side limit in pixels (images above it are downscaled), or None.
        shard_size: images per shard (``K``).
        max_pixels: decompression-bomb limit in pixels.
    """

    model: str
    multiscale: bool = False
    max_size: int | None = None
    shard_size: int = 64
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ValueError(f"shard_size must be an int >= 1, got {self.shard_size!r}")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {self.max_size!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels!r}")


@dataclass(frozen=True)
class ClusterConfig:
    """How the work is spread (results do not depend on these).

    Attributes:
        num_workers: detector actors; None picks one per GPU share, or one per 4 CPUs.
        num_gpus_per_worker: GPUs per actor; None gives 1 when the cluster has GPUs, else 0.
        num_cpus_per_worker: CPUs per actor (torch threads); None splits the cluster's CPUs.
        decode_threads: image decoding threads per actor.
        batch_size: images per forward pass (single-scale).
        max_in_flight_per_worker: shards queued per actor (2 keeps it busy between shards).
        max_restarts: times Ray restarts a dead actor before the runner replaces it.
        max_shard_attempts: submissions of one shard before the run fails.
        actor_name_prefix: when set, actors are named ``{prefix}-{slot}`` (find them with
            ``ray.get_actor``, e.g. to inspect or fault-inject); names must be unused.
    """

    num_workers: int | None = None
    num_gpus_per_worker: float | None = None
    num_cpus_per_worker: float | None = None
    decode_threads: int = 2
    batch_size: int = 1
    max_in_flight_per_worker: int = 2
    max_restarts: int = 4
    max_shard_attempts: int = 4
    actor_name_prefix: str | None = None


@dataclass(frozen=True)
class RunSummary:
    """What a run did (``*_run`` count this invocation; ``num_*`` the whole run).

    ``seconds`` is the invocation's wall time, ``startup_seconds`` the part of it spent before
    the first shard could start (actors up, models loaded, resume checks); ``shard_seconds``
    and ``write_seconds`` sum the workers' time per shard and its Parquet writing.
    """

    run_dir: str
    num_images: int
    num_shards: int
    shards_run: int
    shards_skipped: int
    images_run: int
    errors_run: int
    detections_run: int
    seconds: float
    startup_seconds: float
    shard_seconds: float
    write_seconds: float
    num_workers: int
    shards_per_node: dict[str, int]


@dataclass(frozen=True)
class _Resources:
    num_workers: int
    num_cpus: float
    num_gpus: float


def resolve_resources(cluster: ClusterConfig, cluster_resources: dict[str, float]) -> _Resources:
    """Actors and per-actor CPUs/GPUs from the settings and the cluster's totals."""
    total_cpus = float(cluster_resources.get("CPU", 0.0))
    total_gpus = float(cluster_resources.get("GPU", 0.0))
    gpus = cluster.num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if total_gpus >= 1 else 0.0
    if gpus < 0:
        raise ValueError(f"gpus per worker must be >= 0, got {gpus}")
    if gpus > 0 and total_gpus < gpus:
        raise ValueError(f"{gpus:g} GPUs per worker requested but the cluster has "
                         f"{total_gpus:g} GPUs")
    workers = cluster.num_workers
    if workers is None:
        workers = int(total_gpus // gpus) if gpus > 0 else int(total_cpus // 4)
        workers = max(1, workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cpus = cluster.num_cpus_per_worker
    if cpus is None:
        share = int(total_cpus // workers) if total_cpus else 1
        cpus = float(max(1, min(share, 4) if gpus > 0 else share))
    if cpus <= 0:
        raise ValueError(f"cpus per worker must be > 0, got {cpus}")
    return _Resources(num_workers=workers, num_cpus=float(cpus), num_gpus=float(gpus))


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the results (read without importing them)."""
    out = {"python": platform.python_version()}
    for name in ("torch", "ray", "pyarrow", "numpy", "pillow", "dsfd"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _WorkerPool:
    """Detector actors with a bounded number of shards in flight on each.

    ``submit`` blocks (collecting finished shards) while every actor is full; ``drain``
    waits for the rest. A shard whose actor is gone for good is resubmitted to a fresh actor.
    """

    def __init__(self, settings: WorkerSettings, run_dir: Path, resources: _Resources,
                 cluster: ClusterConfig) -> None:
        import ray

        self._ray = ray
        self._settings = settings
        self._run_dir = str(run_dir)
        self._cluster = cluster
        self._actor_class = ray.remote(ShardWorker)
        # the one call site of the actors' resources and fault tolerance
        self._options: dict[str, Any] = {
            "num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
            "max_restarts": cluster.max_restarts, "max_task_retries": -1,
            "scheduling_strategy": "SPREAD"}
        self._generation = 0
        self.actors: list[Any] = [self._new_actor(i) for i in range(resources.num_workers)]
        self._load: dict[int, int] = {i: 0 for i in range(len(self.actors))}
        # ref -> (shard, slot, actor it went to, submissions so far)
        self._in_flight: dict[Any, tuple[Shard, int, Any, int]] = {}
        self._config_digest = ""

    def _new_actor(self, slot: int) -> Any:
        options = dict(self._options)
        prefix = self._cluster.actor_name_prefix
        if prefix is not None:
            # a replacement gets a new name: the dead actor's name may not be released yet
            options["name"] = f"{prefix}-{slot}" + (f"-r{self._generation}"
                                                    if self._generation else "")
        return self._actor_class.options(**options).remote(self._settings, self._run_dir)

    def model_infos(self) -> list[dict[str, Any]]:
        """Each actor's model info (waits for every actor to load its model).

        An actor that dies while starting (killed, node lost) is replaced once; one whose
        own start-up raised (e.g. the model spec names no model) is not, as it would fail
        again.

        Raises:
            RuntimeError: an actor could not start, with the root cause's last line.
        """
        return [self._model_info_of(slot) for slot in range(len(self.actors))]

    def _model_info_of(self, slot: int) -> dict[str, Any]:
        errors = self._ray.exceptions
        for attempt in range(2):
            try:
                return dict(self._ray.get(self.actors[slot].model_info.remote()))
            except errors.RayActorError as exc:
                if attempt == 1 or getattr(exc, "actor_init_failed", False):
                    raise RuntimeError("detector workers could not start: "
                                       f"{_root_cause(exc)}") from exc
                self._replace(slot)
            except errors.RayError as exc:
                raise RuntimeError("detector workers could not start: "
                                   f"{_root_cause(exc)}") from exc
        raise AssertionError("unreachable")

    def _replace(self, slot: int) -> None:
        """Kill the actor of ``slot`` for good and start a fresh one in its place."""
        try:
            self._ray.kill(self.actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._generation += 1
        self.actors[slot] = self._new_actor(slot)

    def postprocess_config(self) -> dict[str, Any]:
        """The first actor's post-processing config."""
        return dict(self._ray.get(self.actors[0].postprocess_config.remote()))

    def start(self, run_config_digest: str) -> None:
        self._config_digest = run_config_digest

    def submit(self, shard: Shard, tries: int = 0) -> list[ShardResult]:
        """Queue ``shard`` on the least loaded actor; return shards finished meanwhile."""
        finished: list[ShardResult] = []
        capacity = len(self.actors) * self._cluster.max_in_flight_per_worker
        while len(self._in_flight) >= capacity:
            finished.extend(self._collect(timeout=None))
        slot = min(self._load, key=lambda s: self._load[s])
        self._send(shard, slot, tries + 1)
        return finished

    def _send(self, shard: Shard, slot: int, tries: int) -> None:
        actor = self.actors[slot]
        ref = actor.process.remote(shard, self._config_digest)
        self._in_flight[ref] = (shard, slot, actor, tries)
        self._load[slot] += 1

    def _collect(self, timeout: float | None) -> list[ShardResult]:
        """Wait for at least one in-flight shard (or ``timeout``); handle failures."""
        ready, _ = self._ray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
        out: list[ShardResult] = []
        for ref in ready:
            shard, slot, actor, tries = self._in_flight.pop(ref)
            self._load[slot] -= 1
            try:
                out.append(self._ray.get(ref))
            except self._ray.exceptions.RayActorError as exc:
                # replace the actor once, not once per shard that was queued on it
                self._retry(shard, slot, tries, exc, replace=actor is self.actors[slot])
            except self._ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, OutputWriteError):  # a full disk does not heal by retrying
                    raise OutputWriteError(str(cause)) from exc
                self._retry(shard, slot, tries, exc, replace=False)
        return out

    def _retry(self, shard: Shard, slot: int, tries: int, exc: Exception, *,
               replace: bool) -> None:
        if tries >= self._cluster.max_shard_attempts:
            raise RuntimeError(f"shard {shard.index} (first image "
                               f"{shard.entries[0].image_id!r}) failed {tries} times: "
                               f"{_root_cause(exc)}")
        if replace:  # the actor is dead for good (restarts used up): start a fresh one
            self._replace(slot)
        self._send(shard, slot, tries + 1)

    def drain(self) -> list[ShardResult]:
        """Wait for every shard in flight."""
        out: list[ShardResult] = []
        while self._in_flight:
            out.extend(self._collect(timeout=None))
        return out

    def shutdown(self) -> None:
        """Kill the actors (frees their CPUs/GPUs at once)."""
        for actor in self.actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


def _root_cause(exc: BaseException) -> str:
    """The last ``SomeError: message`` line of a Ray error (the worker's own exception)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line
    return lines[0] if lines else type(exc).__name__


def _verify_done_shards(source: DatasetSource, run_dir: Path, shard_size: int,
                        run_config_digest: str) -> tuple[int, int, int]:
    """Check every complete shard against the manifest (streamed, before any writing).

    Returns:
        ``(num_shards, num_images, num_complete)`` of the current manifest.

    Raises:
        RunMismatchError: a complete shard holds other images or another config, or a part
            exists beyond the manifest's last shard (the dataset shrank).
    """
    num_shards = num_images = complete = 0
    for shard in iter_shards(source.iter_manifest(), shard_size):
        num_shards += 1
        num_images += len(shard.entries)
        if not is_shard_complete(run_dir, shard.index):
            continue
        complete += 1
        meta = read_shard_metadata(run_dir, shard.index)
        if meta.get("digest") != shard.digest:
            raise RunMismatchError(
                f"{images_part(run_dir, shard.index)}: the dataset changed: shard "
                f"{shard.index} (first image {shard.entries[0].image_id!r}) holds other images "
                "than the manifest now lists; use --restart to start over")
        if meta.get("config_digest") != run_config_digest:
            raise RunMismatchError(f"{images_part(run_dir, shard.index)}: written with another "
                                   "config than run.json records; use --restart")
    folder = run_dir / IMAGES_DIR
    if folder.is_dir():
        for path in folder.glob("part-*.parquet"):
            if int(path.stem.split("-")[1]) >= num_shards:
                raise RunMismatchError(f"{path}: the dataset shrank to {num_images} images "
                                       f"({num_shards} shards); use --restart to start over")
    return num_shards, num_images, complete


def _check_resume(old: dict[str, Any] | None, config: dict[str, Any], run_dir: Path) -> None:
    if old is None:
        if has_parts(run_dir):
            raise RunMismatchError(f"{run_dir} holds part files but no run.json; use --restart "
                                   "to start over")
        return
    if old.get("format") != RUN_FORMAT:
        raise RunMismatchError(f"{run_dir / 'run.json'}: format {old.get('format')!r}, this "
                               f"version writes {RUN_FORMAT}; use --restart")
    diffs = config_differences(old.get("config", {}), config)
    if diffs:
        raise RunMismatchError(f"{run_dir} holds a run with another config ({'; '.join(diffs)});"
                               " use --restart to replace it, or another --out")


def _run_config(config: RunConfig, model: dict[str, Any] | None,
                postprocess: dict[str, Any] | None, dataset: dict[str, Any]) -> dict[str, Any]:
    """The result-deciding config recorded in run.json and compared on resume.

    Without ``model`` and ``postprocess`` (known only once an actor has loaded the model),
    the part that can be compared before any actor starts.
    """
    out: dict[str, Any] = {
        "multiscale": config.multiscale, "max_size": config.max_size,
        "max_pixels": config.max_pixels, "shard_size": config.shard_size, "dataset": dataset}
    if model is not None:
        out["model"] = {"name": model["name"], "checksum": model["checksum"]}
    if postprocess is not None:
        out["postprocess"] = postprocess
    return out


def _start_pool(config: RunConfig, cluster: ClusterConfig, run_dir: Path,
                shards_to_run: int | None) -> _WorkerPool:
    """Start the actors: no more than there are shards left, but at least one (it also
    proves which model the config names)."""
    import ray

    resources = resolve_resources(cluster, dict(ray.cluster_resources()))
    if shards_to_run is not None:
        workers = max(1, min(resources.num_workers, shards_to_run))
        resources = _Resources(workers, resources.num_cpus, resources.num_gpus)
    settings = WorkerSettings(
        model=config.model, multiscale=config.multiscale, max_size=config.max_size,
        max_pixels=config.max_pixels, num_threads=max(1, int(resources.num_cpus)),
        decode_threads=cluster.decode_threads, batch_size=cluster.batch_size,
        use_gpu=resources.num_gpus > 0)
    return _WorkerPool(settings, run_dir, resources, cluster)


def _model_info(pool: _WorkerPool) -> dict[str, Any]:
    infos = pool.model_infos()
    checksums = {i["checksum"] for i in infos}
    if len(checksums) != 1:
        raise RuntimeError(f"workers loaded different weights (checksums {sorted(checksums)}); "
                           "a checkpoint path must name the same file on every node")
    return infos[0]


def run_inference(source: DatasetSource, run_dir: str | Path, config: RunConfig,
                  cluster: ClusterConfig = ClusterConfig(), *, dataset_spec: str = "",
                  restart: bool = False, progress: bool | None = None) -> RunSummary:
    """Run the detector over ``source`` on the initialised Ray, writing ``run_dir``.

    Args:
        source: the dataset (its manifest is streamed once, twice when resuming).
        run_dir: the run directory (created; resumed when it holds a run of this config).
        config: result-deciding settings (see :class:`RunConfig`).
        cluster: actor count and resources (see :class:`ClusterConfig`).
        dataset_spec: the dataset spec as the user wrote it (recorded in run.json only).
        restart: clear an existing run in ``run_dir`` instead of resuming it.
        progress: show a progress bar (None: only when stderr is a terminal).

    Returns:
        A :class:`RunSummary`.

    Raises:
        RunMismatchError: ``run_dir`` holds a run of another config, model or dataset.
        RuntimeError: a shard failed ``max_shard_attempts`` times.
        OutputWriteError: a worker could not write its shard (disk full, read-only, ...):
            the run stops at once; the same call resumes once the cause is fixed.
    """
    started, start = _now(), time.perf_counter()
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if restart:
        clear_run(run_dir)
    clean_incomplete(run_dir)
    old = read_run_json(run_dir)
    dataset = source.describe()
    known_total, shards_to_run = _precheck(old, config, dataset, source, run_dir)
    pool = _start_pool(config, cluster, run_dir, shards_to_run)
    try:
        model = _model_info(pool)  # waits until every actor has loaded the model
        run_config = _run_config(config, model, pool.postprocess_config(), dataset)
        _check_resume(old, run_config, run_dir)  # now the model and thresholds too
        digest = config_digest(run_config)
        record: dict[str, Any] = {
            "format": RUN_FORMAT, "config": run_config, "config_digest": digest,
            "dataset_spec": dataset_spec, "dataset_name": source.name,
            "model": {**model, "spec": config.model}, "versions": package_versions(),
            "cluster": {**asdict(cluster), "num_workers": len(pool.actors)},
            "plan": {"shard_size": config.shard_size, "complete": False},
            "timing": {"started": started},
            "history": list(old.get("history", [])) if old else []}
        write_run_json(run_dir, record)
        pool.start(digest)
        summary, plan = _stream(source, run_dir, config, pool, known_total, progress, start,
                                time.perf_counter() - start)
    finally:
        pool.shutdown()
    # a worker killed mid-write (and restarted or replaced since) leaves its ``.tmp-*`` file;
    # every shard is complete now, so only such orphans are removed
    clean_incomplete(run_dir)
    _finish_record(run_dir, record, summary, plan, started)
    return summary


def _precheck(old: dict[str, Any] | None, config: RunConfig, dataset: dict[str, Any],
              source: DatasetSource, run_dir: Path) -> tuple[int | None, int | None]:
    """What can be checked before any actor starts, and how much work is left.

    Refuses a changed config (all but the model, which needs an actor to load it) or dataset.

    Returns:
        ``(total images if known, shards left to run if known)``.
    """
    described = dataset.get("num_images")
    known_total = described if isinstance(described, int) else None
    if old is None:
        _check_resume(None, {}, run_dir)  # parts without run.json: refuse before any work
        return known_total, None
    partial = _run_config(config, None, None, dataset)
    old_config = old.get("config", {})
    _check_resume({**old, "config": {k: old_config.get(k) for k in partial}}, partial, run_dir)
    num_shards, num_images, complete = _verify_done_shards(
        source, run_dir, config.shard_size, str(old.get("config_digest")))
    return num_images, num_shards - complete


def _finish_record(run_dir: Path, record: dict[str, Any], summary: RunSummary,
                   plan: dict[str, Any], started: str) -> None:
    """Write the final run.json: the complete plan and this invocation's timing."""
    timing = {"started": started, "finished": _now(), "seconds": summary.seconds,
              "shards_run": summary.shards_run, "shards_skipped": summary.shards_skipped,
              "images_run": summary.images_run, "startup_seconds": summary.startup_seconds,
              "images_per_second": summary.images_run / summary.seconds if summary.seconds
              else 0.0, "shard_seconds": summary.shard_seconds,
              "write_seconds": summary.write_seconds,
              "shards_per_node": summary.shards_per_node}
    record["plan"] = plan
    record["timing"] = timing
    record["history"].append(timing)
    write_run_json(run_dir, record)


def _stream(source: DatasetSource, run_dir: Path, config: RunConfig, pool: _WorkerPool,
            known_total: int | None, progress: bool | None, start: float,
            startup_seconds: float) -> tuple[RunSummary, dict[str, Any]]:
    """Submit incomplete shards as the manifest is read; collect only counts."""
    bar = Progress(known_total, enabled=progress)
    digest = ManifestDigest()
    skipped = 0
    done: list[ShardResult] = []

    def tally(results: list[ShardResult]) -> None:
        for r in results:
            bar.update(r.num_images, r.num_errors)
        done.extend(results)

    try:
        for shard in iter_shards(source.iter_manifest(), config.shard_size):
            digest.update(shard)
            if is_shard_complete(run_dir, shard.index):
                skipped += 1
                bar.update(len(shard.entries))
                continue
            tally(pool.submit(shard))
        bar.set_total(digest.num_images)
        tally(pool.drain())
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    summary = RunSummary(
        run_dir=str(run_dir), num_images=digest.num_images, num_shards=digest.num_shards,
        shards_run=len(done), shards_skipped=skipped, startup_seconds=startup_seconds,
        images_run=sum(r.num_images for r in done), errors_run=sum(r.num_errors for r in done),
        detections_run=sum(r.num_detections for r in done), seconds=seconds,
        shard_seconds=sum(r.seconds for r in done),
        write_seconds=sum(r.write_seconds for r in done), num_workers=len(pool.actors),
        shards_per_node=dict(Counter(r.node for r in done)))
    plan = {"shard_size": config.shard_size, "num_shards": digest.num_shards,
            "num_images": digest.num_images, "manifest_digest": digest.hexdigest(),
            "complete": True}
    return summary, plan
