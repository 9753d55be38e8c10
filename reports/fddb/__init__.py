"""FDDB evaluation, byte for byte as the official FDDB program computes it (no torch, no Ray).

``evaluate_run(run, annotations, sizes=..., ...)`` reads a run directory or a detection file
and returns a JSON-able :class:`FddbResult` (the merged ROC and the TPR at a false-positive
budget); ``dsfd eval fddb`` and the HTML report both call it, and :func:`write_roc` writes the
official ``DiscROC``/``ContROC`` files. Modules: :mod:`~reports.fddb.inputs` (detections,
sizes, annotations), :mod:`~reports.fddb.overlap` (pixel-mask overlaps),
:mod:`~reports.fddb.hungarian` (the program's assignment solver), :mod:`~reports.fddb.roc`
(per-image entries and their merge), :mod:`~reports.fddb.roc_files`,
:mod:`~reports.fddb.ellipse` (rectangle -> ellipse regressors),
:mod:`~reports.fddb.evaluate` and :mod:`~reports.fddb.bootstrap` (confidence intervals).
"""

from reports.fddb.bootstrap import (
    FddbBootstrapState,
    bootstrap_interval,
    bootstrap_state,
    paired_bootstrap,
)
from reports.fddb.ellipse import (
    S3FD_REGRESSOR,
    EllipseRegressor,
    fit_ellipse_regressor,
    load_rect_to_ellipse,
    matched_pairs,
)
from reports.fddb.evaluate import FddbResult, evaluate_fddb, evaluate_run
from reports.fddb.inputs import detections_from_run_dir
from reports.fddb.roc import DEFAULT_FP_BUDGET, FddbRoc, ImageRoc, tpr_at_fp
from reports.fddb.roc_files import read_roc_file, roc_lines, write_roc

__all__ = [
    "DEFAULT_FP_BUDGET",
    "S3FD_REGRESSOR",
    "EllipseRegressor",
    "FddbBootstrapState",
    "FddbResult",
    "FddbRoc",
    "ImageRoc",
    "bootstrap_interval",
    "bootstrap_state",
    "detections_from_run_dir",
    "evaluate_fddb",
    "evaluate_run",
    "fit_ellipse_regressor",
    "load_rect_to_ellipse",
    "matched_pairs",
    "paired_bootstrap",
    "read_roc_file",
    "roc_lines",
    "tpr_at_fp",
    "write_roc",
]
