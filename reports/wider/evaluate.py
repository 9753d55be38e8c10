"""WIDER FACE evaluation of a run: easy/medium/hard AP and the 1000-point PR curves.

:func:`evaluate_run` is the one entry point of the command line (``dsfd eval wider``) and the
HTML report: it reads a run directory or a folder of official txt files as the chosen flavour's
tool reads them (:mod:`reports.wider.predictions`), runs both passes of the mergeable state
(:mod:`reports.wider.state`) and returns a JSON-able :class:`WiderResult`, with the
per-attribute recall when asked (:mod:`reports.wider.attributes`). Each flavour reproduces its
tool exactly (:mod:`reports.wider.flavours`, ``docs/evaluation_wider.md``). Numpy, scipy (the
``.mat`` files) and pyarrow only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth, WiderImageGT, load_wider_gt_dir
from pipeline.rundir import RunDir
from pipeline.storage import location
from reports.wider import flavours
from reports.wider.attributes import attribute_breakdown, check_target_precision
from reports.wider.flavours import Flavour
from reports.wider.predictions import (
    EMPTY,
    WiderPredictions,
    read_run_predictions,
    read_txt_predictions,
)
from reports.wider.result import WiderResult
from reports.wider.state import ScoreBounds, WiderEvalState, evaluate_image

__all__ = [
    "compute_bounds",
    "evaluate_predictions",
    "evaluate_run",
    "is_run_dir",
    "load_ground_truth",
    "load_predictions",
]


def compute_bounds(pred: WiderPredictions) -> ScoreBounds:
    """Pass 1 over every image the tool normalises (pyport: including non-GT files)."""
    bounds = ScoreBounds.initial(pred.flavour)
    for det in pred.images.values():
        bounds = bounds.update(det.scores)
    if bounds.flavour.reads_every_file:
        for det in pred.extra.values():
            bounds = bounds.update(det.scores)
    return bounds


PerImage = Callable[[int, WiderImageGT, WiderEvalState], None]
"""Called as ``per_image(index, image, part)`` with each ground-truth image's own state."""


def evaluate_predictions(
    pred: WiderPredictions,
    gt: WiderGroundTruth,
    track_faces: bool = False,
    per_image: PerImage | None = None,
) -> tuple[WiderResult, WiderEvalState]:
    """Both passes over predictions already read; returns the result and the merged state.

    Args:
        pred: predictions read by one flavour (their ``flavour`` decides the semantics).
        gt: the ground truth, with keep lists for every setting.
        track_faces: also record per counted face where it is found (for
            :func:`reports.wider.attributes.attribute_breakdown`).
        per_image: also hand each image's own state (its PR tables) to this callable before
            merging it, e.g. :class:`reports.wider.bootstrap.BootstrapCollector` (so the
            bootstrap needs no second evaluation).

    Returns:
        (result carrying the predictions' messages, warnings and missing images, state).

    Raises:
        ValueError: the ground truth lacks a setting's keep lists.
    """
    missing_settings = [s for s in SETTINGS if s not in gt.settings]
    if missing_settings:
        raise ValueError(f"{gt.source}: ground truth has no keep lists for {missing_settings}")
    bounds = compute_bounds(pred)
    state = WiderEvalState.empty(pred.flavour)
    for index, image in enumerate(gt):
        det = pred.images.get(image.image_id, EMPTY)
        part = evaluate_image(image, det, bounds, track_faces=track_faces)
        if per_image is not None:
            per_image(index, image, part)
        state.merge_in_place(part)
    result = replace(
        state.compute(),
        messages=tuple(pred.messages),
        images_without_prediction=tuple(pred.missing),
        warnings=tuple(pred.warnings),
        score_bounds=(float(bounds.lo), float(bounds.hi)),
    )
    return result, state


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a run directory (``run.json``, ``detections/`` or
    ``images/``) rather than a folder of txt files; reading it then insists on a whole run
    (:class:`pipeline.rundir.RunDir`); local or an object-storage URI."""
    p = location(path)
    return RunDir.is_run_dir(p) or (p / "detections").is_dir() or (p / "images").is_dir()


def load_ground_truth(gt: str | os.PathLike[str] | WiderGroundTruth) -> WiderGroundTruth:
    """A :class:`WiderGroundTruth`, or load one from a folder with the four ``.mat`` files (or
    a dataset root holding ``eval_tools/ground_truth``), local or an object-storage prefix."""
    if isinstance(gt, WiderGroundTruth):
        return gt
    root = location(gt)
    nested = root / "eval_tools" / "ground_truth"
    return load_wider_gt_dir(nested if nested.is_dir() else root)


def load_predictions(
    pred: str | os.PathLike[str], gt: WiderGroundTruth, flavour: str | Flavour = "matlab"
) -> WiderPredictions:
    """Read a run directory or a txt folder as ``flavour``'s tool would (a flavour or its
    name)."""
    if is_run_dir(pred):
        return read_run_predictions(pred, gt, flavour)
    return read_txt_predictions(pred, gt, flavour)


def evaluate_run(
    run: str | os.PathLike[str] | WiderPredictions,
    gt: str | os.PathLike[str] | WiderGroundTruth,
    flavour: str | Flavour = "matlab",
    *,
    attributes: bool = False,
    target_precision: float = 0.9,
    per_image: PerImage | None = None,
) -> WiderResult:
    """Evaluate WIDER FACE val predictions as ``flavour``'s tool does.

    Args:
        run: a run directory, a folder of official-format txt files, or predictions read with
            :func:`load_predictions`.
        gt: the ground truth, or a folder holding the four official ``.mat`` files (or a
            dataset root holding ``eval_tools/ground_truth``).
        flavour: ``matlab`` (official eval_tools, the default) or ``pyport`` (wondervictor
            port), as a :class:`~reports.wider.flavours.Flavour` or its name.
        attributes: also compute the recall per attribute of the hard faces
            (:attr:`WiderResult.attributes`).
        target_precision: the precision floor of that breakdown's operating point.
        per_image: see :func:`evaluate_predictions`.

    Returns:
        The result (AP, PR curves, counts, the tool's messages, warnings, and the breakdown
        when asked); ``result.to_json()`` is the ``dsfd eval wider --json`` document.

    Raises:
        WiderPortCrash: flavour ``pyport`` on an input where the port crashes.
        ValueError: an unknown flavour; ``target_precision`` outside (0, 1] with
            ``attributes``; predictions read for another flavour; a ``nan``/``inf`` score or
            box coordinate in the predictions (file and line, or run table row and image).
    """
    fl = flavours.flavour(flavour)
    if attributes:
        check_target_precision(target_precision)
    gt = load_ground_truth(gt)
    if not isinstance(run, WiderPredictions):
        run = load_predictions(run, gt, fl)
    elif run.flavour != fl.name:
        raise ValueError(f"predictions were read for {run.flavour!r}, not {fl.name!r}")
    result, state = evaluate_predictions(run, gt, track_faces=attributes, per_image=per_image)
    if attributes:
        breakdown = attribute_breakdown(state, result, gt, target_precision=target_precision)
        result = replace(result, attributes=breakdown)
    return result
