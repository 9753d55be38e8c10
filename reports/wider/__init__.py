"""WIDER FACE evaluation, digit for digit as the official tools compute it (no torch, no Ray).

``evaluate_run(run, gt, flavour)`` reads a run directory or a folder of official txt files and
returns a JSON-able :class:`WiderResult`; ``dsfd eval wider`` and the HTML report both call it.
Modules: :mod:`~reports.wider.flavours` (what differs between the MATLAB tools and the Python
port), :mod:`~reports.wider.predictions` (reading predictions as each tool reads them),
:mod:`~reports.wider.state` (the mergeable two-pass state), :mod:`~reports.wider.result`,
:mod:`~reports.wider.attributes` (recall per face attribute),
:mod:`~reports.wider.evaluate` and :mod:`~reports.wider.bootstrap` (confidence intervals).
"""

from reports.wider.attributes import attribute_breakdown
from reports.wider.bootstrap import (
    WiderBootstrapState,
    bootstrap_interval,
    bootstrap_state,
    paired_bootstrap,
)
from reports.wider.evaluate import (
    evaluate_predictions,
    evaluate_run,
    load_ground_truth,
    load_predictions,
)
from reports.wider.flavours import FLAVOURS, MATLAB, PYPORT, Flavour, WiderPortCrash, flavour
from reports.wider.predictions import ImageDetections, WiderPredictions
from reports.wider.result import WiderResult, result_from_json
from reports.wider.state import THRESH_NUM, ScoreBounds, WiderEvalState, evaluate_image, thresholds

__all__ = [
    "FLAVOURS",
    "MATLAB",
    "PYPORT",
    "THRESH_NUM",
    "Flavour",
    "ImageDetections",
    "ScoreBounds",
    "WiderBootstrapState",
    "WiderEvalState",
    "WiderPortCrash",
    "WiderPredictions",
    "WiderResult",
    "attribute_breakdown",
    "bootstrap_interval",
    "bootstrap_state",
    "evaluate_image",
    "evaluate_predictions",
    "evaluate_run",
    "flavour",
    "load_ground_truth",
    "load_predictions",
    "paired_bootstrap",
    "result_from_json",
    "thresholds",
]
