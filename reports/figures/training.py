"""Training curves of a ``dsfd train`` folder (its ``metrics.jsonl``): loss parts, learning
rate, images/s, and the validation AP (WIDER) or TPR (FDDB) with the best step marked;
matplotlib without pyplot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

LOSS_PARTS = ("loss", "first_conf", "first_box", "second_conf", "second_box")
VAL_SETTINGS = ("val_easy", "val_medium", "val_hard")  # WIDER AP (matlab flavour)
VAL_FDDB = ("val_fddb_discrete", "val_fddb_continuous")  # FDDB TPR at 1000 false positives


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(float(r["step"]), float(r[key])) for r in rows if key in r and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(rows: Sequence[dict[str, Any]], best_step: int | None = None,
                  title: str = "") -> tuple[Figure, Any]:
    """Four panels: loss parts (log scale), learning rate, images/s, validation AP (WIDER)
    or TPR (FDDB).

    Args:
        rows: ``metrics.jsonl`` entries in file order (loss lines and ``val_*`` lines).
        best_step: the step of ``best.pt``, marked on the AP panel.
        title: the figure's title.

    Returns:
        ``(fig, axes)``, axes a 2x2 array.
    """
    fig = Figure(figsize=(10, 7))
    axes = fig.subplots(2, 2)
    loss_ax, lr_ax, speed_ax, val_ax = axes.ravel()
    for key in LOSS_PARTS:
        steps, values = _series(rows, key)
        if steps:
            loss_ax.plot(steps, values, label=key, lw=1.5 if key == "loss" else 1.0)
    loss_ax.set_yscale("log")
    loss_ax.set_title("loss (both shots, conf and box)")
    loss_ax.legend(fontsize="small")
    for ax, key, label in ((lr_ax, "lr", "learning rate"),
                           (speed_ax, "images_per_s", "images/s")):
        steps, values = _series(rows, key)
        if steps:
            ax.plot(steps, values)
        ax.set_title(label)
    drawn: list[str] = []
    for key in VAL_SETTINGS + VAL_FDDB:
        steps, values = _series(rows, key)
        if steps:
            drawn.append(key)
            val_ax.plot(steps, values, marker="o", label=key.removeprefix("val_"))
    any_val = bool(drawn)
    if best_step is not None and any_val:
        val_ax.axvline(best_step, color="k", ls="--", lw=1, label=f"best.pt (step {best_step})")
    titles = ([ "validation AP (WIDER, matlab)"] if set(drawn) & set(VAL_SETTINGS) else []) + \
        (["validation TPR at 1000 FP (FDDB)"] if set(drawn) & set(VAL_FDDB) else [])
    val_ax.set_title("; ".join(titles) if titles else "no validation recorded")
    if any_val:
        val_ax.legend(fontsize="small")
    for ax in axes.ravel():
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes
