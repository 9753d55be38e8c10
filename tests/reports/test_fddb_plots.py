"""ROC figures: PNG and PDF written, helpers reuse a given axis."""

from __future__ import annotations

from pathlib import Path

from pipeline.datasets.fddb import read_detections, read_ellipse_list, read_image_sizes_tsv
from reports.fddb import evaluate_fddb, tpr_at_fp
from reports.figures.fddb_roc import plot_fddb_roc, save_fddb_roc_figures

CASE = Path("oracle_public/cases/fddb_pub")


def test_figures_written_and_axis_reused(data_dir: Path, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = data_dir / CASE
    annotations = read_ellipse_list(case / "ellipseList.txt")
    sizes = read_image_sizes_tsv(case / "sizes.tsv")
    curves = {
        "rect": evaluate_fddb(
            annotations, read_detections(case / "dets_rect.txt", "rect"), sizes, "rect"
        ),
        "ellipse": evaluate_fddb(
            annotations, read_detections(case / "dets_ellipse.txt", "ellipse"), sizes, "ellipse"
        ),
    }
    paths = save_fddb_roc_figures(curves, tmp_path, fp_budget=50)
    assert sorted(p.name for p in paths) == sorted(
        f"fddb_{k}_roc.{e}" for k in ("disc", "cont") for e in ("png", "pdf")
    )
    assert all(p.stat().st_size > 2000 for p in paths)
    fig, ax = plt.subplots()
    fig2, ax2 = plot_fddb_roc(curves, "cont", ax=ax, fp_budget=50)
    assert ax2 is ax and fig2 is fig
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    ell = curves["ellipse"]
    assert labels[1] == f"ellipse ({tpr_at_fp(ell.tpr_cont, ell.fp, 50):.4f} @ 50 FP)"
    assert labels[1] == "ellipse (0.4887 @ 50 FP)"
    plt.close("all")
