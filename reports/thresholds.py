"""A score threshold chosen from a measured precision-recall curve (numpy only).

``dsfd label --threshold-from EVAL.json --precision 0.95`` (or ``--recall 0.8``) reads the PR
curve that ``dsfd eval wider --json`` wrote for a labelled validation run of the same model and
picks the raw detector score to export at:

- ``precision=P``: the lowest threshold whose precision is at least ``P`` (the most faces at
  that precision; precision is not monotone in the threshold, so every point is looked at).
- ``recall=R``: the highest threshold whose recall is at least ``R`` (the fewest false
  positives at that recall).

The curve's points are WIDER's 1000 thresholds on scores normalised over the whole set,
``(s - lo) / (hi - lo)``; the JSON records ``lo`` and ``hi`` (``score_bounds``) and each point's
raw score (``thresholds.score``), which is what is returned. The subset defaults to ``hard``:
its ground truth holds every face the others hold and more, so a box on a small face counts
as a true positive rather than being ignored, and its precision is the closest to the
precision of labels written on arbitrary photographs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SUBSETS = ("easy", "medium", "hard")
DEFAULT_SUBSET = "hard"


@dataclass(frozen=True)
class ChosenThreshold:
    """A score threshold and where it came from (JSON-able with :meth:`to_json`).

    Attributes:
        score: the raw detector score to keep boxes at (``score >= threshold``).
        normalised: the curve's threshold on normalised scores.
        precision: the curve's precision at that point.
        recall: the curve's recall at that point.
        subset: ``easy``, ``medium`` or ``hard``.
        target: ``precision`` or ``recall``.
        target_value: the value asked for.
        source: the evaluation JSON file.
        sha256: SHA-256 of that file.
        flavour: the evaluation's flavour (``matlab`` or ``pyport``).
    """

    score: float
    normalised: float
    precision: float
    recall: float
    subset: str
    target: str
    target_value: float
    source: str
    sha256: str
    flavour: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (f"score >= {self.score:.6g} ({self.subset} subset: precision "
                f"{self.precision:.4f}, recall {self.recall:.4f}; target {self.target} "
                f"{self.target_value:g}; from {self.source})")


def _floats(values: Any, where: str) -> list[float]:
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise ValueError(f"{where}: expected a list of numbers")
    return [math.nan if v is None else float(v) for v in values]


def choose_threshold(doc: Mapping[str, Any], *, precision: float | None = None,
                     recall: float | None = None, subset: str = DEFAULT_SUBSET,
                     source: str = "", sha256: str = "") -> ChosenThreshold:
    """Pick the score threshold reaching a precision or a recall on a PR curve.

    Args:
        doc: a ``dsfd eval wider --json`` document (with ``pr``, ``thresholds``).
        precision: the precision to reach (exactly one of ``precision`` and ``recall``).
        recall: the recall to reach.
        subset: ``easy``, ``medium`` or ``hard``.
        source, sha256: recorded in the result.

    Raises:
        ValueError: a target outside (0, 1], both or neither target, an unknown subset, a
            document without the curve or its thresholds, or a target the curve never
            reaches (the best it reaches is in the message).
    """
    if precision is not None and recall is None:
        target, value = "precision", precision
    elif recall is not None and precision is None:
        target, value = "recall", recall
    else:
        raise ValueError("give exactly one of a precision and a recall target")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{target} target must be in (0, 1], got {value:g}")
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {', '.join(SUBSETS)}, got {subset!r}")
    where = source or "evaluation"
    curve = (doc.get("pr") or {}).get(subset)
    if not isinstance(doc.get("thresholds"), Mapping) or curve is None:
        raise ValueError(f"{where}: no PR curve with score thresholds for the {subset} subset "
                         "(write it with a current `dsfd eval wider --pred RUN --json FILE`)")
    scores = _floats(doc["thresholds"].get("score"), f"{where}: thresholds.score")
    normalised = _floats(doc["thresholds"].get("normalised"), f"{where}: thresholds.normalised")
    prec = _floats(curve.get("precision"), f"{where}: pr.{subset}.precision")
    rec = _floats(curve.get("recall"), f"{where}: pr.{subset}.recall")
    if not len(scores) == len(normalised) == len(prec) == len(rec) > 0:
        raise ValueError(f"{where}: the curve and its thresholds differ in length")
    if not all(math.isfinite(s) for s in scores):
        raise ValueError(f"{where}: the evaluation saw no scored detection (no thresholds)")
    # points run from the highest threshold (index 0) to the lowest
    if target == "precision":
        hits = [i for i, p in enumerate(prec) if p == p and p >= value]
        index = max(hits) if hits else -1
        best = max(range(len(prec)), key=lambda i: -1.0 if prec[i] != prec[i] else prec[i])
        miss = f"best precision {prec[best]:.4f} at score {scores[best]:.6g}"
    else:
        hits = [i for i, r in enumerate(rec) if r == r and r >= value]
        index = min(hits) if hits else -1
        best = max(range(len(rec)), key=lambda i: -1.0 if rec[i] != rec[i] else rec[i])
        miss = f"highest recall {rec[best]:.4f}, at score {scores[best]:.6g}"
    if index < 0:
        raise ValueError(f"{where}: {target} {value:g} is never reached on the {subset} subset "
                         f"({miss}); ask for less or label with --min-score")
    return ChosenThreshold(score=scores[index], normalised=normalised[index],
                           precision=prec[index], recall=rec[index], subset=subset,
                           target=target, target_value=float(value), source=source,
                           sha256=sha256, flavour=str(doc.get("flavour", "")))


def threshold_from_file(path: str | os.PathLike[str], *, precision: float | None = None,
                        recall: float | None = None,
                        subset: str = DEFAULT_SUBSET) -> ChosenThreshold:
    """:func:`choose_threshold` on a ``dsfd eval wider --json`` file (its path and SHA-256
    recorded).

    Raises:
        FileNotFoundError: no such file. ValueError: not JSON, or as :func:`choose_threshold`.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    return threshold_from_json(raw, os.path.abspath(path), precision=precision, recall=recall,
                               subset=subset)


def threshold_from_json(raw: bytes, source: str, *, precision: float | None = None,
                        recall: float | None = None,
                        subset: str = DEFAULT_SUBSET) -> ChosenThreshold:
    """:func:`choose_threshold` on the bytes of a ``dsfd eval wider --json`` file read from
    ``source`` (a path or an object-storage URI, recorded with the bytes' SHA-256).

    Raises:
        ValueError: not JSON (naming ``source``), or as :func:`choose_threshold`.
    """
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    if not isinstance(doc, Mapping):
        raise ValueError(f"{source}: not a `dsfd eval wider --json` document")
    return choose_threshold(doc, precision=precision, recall=recall, subset=subset,
                            source=source, sha256=hashlib.sha256(raw).hexdigest())
