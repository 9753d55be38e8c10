"""Distributed inference: a streamed manifest, cut into shards, through a pool of Ray actors.

The driver reads the manifest lazily, cuts it into shards of ``K`` images and hands each
incomplete shard to one of ``N`` :class:`~pipeline.actors.ShardWorker` actors, keeping at most
``N * max_in_flight_per_worker`` shards in flight. Each actor writes its shard's Parquet part
pair itself and returns only counts, so the driver's memory does not grow with the dataset.

Fault tolerance: tasks are not retried on the same actor (``max_task_retries=0``) and, by
default, Ray does not restart a dead actor (``max_restarts=0``): the pool replaces it with a
fresh one (placed wherever there is room, so another node when its node died) and sends the
shards it held back to the queue, where live actors take them. Ray then reports why the actor
died (an out-of-memory kill by its memory monitor is one line naming the shard and the sizes;
with restarts left it would only say the actor restarted). A shard's files are replaced
atomically, so a rerun shard never leaves duplicates.

Resume, verification and every rule of what may be written or removed belong to the run
directory (:class:`~pipeline.rundir.RunDir`); this module only schedules. It expects Ray to be
initialised by the caller (``jobs/``) and never calls ``ray.init``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pipeline.actors import ShardResult, ShardWorker, WorkerSettings, describe_model
from pipeline.datasets.manifest import ManifestEntry
from pipeline.detectors.base import DTYPES
from pipeline.errors import root_cause
from pipeline.images import DEFAULT_MAX_PIXELS
from pipeline.progress import Progress
from pipeline.rundir import OutputWriteError, RunDir, ShardWriter
from pipeline.shards import ManifestDigest, Shard, iter_shards
from pipeline.storage import forwarded_env


class DatasetSource(Protocol):
    """What the runner needs of a dataset (``pipeline.datasets.open_dataset``)."""

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
        keep_score: store only boxes scoring at least this (a labelling run's storage
            threshold); None stores every box the detector keeps (score > 0.01, as the
            official evaluation needs).
        dtype: forward precision, ``float32`` (default, the official numbers), ``tf32``,
            ``bfloat16`` or ``float16`` (see :class:`dsfd.Detector`).
        bucket: DSFD single-scale batches of mixed sizes padded to size buckets (faster on a
            GPU; the padding moves boxes near the right and bottom edges, so it decides the
            results). Off: only equal sizes share a forward, as one image at a time gives.
    """

    model: str
    multiscale: bool = False
    max_size: int | None = None
    shard_size: int = 64
    max_pixels: int = DEFAULT_MAX_PIXELS
    keep_score: float | None = None
    dtype: str = "float32"
    bucket: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise ValueError(f"shard_size must be an int >= 1, got {self.shard_size!r}")
        if self.max_size is not None and self.max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {self.max_size!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels!r}")
        if self.keep_score is not None and not 0.0 <= self.keep_score <= 1.0:
            raise ValueError(f"keep_score must be in [0, 1] or None, got {self.keep_score!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")


@dataclass(frozen=True)
class ClusterConfig:
    """How the work is spread (results do not depend on these).

    Attributes:
        num_workers: detector actors; None picks one per GPU share, or one per 4 CPUs.
        num_gpus_per_worker: GPUs per actor; None gives 1 when the cluster has GPUs, else 0.
        num_cpus_per_worker: CPUs per actor (torch threads); None splits the cluster's CPUs.
        decode_threads: image decoding threads per actor.
        batch_size: images per forward pass (multi-scale: passes of equal size); None:
            :data:`GPU_BATCH_SIZE` when the actors have GPUs, 1 on CPU actors.
        optimize: folded BatchNorm + channels-last in the DSFD workers (float rounding only).
        max_in_flight_per_worker: shards queued per actor (2 keeps it busy between shards).
        max_restarts: times Ray restarts a dead actor before the runner replaces it (0, the
            default: the runner replaces it at once, and Ray's reason for the death, such as
            an out-of-memory kill, reaches the run's error).
        max_shard_attempts: submissions of one shard before the run fails.
        actor_name_prefix: when set, actors are named ``{prefix}-{slot}`` (find them with
            ``ray.get_actor``, e.g. to inspect or fault-inject); names must be unused.
        wait_timeout: seconds the run may wait with work queued and no actor able to run it
            (resources busy, nodes lost) before it stops in one line; None waits on.
    """

    num_workers: int | None = None
    num_gpus_per_worker: float | None = None
    num_cpus_per_worker: float | None = None
    decode_threads: int = 2
    batch_size: int | None = None
    optimize: bool = True
    max_in_flight_per_worker: int = 2
    max_restarts: int = 0
    max_shard_attempts: int = 4
    actor_name_prefix: str | None = None
    wait_timeout: float | None = 600.0


@dataclass(frozen=True)
class RunSummary:
    """What a run did: ``num_*`` count the whole run (shards done earlier included),
    ``*_run`` this invocation.

    ``seconds`` is the invocation's wall time, ``startup_seconds`` the part of it spent before
    the first shard could start (actors up, models loaded, resume checks); ``shard_seconds``
    and ``write_seconds`` sum the workers' time per shard and its Parquet writing;
    ``shards_requeued`` counts shards sent again after their actor died or their task failed.
    """

    run_dir: str
    num_images: int
    num_shards: int
    num_errors: int
    num_detections: int
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
    shards_requeued: int = 0


@dataclass(frozen=True)
class _Resources:
    num_workers: int
    num_cpus: float
    num_gpus: float


def resolve_resources(cluster: ClusterConfig, nodes: list[dict[str, float]],
                      note: Any = None) -> _Resources:
    """Actors and per-actor CPUs/GPUs from the settings and each alive node's resources.

    Args:
        cluster: the requested sizes (None: choose).
        nodes: one resource dict (``{"CPU": 2.0, "GPU": 1.0, ...}``) per alive node.
        note: called with a one-line message when the request is clamped to what fits.

    Raises:
        ValueError: no node can host one actor of the requested size (one line).
    """
    cpus_by_node = [float(n.get("CPU", 0.0)) for n in nodes] or [0.0]
    gpus_by_node = [float(n.get("GPU", 0.0)) for n in nodes] or [0.0]
    total_cpus, total_gpus = sum(cpus_by_node), sum(gpus_by_node)
    gpus = cluster.num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if max(gpus_by_node) >= 1 else 0.0
    if gpus < 0:
        raise ValueError(f"gpus per worker must be >= 0, got {gpus}")
    if gpus > 0 and max(gpus_by_node) < gpus:
        raise ValueError(f"{gpus:g} GPUs per worker requested but no node has that many "
                         f"(the cluster has {total_gpus:g} GPUs, at most "
                         f"{max(gpus_by_node):g} on one node)")
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
        cpus = min(cpus, max(1.0, max(cpus_by_node)))  # an actor must fit on one node
    if cpus <= 0:
        raise ValueError(f"cpus per worker must be > 0, got {cpus}")
    if cpus > max(cpus_by_node):
        raise ValueError(f"{cpus:g} CPUs per worker requested but no node has that many "
                         f"(at most {max(cpus_by_node):g} CPUs on one node, "
                         f"{total_cpus:g} in the cluster)")
    fits = sum(min(int(c // cpus), int(g // gpus) if gpus > 0 else 1 << 30)
               for c, g in zip(cpus_by_node, gpus_by_node, strict=True))
    if workers > fits:
        if note is not None and cluster.num_workers is not None:
            note(f"--workers {workers}: only {fits} actors of {cpus:g} CPUs"
                 + (f" and {gpus:g} GPUs" if gpus > 0 else "")
                 + f" fit on this cluster ({total_cpus:g} CPUs); running {fits}")
        workers = fits
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


@dataclass
class _Slot:
    """One actor of the pool: it takes shards only once its model has loaded (``ready``)."""

    actor: Any
    probe: Any  # the ref of its model_info call while it is (re)starting, else None
    ready: bool = False
    load: int = 0
    failed_starts: int = 0  # actors of this slot that died in a row before their model loaded


class _WorkerPool:
    """Detector actors fed from one queue, with a bounded number of shards in flight on each.

    A shard goes only to an actor whose model has loaded, so a restarting or unplaceable
    actor (its node lost, no room left) never holds work: when an actor dies, the shards it
    held return to the queue and the live actors run them (tasks are not retried on the same
    actor). A dead actor is replaced by a fresh one (or restarted by Ray first when
    ``max_restarts > 0``; one that cannot come back is then replaced). While no actor can
    run, the pool says what it waits for, and gives up after ``wait_timeout`` seconds.
    """

    def __init__(self, settings: WorkerSettings, writer: ShardWriter, resources: _Resources,
                 cluster: ClusterConfig, checksum: str, note: Any = None) -> None:
        import ray

        self._ray = ray
        self._settings = settings
        self.batch_size = settings.batch_size
        self._writer = writer
        self._cluster = cluster
        self._resources = resources
        self._checksum = checksum
        self._note = note or _warn
        self._actor_class = ray.remote(ShardWorker)
        # the one call site of the actors' resources and fault tolerance
        self._options: dict[str, Any] = {
            "num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
            "max_restarts": cluster.max_restarts, "max_task_retries": 0,
            "scheduling_strategy": "SPREAD"}
        storage_env = forwarded_env()  # object-storage settings (names from an allow-list)
        if storage_env:
            self._options["runtime_env"] = {"env_vars": storage_env}
        self._generation = 0
        self.slots = [self._new_slot(i) for i in range(resources.num_workers)]
        self.actors_started = [slot.actor for slot in self.slots]
        self._queue: deque[tuple[Shard, int]] = deque()
        self._in_flight: dict[Any, tuple[Shard, int, Any, int]] = {}
        self.shards_requeued = 0
        self._idle_since: float | None = None
        self._last_note = 0.0
        self._started_at = time.monotonic()
        self._all_started = False

    @property
    def actors(self) -> list[Any]:
        return [slot.actor for slot in self.slots]

    def _new_slot(self, index: int) -> _Slot:
        options = dict(self._options)
        prefix = self._cluster.actor_name_prefix
        if prefix is not None:
            # a replacement gets a new name: the dead actor's name may not be released yet
            options["name"] = f"{prefix}-{index}" + (f"-r{self._generation}"
                                                     if self._generation else "")
        actor: Any = self._actor_class.options(**options).remote(self._settings, self._writer)
        return _Slot(actor=actor, probe=actor.model_info.remote())

    def _replace(self, index: int, failed_starts: int = 0) -> None:
        """Kill the actor of ``index`` for good and start a fresh one in its place."""
        try:
            self._ray.kill(self.slots[index].actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._generation += 1
        self.slots[index] = self._new_slot(index)
        self.slots[index].failed_starts = failed_starts
        self.actors_started.append(self.slots[index].actor)

    def _probe_done(self, index: int, ref: Any) -> None:
        """An actor's model_info answered: it is ready, or it died (replaced once more), or
        its own start-up failed (the run fails: every actor would fail alike)."""
        slot = self.slots[index]
        errors = self._ray.exceptions
        try:
            info = dict(self._ray.get(ref))
        except errors.RayActorError as exc:
            if getattr(exc, "actor_init_failed", False):
                raise RuntimeError(f"detector workers could not start: {root_cause(exc)}") \
                    from exc
            failed = slot.failed_starts + 1
            if failed >= self._cluster.max_shard_attempts:  # a crash while loading, each time
                raise RuntimeError(f"detector workers could not start: {failed} actors in a row "
                                   f"died while loading the model: {root_cause(exc)}") from exc
            self._replace(index, failed)
            return
        except errors.RayError as exc:
            raise RuntimeError(f"detector workers could not start: {root_cause(exc)}") from exc
        if info.get("checksum") != self._checksum:
            raise RuntimeError(f"a worker loaded other weights (checksum {info.get('checksum')})"
                               f" than the driver ({self._checksum}); a checkpoint path must "
                               "name the same file on every node")
        slot.ready, slot.probe, slot.failed_starts = True, None, 0

    def submit(self, shard: Shard) -> list[ShardResult]:
        """Queue ``shard``; return shards finished meanwhile (blocks while the pool is full)."""
        self._queue.append((shard, 0))
        finished: list[ShardResult] = []
        self._dispatch()
        capacity = len(self.slots) * self._cluster.max_in_flight_per_worker
        while len(self._queue) + len(self._in_flight) > capacity:
            finished.extend(self._collect())
        return finished

    def drain(self) -> list[ShardResult]:
        """Run every queued shard and wait for every shard in flight."""
        out: list[ShardResult] = []
        while self._queue or self._in_flight:
            out.extend(self._collect())
        return out

    def _dispatch(self) -> None:
        """Send queued shards to ready actors, least loaded first.

        At the start, shards wait (up to :data:`START_GRACE_S`) until every actor has loaded
        its model, so the first one up does not take the whole queue; after that, an actor
        that is not up yet never holds work.
        """
        if not self._all_started:
            if (all(s.ready for s in self.slots)
                    or time.monotonic() - self._started_at > START_GRACE_S):
                self._all_started = True
            else:
                return
        limit = self._cluster.max_in_flight_per_worker
        while self._queue:
            ready = [i for i, s in enumerate(self.slots) if s.ready and s.load < limit]
            if not ready:
                return
            index = min(ready, key=lambda i: self.slots[i].load)
            shard, tries = self._queue.popleft()
            slot = self.slots[index]
            ref = slot.actor.process.remote(shard)
            self._in_flight[ref] = (shard, index, slot.actor, tries + 1)
            slot.load += 1

    def _collect(self) -> list[ShardResult]:
        """Wait for a shard or an actor's start-up (at most a few seconds); handle both."""
        probes = {s.probe: i for i, s in enumerate(self.slots) if s.probe is not None}
        waiting = [*self._in_flight, *probes]
        ready, _ = self._ray.wait(waiting, num_returns=1, timeout=WAIT_POLL_S)
        out: list[ShardResult] = []
        for ref in ready:
            if ref in probes:
                self._probe_done(probes[ref], ref)
            else:
                out.extend(self._shard_done(ref))
        self._dispatch()
        self._check_waiting(bool(ready))
        return out

    def _shard_done(self, ref: Any) -> list[ShardResult]:
        shard, index, actor, tries = self._in_flight.pop(ref)
        slot = self.slots[index]
        if slot.actor is actor:
            slot.load -= 1
        errors = self._ray.exceptions
        try:
            return [self._ray.get(ref)]
        except errors.OutOfMemoryError as exc:
            raise RuntimeError(_oom_message(shard, exc)) from exc
        except errors.RayActorError as exc:
            if slot.actor is actor and slot.ready:  # the actor died
                if self._cluster.max_restarts > 0:  # Ray may restart it: probe it once
                    slot.ready, slot.load = False, 0
                    slot.probe = actor.model_info.remote()
                else:  # it is gone for good: a fresh actor takes its place
                    self._replace(index)
            self._requeue(shard, tries, exc)
        except errors.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, OutputWriteError):  # a full disk does not heal by retrying
                raise OutputWriteError(str(cause)) from exc
            self._requeue(shard, tries, exc)
        return []

    def _requeue(self, shard: Shard, tries: int, exc: Exception) -> None:
        if tries >= self._cluster.max_shard_attempts:
            raise RuntimeError(f"shard {shard.index} (first image "
                               f"{shard.entries[0].image_id!r}) failed {tries} times: "
                               f"{root_cause(exc)}")
        self.shards_requeued += 1
        self._queue.appendleft((shard, tries))

    def _check_waiting(self, progressed: bool) -> None:
        """Say what the pool waits for when no actor can take the queued work; give up
        after ``wait_timeout``."""
        now = time.monotonic()
        if progressed or not self._queue or any(s.ready for s in self.slots):
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
            return
        waited = now - self._idle_since
        if waited >= NOTE_AFTER_S and now - self._last_note >= NOTE_EVERY_S:
            self._last_note = now
            self._note(self._waiting_line(waited))
        timeout = self._cluster.wait_timeout
        if timeout is not None and waited >= timeout:
            raise RuntimeError(f"gave up after {waited:.0f} s: {self._waiting_line(waited)}; "
                               "free resources, lower --workers/--cpus-per-worker, or raise "
                               "--wait-timeout")

    def _waiting_line(self, waited: float) -> str:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        free = self._ray.available_resources()
        need = f"{self._resources.num_cpus:g} CPUs" + (
            f" and {self._resources.num_gpus:g} GPUs" if self._resources.num_gpus else "")
        have = f"{free.get('CPU', 0.0):g} CPUs" + (
            f" and {free.get('GPU', 0.0):g} GPUs" if self._resources.num_gpus else "")
        return (f"waiting {waited:.0f} s for a detector actor of {need}: {have} free on "
                f"{len(nodes)} nodes")

    def shutdown(self) -> None:
        """Kill the actors (frees their CPUs/GPUs at once)."""
        for slot in self.slots:
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.slots = []


def _oom_message(shard: Shard, exc: BaseException) -> str:
    """One line for a shard whose actor Ray's memory monitor killed: the shard, the memory
    measured (the actor's, and the node's against its limit, as Ray reports them) and the
    remedy."""
    text = str(exc)
    actor = re.search(r"actual memory used=([\d.]+\s*[KMGT]?i?B)", text)
    node = re.search(r"was ([\d.]+\s*[KMGT]?i?B) used / ([\d.]+\s*[KMGT]?i?B) limit", text)
    measured = ", ".join(
        ([f"the actor used {actor[1]}"] if actor else [])
        + ([f"the node {node[1]} of its {node[2]} limit"] if node else [])) or root_cause(exc)
    return (f"shard {shard.index} (first image {shard.entries[0].image_id!r}) ran out of "
            f"memory ({measured}); lower --batch-size or --max-size, or use fewer, "
            "larger workers (--workers, --cpus-per-worker)")


def _run_config(config: RunConfig, model: dict[str, Any],
                dataset: dict[str, Any]) -> dict[str, Any]:
    """The result-deciding config recorded in run.json and compared on resume."""
    return {"multiscale": config.multiscale, "max_size": config.max_size,
            "max_pixels": config.max_pixels, "shard_size": config.shard_size, "dataset": dataset,
            "keep_score": config.keep_score, "dtype": config.dtype,
            "model": {"name": model["name"], "checksum": model["checksum"]},
            "postprocess": model.get("postprocess"),
            # only when on, so runs recorded before the option resume as they were
            **({"bucket": True} if config.bucket else {})}


def _start_pool(config: RunConfig, cluster: ClusterConfig, writer: ShardWriter,
                shards_to_run: int, checksum: str) -> _WorkerPool:
    """Start the actors: no more than there are shards left, but at least one."""
    import ray

    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    resources = resolve_resources(cluster, nodes, note=_warn)
    workers = max(1, min(resources.num_workers, shards_to_run))
    resources = _Resources(workers, resources.num_cpus, resources.num_gpus)
    settings = WorkerSettings(
        model=config.model, multiscale=config.multiscale, max_size=config.max_size,
        max_pixels=config.max_pixels, num_threads=max(1, int(resources.num_cpus)),
        decode_threads=cluster.decode_threads,
        batch_size=resolved_batch_size(cluster.batch_size, resources.num_gpus > 0),
        use_gpu=resources.num_gpus > 0, keep_score=config.keep_score, dtype=config.dtype,
        optimize=cluster.optimize, bucket=config.bucket)
    return _WorkerPool(settings, writer, resources, cluster, checksum)


GPU_BATCH_SIZE = 16
"""Default images per forward on a GPU actor (equal sizes only, so results are those of one
image at a time to float rounding); CPU actors default to 1, which is fastest there."""


def resolved_batch_size(batch_size: int | None, on_gpu: bool) -> int:
    """``batch_size``, or the default for the actors' device."""
    if batch_size is not None:
        return batch_size
    return GPU_BATCH_SIZE if on_gpu else 1


WAIT_POLL_S = 2.0  # how often the pool looks up from waiting
START_GRACE_S = 30.0  # at the start, how long shards wait for every actor to load its model
NOTE_AFTER_S = 10.0  # idle this long with work queued: say what the run waits for
NOTE_EVERY_S = 30.0


def _warn(message: str) -> None:
    import sys

    print(f"dsfd: note: {message}", file=sys.stderr)


def run_inference(source: DatasetSource, run: RunDir | str | os.PathLike[str],
                  config: RunConfig, cluster: ClusterConfig = ClusterConfig(), *,
                  dataset_spec: str = "", model: dict[str, Any] | None = None,
                  restart: bool = False, retry_errors: bool = False,
                  progress: bool | None = None) -> RunSummary:
    """Run the detector over ``source`` on the initialised Ray, writing into ``run``.

    Args:
        source: the dataset (its manifest is streamed twice: resume check, then the run).
        run: the run directory, opened for writing (lock held; see
            :meth:`RunDir.open_for_writing`), or a path, opened (and released) here.
        config: result-deciding settings (see :class:`RunConfig`).
        cluster: actor count and resources (see :class:`ClusterConfig`).
        dataset_spec: the dataset spec as the user wrote it (recorded in run.json only).
        model: :func:`pipeline.actors.describe_model` of ``config.model`` when the caller
            already loaded it (it is loaded here otherwise).
        restart: with a path, remove what an earlier run wrote there first.
        retry_errors: rerun the complete shards that hold error rows.
        progress: show a progress bar (None: only when stderr is a terminal).

    Returns:
        A :class:`RunSummary`.

    Raises:
        RunMismatchError: ``run`` holds a run of another config, model or dataset.
        RuntimeError: a shard failed ``max_shard_attempts`` times.
        OutputWriteError: a worker could not write its shard (disk full, read-only, ...):
            the run stops at once; the same call resumes once the cause is fixed.
    """
    if not isinstance(run, RunDir):
        with RunDir.open_for_writing(run, restart=restart) as opened:
            return run_inference(source, opened, config, cluster, dataset_spec=dataset_spec,
                                 model=model, retry_errors=retry_errors, progress=progress)
    started, start = _now(), time.perf_counter()
    dataset = source.describe()
    model = model or describe_model(config.model, config.dtype)
    run_config = _run_config(config, model, dataset)
    state = run.prepare(run_config, iter_shards(source.iter_manifest(), config.shard_size),
                        retry_errors=retry_errors)
    old = run.record or {}
    record: dict[str, Any] = {
        "config": run_config, "dataset_spec": dataset_spec, "dataset_name": source.name,
        "model": {k: v for k, v in model.items() if k != "postprocess"} | {"spec": config.model},
        "versions": package_versions(),
        "plan": {"shard_size": config.shard_size, "complete": False,
                 "limit": getattr(source, "limit", None)},
        "timing": old.get("timing", {}), "history": list(old.get("history", []))}
    writer = run.begin(record)
    left = state.num_shards - state.done.num_shards
    pool = _start_pool(config, cluster, writer, left, model["checksum"]) if left else None
    try:
        summary, plan = _stream(source, run, config, pool, state, progress, start,
                                time.perf_counter() - start)
    finally:
        if pool is not None:
            pool.shutdown()
    cluster_info = {**asdict(cluster), "num_workers": summary.num_workers}
    if pool is not None:  # what the actors ran with (the default depends on their device)
        cluster_info["batch_size"] = pool.batch_size
    run.finish(lambda rec: _finish_record(rec, summary, plan, started, cluster_info))
    return summary


def _finish_record(record: dict[str, Any], summary: RunSummary, plan: dict[str, Any],
                   started: str, cluster: dict[str, Any]) -> None:
    """The final run.json: the complete plan, this invocation in ``history``, and ``timing``
    summed over the invocations that ran shards (a resume with nothing left keeps it)."""
    now = _now()
    entry = {"started": started, "finished": now, "seconds": summary.seconds,
             "shards_run": summary.shards_run, "shards_skipped": summary.shards_skipped,
             "images_run": summary.images_run, "startup_seconds": summary.startup_seconds,
             "shard_seconds": summary.shard_seconds, "write_seconds": summary.write_seconds,
             "shards_per_node": summary.shards_per_node,
             "shards_requeued": summary.shards_requeued,
             # how this invocation's parts were computed; not compared on resume (parts of
             # either setting differ by float rounding only; padded buckets, which move
             # boxes more, are part of the compared config)
             "inference": {"optimize": cluster.get("optimize"),
                           "batch_size": cluster.get("batch_size")}}
    record["plan"] = plan
    record["history"] = [*record.get("history", []), entry]
    record["totals"] = {"num_images": summary.num_images, "num_errors": summary.num_errors,
                        "num_detections": summary.num_detections}
    if summary.shards_run == 0 and record.get("timing"):
        return
    record["cluster"] = cluster
    working = [h for h in record["history"] if h.get("shards_run")] or [entry]
    seconds = sum(float(h["seconds"]) for h in working)
    images = sum(int(h["images_run"]) for h in working)
    per_node: Counter[str] = Counter()
    for h in working:
        per_node.update(h.get("shards_per_node", {}))
    record["timing"] = {
        "started": working[0]["started"], "finished": working[-1]["finished"],
        "seconds": seconds, "images_run": images,
        "images_per_second": images / seconds if seconds else 0.0,
        "startup_seconds": sum(float(h["startup_seconds"]) for h in working),
        "shard_seconds": sum(float(h["shard_seconds"]) for h in working),
        "write_seconds": sum(float(h["write_seconds"]) for h in working),
        "invocations": len(working), "shards_per_node": dict(per_node)}


def _stream(source: DatasetSource, run: RunDir, config: RunConfig, pool: _WorkerPool | None,
            state: Any, progress: bool | None, start: float,
            startup_seconds: float) -> tuple[RunSummary, dict[str, Any]]:
    """Submit incomplete shards as the manifest is read; collect only counts."""
    bar = Progress(state.num_images, enabled=progress)
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
            if run.is_done(shard.index):
                skipped += 1
                bar.update(len(shard.entries))
                continue
            if pool is None:  # prepare() found every shard done; the manifest says otherwise
                raise RuntimeError(f"shard {shard.index} is missing although the resume check "
                                   "found the run complete; was the folder changed meanwhile?")
            tally(pool.submit(shard))
        bar.set_total(digest.num_images)
        if pool is not None:
            tally(pool.drain())
    finally:
        bar.close()
    before = state.done
    summary = RunSummary(
        run_dir=str(run.root), num_images=digest.num_images, num_shards=digest.num_shards,
        num_errors=before.num_errors + sum(r.num_errors for r in done),
        num_detections=before.num_detections + sum(r.num_detections for r in done),
        shards_run=len(done), shards_skipped=skipped, startup_seconds=startup_seconds,
        images_run=sum(r.num_images for r in done), errors_run=sum(r.num_errors for r in done),
        detections_run=sum(r.num_detections for r in done),
        seconds=time.perf_counter() - start, shard_seconds=sum(r.seconds for r in done),
        write_seconds=sum(r.write_seconds for r in done),
        num_workers=len(pool.actors_started) if pool is not None else 0,
        shards_requeued=pool.shards_requeued if pool is not None else 0,
        shards_per_node=dict(Counter(r.node for r in done)))
    plan = {"shard_size": config.shard_size, "num_shards": digest.num_shards,
            "num_images": digest.num_images, "manifest_digest": digest.hexdigest(),
            "complete": True, "limit": getattr(source, "limit", None)}
    return summary, plan
