"""The result of a WIDER FACE evaluation and its JSON form (``dsfd eval wider --json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["WiderResult", "result_from_json"]


def _json_float(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


@dataclass(frozen=True)
class WiderResult:
    """AP per setting and the PR curves (thresholds 0.999 .. 0).

    Attributes:
        flavour: the name of the flavour whose semantics produced it (``matlab``/``pyport``).
        ap: setting -> AP.
        pr: setting -> {"precision": (1000,) float64 (NaN = no proposal), "recall": (1000,)}.
        num_images: ground-truth images evaluated.
        num_detections: detections on them.
        messages: what the official tool would print (missing files, invalid formats).
        images_without_prediction: ground-truth images with no prediction file or run row
            (evaluated as images without detections: their faces are missed).
        warnings: inputs the tool accepts silently but that deserve a look (boxes of zero or
            negative width or height), one line per file.
        attributes: None, or the recall per attribute of the hard faces at an operating point
            (:func:`reports.wider.attributes.attribute_breakdown`, JSON-able).
        score_bounds: ``(lo, hi)``, the raw-score bounds of the normalisation ``(s - lo) /
            (hi - lo)`` that the curves' thresholds apply to, or None when unknown.
    """

    flavour: str
    ap: dict[str, float]
    pr: dict[str, dict[str, np.ndarray]]
    num_images: int
    num_detections: int
    messages: tuple[str, ...] = ()
    images_without_prediction: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    attributes: dict[str, Any] | None = None
    score_bounds: tuple[float, float] | None = None

    @property
    def num_images_without_prediction(self) -> int:
        """How many ground-truth images have no prediction file or run row."""
        return len(self.images_without_prediction)

    def to_json(self, with_pr: bool = True) -> dict[str, Any]:
        """The ``dsfd eval wider --json`` document (NaN written as null)."""
        doc: dict[str, Any] = {
            "flavour": self.flavour,
            "ap": {s: _json_float(v) for s, v in self.ap.items()},
        }
        if with_pr:
            doc["pr"] = {
                s: {k: [_json_float(x) for x in v.tolist()] for k, v in curves.items()}
                for s, curves in self.pr.items()
            }
        doc["num_images"] = self.num_images
        doc["num_detections"] = self.num_detections
        doc["messages"] = list(self.messages)
        doc["num_images_without_prediction"] = self.num_images_without_prediction
        doc["images_without_prediction"] = list(self.images_without_prediction)
        doc["warnings"] = list(self.warnings)
        if with_pr and self.score_bounds is not None and self.pr:
            # the curves' point t is the normalised threshold 1 - (t+1)/n; "score" is the raw
            # detector score it stands for, lo + threshold * (hi - lo)
            lo, hi = self.score_bounds
            n = len(next(iter(self.pr.values()))["precision"])
            normalised = 1.0 - np.arange(1, n + 1, dtype=np.float64) / n
            doc["score_bounds"] = [lo, hi]
            doc["thresholds"] = {"normalised": normalised.tolist(),
                                 "score": (lo + normalised * (hi - lo)).tolist()}
        if self.attributes is not None:
            doc["attributes"] = self.attributes
        return doc


def result_from_json(doc: Mapping[str, Any]) -> WiderResult:
    """Rebuild a :class:`WiderResult` from ``to_json`` output (null -> NaN)."""
    pr = {
        s: {
            k: np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
            for k, v in curves.items()
        }
        for s, curves in doc.get("pr", {}).items()
    }
    ap = {s: float("nan") if v is None else float(v) for s, v in doc["ap"].items()}
    return WiderResult(
        flavour=str(doc.get("flavour", "matlab")),
        ap=ap,
        pr=pr,
        num_images=int(doc.get("num_images", 0)),
        num_detections=int(doc.get("num_detections", 0)),
        messages=tuple(doc.get("messages", ())),
        images_without_prediction=tuple(doc.get("images_without_prediction", ())),
        warnings=tuple(doc.get("warnings", ())),
        score_bounds=(tuple(float(x) for x in doc["score_bounds"])  # type: ignore[arg-type]
                      if doc.get("score_bounds") else None),
        attributes=doc.get("attributes"),
    )
