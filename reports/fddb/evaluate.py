"""FDDB evaluation of a run: discrete and continuous ROC as the official FDDB program computes
them, and the TPR at a false-positive budget (no torch, no Ray).

:func:`evaluate_run` is the one entry point of the command line (``dsfd eval fddb``) and the
HTML report: it reads the detections (a run directory or a detection file), the annotations and
the image sizes (:mod:`reports.fddb.inputs`), converts rectangles to ellipses when asked
(:mod:`reports.fddb.ellipse`), evaluates every image and merges the per-image entries in list
order (:mod:`reports.fddb.roc`), and returns a JSON-able :class:`FddbResult`.
:func:`reports.fddb.roc_files.write_roc` writes the official ROC files from ``result.roc``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.datasets.fddb import DetFormat, FddbImage, check_same_images
from reports.fddb.ellipse import load_rect_to_ellipse
from reports.fddb.inputs import (
    Detections,
    Sizes,
    load_annotations,
    read_predictions,
    read_sizes,
    sizes_from_run_dir,
)
from reports.fddb.overlap import RegionKind
from reports.fddb.roc import (
    DEFAULT_FP_BUDGET,
    FddbRoc,
    ImageRoc,
    evaluate_image,
    merge_image_rocs,
    tpr_at_fp,
)

__all__ = ["FddbResult", "RectToEllipse", "evaluate_fddb", "evaluate_images", "evaluate_run"]

RectToEllipse = Callable[[np.ndarray], np.ndarray]


def evaluate_images(
    annotations: Sequence[FddbImage],
    detections: Detections,
    sizes: Sizes,
    det_kind: RegionKind,
    to_ellipse: RectToEllipse | None = None,
) -> tuple[list[ImageRoc], tuple[str, ...]]:
    """Each annotated image's own ROC entries (overlaps and the official matching), once.

    Takes the arguments of :func:`evaluate_fddb`. Returns the entries in list order and the
    annotated images absent from a ``detections`` mapping; :func:`evaluate_fddb` merges the
    entries, the bootstrap (:mod:`reports.fddb.bootstrap`) resamples them.
    """
    if not isinstance(detections, Mapping):
        check_same_images(annotations, detections, "detections")
    rocs = []
    missing = []
    for k, image in enumerate(annotations):
        if image.image_id not in sizes:
            raise ValueError(f"no image size for {image.image_id!r}")
        width, height = sizes[image.image_id]
        if isinstance(detections, Mapping):
            det = detections.get(image.image_id)
            if det is None:
                missing.append(image.image_id)
        else:
            det = detections[k]
        regions = det.regions if det is not None else np.zeros((0, 4))
        scores = det.scores if det is not None else np.zeros(0)
        kind = det_kind
        if to_ellipse is not None and det_kind == "rect":
            regions, kind = to_ellipse(np.asarray(regions).reshape(-1, 4)), "ellipse"
        rocs.append(evaluate_image(image.ellipses, regions, scores, kind, width, height))
    return rocs, tuple(missing)


def evaluate_fddb(
    annotations: Sequence[FddbImage],
    detections: Detections,
    sizes: Sizes,
    det_kind: RegionKind,
    to_ellipse: RectToEllipse | None = None,
) -> FddbRoc:
    """Evaluate detections on an annotated image list (the official program's computation).

    Args:
        annotations: the images in list order (e.g. folds 1..10 concatenated).
        detections: per image, in the same order (a detection file: names must match in
            order, as the official program demands), or a mapping image id -> detections
            (from a run directory; an image missing from it has no detections).
        sizes: image id -> (width, height) in pixels, for every annotated image.
        det_kind: "rect" (``x y w h``, ``-f 0``) or "ellipse" (``ra rb angle cx cy``, ``-f 1``).
        to_ellipse: optional map from float (K, 4) ``x y w h`` to float (K, 5) ellipses; when
            given, rectangle detections are converted and evaluated as ellipses.

    Returns:
        The merged ROC, with the annotated images absent from a ``detections`` mapping (a
        detection file lists every image, or is refused).
    """
    rocs, missing = evaluate_images(annotations, detections, sizes, det_kind, to_ellipse)
    return replace(merge_image_rocs(rocs), images_without_prediction=missing)


@dataclass(frozen=True, eq=False)
class FddbResult:
    """The ROC of a run and its TPR at the false-positive budget, with the settings used.

    Attributes:
        roc: the merged curve (what the official ROC files hold).
        num_images: annotated images evaluated.
        det_format: how the detections were read: ``rect`` or ``ellipse``.
        ellipse: the rectangle -> ellipse conversion: ``identity``, ``s3fd`` or a JSON file.
        fp_budget: the false-positive budget of the TPR.
        tpr_disc: discrete TPR at the budget (face-eval rule; NaN if no point is below it).
        tpr_cont: continuous TPR at the budget.
        image_ids: the annotated images evaluated, in list order.
        image_rocs: each image's own entries, in the same order (what the curve merges and
            the bootstrap resamples; not part of :meth:`to_json`).
    """

    roc: FddbRoc
    num_images: int
    det_format: str
    ellipse: str
    fp_budget: float
    tpr_disc: float
    tpr_cont: float
    image_ids: tuple[str, ...] = ()
    image_rocs: tuple[ImageRoc, ...] = ()

    @property
    def num_faces(self) -> int:
        """Annotated faces N."""
        return self.roc.num_faces

    @property
    def images_without_prediction(self) -> tuple[str, ...]:
        """Annotated images the predictions do not mention (their faces count as missed)."""
        return self.roc.images_without_prediction

    @property
    def num_images_without_prediction(self) -> int:
        """How many annotated images the predictions do not mention."""
        return self.roc.num_images_without_prediction

    def to_json(self, with_roc: bool = True) -> dict[str, Any]:
        """Settings, counts and TPRs (the core of ``PREFIXfddb.json``), and the curve's points
        (``roc``: thresholds, tp_cont, tp_disc, fp, ascending in threshold) when asked."""
        doc: dict[str, Any] = {
            "det_format": self.det_format,
            "ellipse": self.ellipse,
            "fp_budget": self.fp_budget,
            "num_images": self.num_images,
            "num_faces": self.num_faces,
            "num_images_without_prediction": self.num_images_without_prediction,
            "images_without_prediction": list(self.images_without_prediction),
            "num_points": int(len(self.roc.fp)),
            "tpr_disc": self.tpr_disc,
            "tpr_cont": self.tpr_cont,
        }
        if with_roc:
            doc["roc"] = {
                name: getattr(self.roc, name).tolist()
                for name in ("thresholds", "tp_cont", "tp_disc", "fp")
            }
        return doc


def evaluate_run(
    run: str | os.PathLike[str] | Detections,
    annotations: str | os.PathLike[str] | Sequence[FddbImage],
    *,
    sizes: str | os.PathLike[str] | Sizes | None = None,
    det_format: DetFormat = "rect",
    ellipse: str = "identity",
    fp_budget: float = DEFAULT_FP_BUDGET,
    image_ext: str = ".jpg",
) -> FddbResult:
    """Evaluate a run's detections on FDDB as the official program does.

    Args:
        run: a run directory, an official detection file, or detections already read
            (:mod:`reports.fddb.inputs`).
        annotations: the annotated images in list order, or an ellipse-list file, an
            ``FDDB-folds`` folder or an FDDB root (folds 1..10 in order).
        sizes: image id -> (width, height), an image folder (``DIR/<image_id><image_ext>``) or
            a size table TSV; None takes the sizes from the run directory's ``images`` table
            and evaluates only the annotated images the run read (a run over a subset is
            scored on that subset).
        det_format: ``rect`` (``x y w h``, ``-f 0``) or ``ellipse`` (``ra rb angle cx cy``).
        ellipse: rectangle -> ellipse conversion: ``identity`` (none), ``s3fd`` or a regressor
            JSON file (:func:`reports.fddb.ellipse.load_rect_to_ellipse`).
        fp_budget: the false-positive budget of the TPR (papers quote 1000).
        image_ext: the image extension under a ``sizes`` folder.

    Returns:
        The result; ``write_roc(prefix, result.roc)`` writes the official ROC files.

    Raises:
        ValueError: ``sizes`` is None but ``run`` is not a run directory; a conversion with
            ``det_format`` ``ellipse``; inputs that do not fit together (file and line, image).
        FileNotFoundError: a missing input, or an ``ellipse`` that is no known name or file.
    """
    images = load_annotations(annotations)
    if isinstance(run, str | os.PathLike):
        detections = read_predictions(run, det_format)
    else:
        detections = run
    image_sizes: Sizes
    if sizes is None:
        if not isinstance(run, str | os.PathLike):
            raise ValueError("sizes are needed unless run is a run directory")
        image_sizes = sizes_from_run_dir(run)
        images = [a for a in images if a.image_id in image_sizes]
    elif isinstance(sizes, str | os.PathLike):
        image_sizes = read_sizes(sizes, [a.image_id for a in images], image_ext)
    else:
        image_sizes = sizes
    to_ellipse = load_rect_to_ellipse(ellipse)
    if to_ellipse is not None and det_format != "rect":
        raise ValueError(f"ellipse {ellipse!r} converts rectangles: use det_format 'rect'")
    rocs, missing = evaluate_images(images, detections, image_sizes, det_format, to_ellipse)
    roc = replace(merge_image_rocs(rocs), images_without_prediction=missing)
    return FddbResult(
        roc=roc,
        num_images=len(images),
        det_format=det_format,
        ellipse=ellipse,
        fp_budget=fp_budget,
        tpr_disc=tpr_at_fp(roc.tpr_disc, roc.fp, fp_budget),
        tpr_cont=tpr_at_fp(roc.tpr_cont, roc.fp, fp_budget),
        image_ids=tuple(a.image_id for a in images),
        image_rocs=tuple(rocs),
    )
