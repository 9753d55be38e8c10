"""Figures and summary of the matched-anchor table (``dsfd anchors``): the paper's Fig. 4/5.

Reads the per-face table written by ``dsfd anchors`` (columns ``policy``, ``face_scale``,
``num_matched``, ...); numpy, pandas and matplotlib only.

* Fig. 4 (:func:`plot_face_scales`): how many faces fall at each scale after augmentation, one
  line per policy, anchor sizes marked.
* Fig. 5 (:func:`plot_matched_by_scale`): mean number of matched anchors per face as a function
  of the face scale, one line per policy (SSD blue, IAM red as in the paper).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Face-scale bins: a quarter octave wide, from 4 to 1024 pixels.
SCALE_BINS: np.ndarray = np.geomspace(4.0, 1024.0, 33)
POLICY_COLOURS = {"ssd": "tab:blue", "iam": "tab:red"}
POLICY_LABELS = {"ssd": "SSD-style augmentation", "iam": "IAM (data-anchor-sampling 2/5)"}
REQUIRED_COLUMNS = ("policy", "face_scale", "num_matched")


def _check(table: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"anchor table lacks columns {missing}; has {list(table.columns)}")


def summarize(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per policy: faces, samples, mean/median matched anchors, share of faces with 0 or 1.

    Args:
        table: the per-face table.

    Returns:
        ``{policy: {"num_faces": int, "mean_matched": float, ...}}``.
    """
    _check(table)
    out: dict[str, dict[str, Any]] = {}
    for policy, group in table.groupby("policy", sort=False):
        matched = group["num_matched"].to_numpy()
        entry: dict[str, Any] = {
            "num_faces": int(len(group)),
            "mean_matched": float(matched.mean()) if len(matched) else float("nan"),
            "median_matched": float(np.median(matched)) if len(matched) else float("nan"),
            "share_matched_le_1": float((matched <= 1).mean()) if len(matched) else float("nan"),
            "median_face_scale": float(group["face_scale"].median()),
        }
        if "sample" in group.columns:
            entry["num_samples"] = int(group["sample"].nunique())
        if "mode" in group.columns:
            entry["share_anchor_sampled_faces"] = float((group["mode"] == "anchor").mean())
        out[str(policy)] = entry
    return out


def binned(table: pd.DataFrame, bins: np.ndarray = SCALE_BINS) -> pd.DataFrame:
    """Per policy and scale bin: face count and mean matched anchors.

    Returns:
        Columns ``policy, bin_lo, bin_hi, bin_centre, num_faces, mean_matched`` (bins with no
        face have ``mean_matched`` NaN); faces outside ``bins`` are left out.
    """
    _check(table)
    rows = []
    for policy, group in table.groupby("policy", sort=False):
        index = np.digitize(group["face_scale"].to_numpy(), bins) - 1  # bin of each face
        matched = group["num_matched"].to_numpy()
        for k in range(len(bins) - 1):
            sel = index == k
            rows.append(
                {
                    "policy": policy,
                    "bin_lo": bins[k],
                    "bin_hi": bins[k + 1],
                    "bin_centre": float(np.sqrt(bins[k] * bins[k + 1])),
                    "num_faces": int(sel.sum()),
                    "mean_matched": float(matched[sel].mean()) if sel.any() else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def _axes(ax: Any) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        return fig, ax
    return ax.figure, ax


def plot_face_scales(
    table: pd.DataFrame, ax: Any = None, anchor_sizes: Sequence[float] = (16, 32, 64, 128, 256, 512)
) -> tuple[Any, Any]:
    """Fig. 4: number of faces per face scale after augmentation, one line per policy."""
    fig, ax = _axes(ax)
    data = binned(table)
    for policy, group in data.groupby("policy", sort=False):
        ax.step(
            group["bin_centre"],
            group["num_faces"],
            where="mid",
            color=POLICY_COLOURS.get(str(policy)),
            label=POLICY_LABELS.get(str(policy), policy),
        )
    for size in anchor_sizes:
        ax.axvline(size, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("face scale sqrt(w*h) after augmentation [px]")
    ax.set_ylabel("number of faces")
    ax.set_title("Face scales after augmentation (grey: anchor sizes)")
    ax.legend(fontsize=8)
    return fig, ax


def plot_matched_by_scale(table: pd.DataFrame, ax: Any = None) -> tuple[Any, Any]:
    """Fig. 5: mean matched anchors per face by face scale, one line per policy."""
    fig, ax = _axes(ax)
    data = binned(table)
    means = summarize(table)
    for policy, group in data.groupby("policy", sort=False):
        label = POLICY_LABELS.get(str(policy), str(policy))
        label += f" (mean {means[str(policy)]['mean_matched']:.2f})"
        ax.plot(
            group["bin_centre"],
            group["mean_matched"],
            marker=".",
            color=POLICY_COLOURS.get(str(policy)),
            label=label,
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("face scale sqrt(w*h) after augmentation [px]")
    ax.set_ylabel("matched anchors per face")
    ax.set_title("Anchors matched per face")
    ax.legend(fontsize=8)
    return fig, ax


def write_figures(
    table: pd.DataFrame, out_dir: str | os.PathLike[str], note: str = ""
) -> list[Path]:
    """Write ``face_scales.{png,pdf}`` and ``matched_anchors.{png,pdf}`` into ``out_dir``.

    Args:
        table: the per-face table.
        out_dir: existing or new folder.
        note: a line printed under each figure (e.g. the assumed image size).

    Returns:
        The written paths.
    """
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in (
        ("face_scales", plot_face_scales),
        ("matched_anchors", plot_matched_by_scale),
    ):
        fig, _ = plot(table)
        if note:
            fig.text(0.01, 0.01, "\n".join(textwrap.wrap(note, 140)), fontsize=6, color="0.3")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        for ext in ("png", "pdf"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=150)
            written.append(path)
        plt.close(fig)
    return written
