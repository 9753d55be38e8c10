"""One self-contained HTML page (plus a Markdown summary) from run directories.

For each run directory the dataset recorded in its ``run.json`` decides what is computed, each
benchmark through its one evaluation entry point (:func:`reports.wider.evaluate_run`,
:func:`reports.fddb.evaluate_run`, shared with ``dsfd eval``):

- WIDER FACE layout (real or synthetic): AP per setting in both evaluator flavours (matlab and
  pyport; a pyport crash is shown as such), the PR curves, the per-attribute recall of the hard
  faces, and galleries of the worst false positives and misses. The ground truth is restricted
  to the images the run covered, so a run over a subset is scored on that subset.
- FDDB layout: discrete and continuous ROC (rectangles as they are, and through the S3FD
  rectangle-to-ellipse regressor), TPR at 1000 false positives; image sizes come from the run's
  images table.
- Every run, whatever its dataset (a labelled folder too): a summary with its images, errors,
  detections, the histogram of its scores and the list of images that could not be read.

A run directory may be a local folder or an object-storage URI (``s3://bucket/run``), read in
place through :class:`pipeline.rundir.RunDir`; the report folder is local.

Figures are written as PNG and PDF under ``REPORT_DIR/figures/`` and embedded in the page as
data URIs, so ``index.html`` works on its own, offline.
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth
from pipeline.rundir import RunDir
from reports.fddb import FddbResult
from reports.tables import RunBootstrap
from reports.wider import FLAVOURS, MATLAB, WiderResult

FP_BUDGET = 1000.0
FDDB_CONVERSIONS = (("rectangles", "identity"), ("S3FD ellipses", "s3fd"))  # label, --ellipse
SCORE_BINS = np.linspace(0.0, 1.0, 51)  # the score histogram's bin edges
MAX_ERRORS_SHOWN = 50


@dataclass
class RunReport:
    """What the report shows of one run directory."""

    name: str
    run_dir: Path | str  # a local folder, or an object-storage URI (``s3://bucket/run``)
    run_json: dict[str, Any]
    kind: str  # "wider" | "fddb" | "other"
    num_images: int = 0
    num_errors: int = 0
    num_detections: int = 0
    num_annotated: int | None = None  # images of the benchmark split (the run may cover fewer)
    score_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(SCORE_BINS) - 1,
                                                                        np.int64))
    errors: list[tuple[str, str]] = field(default_factory=list)  # (image id, reason)
    wider: dict[str, WiderResult] = field(default_factory=dict)  # flavour name -> result
    wider_errors: dict[str, str] = field(default_factory=dict)  # flavour name -> port crash
    attributes: dict[str, Any] | None = None
    fddb: dict[str, FddbResult] = field(default_factory=dict)  # conversion label -> result
    gt: WiderGroundTruth | None = field(default=None, repr=False)
    # flavour name -> per-image bootstrap tables, filled by the evaluation itself when asked
    wider_boot: dict[str, Any] = field(default_factory=dict, repr=False)


def _wider_sections(report: RunReport, dataset: dict[str, Any], run_ids: set[str],
                    bootstrap: bool = False) -> None:
    """AP in both flavours on the images the run covered, the attribute breakdown (matlab);
    with ``bootstrap``, the matlab flavour's per-image tables kept on the way."""
    from pipeline.datasets.wider import load_wider_gt_dir
    from reports.wider import WiderPortCrash, evaluate_run
    from reports.wider.bootstrap import BootstrapCollector

    gt_dir = dataset.get("eval_ground_truth")
    if not gt_dir:
        return
    full = load_wider_gt_dir(gt_dir)
    report.num_annotated = len(full.images)
    gt = WiderGroundTruth(
        images=tuple(img for img in full if img.image_id in run_ids),
        events=full.events, settings=full.settings, source=full.source)
    report.gt = gt
    for flavour in FLAVOURS:
        collector = BootstrapCollector(len(gt), flavour) if bootstrap and flavour is MATLAB \
            else None
        try:
            result = evaluate_run(report.run_dir, gt, flavour, attributes=flavour is MATLAB,
                                  per_image=collector.add if collector is not None else None)
        except WiderPortCrash as exc:
            report.wider_errors[flavour.name] = str(exc)
            continue
        report.wider[flavour.name] = result
        if collector is not None:
            report.wider_boot[flavour.name] = collector.state()
        if result.attributes is not None:
            report.attributes = result.attributes


def _fddb_sections(report: RunReport, dataset: dict[str, Any]) -> None:
    """ROC and TPR at :data:`FP_BUDGET` per conversion, on the images the run read."""
    from pipeline.datasets.fddb import FddbDataset
    from reports.fddb import evaluate_run

    root = dataset.get("root")
    if not root:
        return
    every = FddbDataset(root).annotations()
    report.num_annotated = len(every)
    for label, spec in FDDB_CONVERSIONS:
        report.fddb[label] = evaluate_run(report.run_dir, every, ellipse=spec,
                                          fp_budget=FP_BUDGET)


def summarize_run(run_dir: str | os.PathLike[str], name: str | None = None, *,
                  bootstrap: bool = False) -> RunReport:
    """Evaluate one run directory as its recorded dataset asks (see the module docstring);
    ``bootstrap``: also keep the per-image tables a bootstrap resamples."""
    run = RunDir.open(run_dir)  # a local folder or an object-storage prefix
    root = run.root if isinstance(run.root, Path) else str(run.root)
    run_json = dict(run.record or {})
    dataset = run_json.get("config", {}).get("dataset", {})
    kind = str(dataset.get("dataset", "other"))
    images = run.images().to_pandas()
    failed = images[images["status"] != "ok"]
    report = RunReport(name=name or run.root.name, run_dir=root, run_json=run_json,
                       kind=kind if kind in ("wider", "fddb") else "other",
                       num_images=len(images), num_errors=len(failed),
                       errors=list(zip(failed["image_id"], failed["error"].fillna(""),
                                       strict=True)))
    for table in run.iter_detections():
        scores = table.column("score").to_numpy()
        report.num_detections += len(scores)
        report.score_counts += np.histogram(np.clip(scores, 0.0, 1.0), SCORE_BINS)[0]
    if report.kind == "wider":
        _wider_sections(report, dataset, set(images["image_id"]), bootstrap)
    elif report.kind == "fddb":
        _fddb_sections(report, dataset)
    return report


# ----------------------------------------------------------------------------- figures


def _figures(reports: list[RunReport], fig_dir: Path,
             boots: list[RunBootstrap] | None = None) -> dict[str, list[Path]]:
    """Write every figure; returns section -> PNG paths (PDFs are written beside them). With
    ``boots``, the curves carry their runs' 95% pointwise bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reports.figures import save_figure
    from reports.figures.fddb_roc import save_fddb_roc_figures
    from reports.figures.gallery import draw_gallery, find_mistakes
    from reports.figures.score_histogram import plot_score_histograms
    from reports.figures.wider_pr import plot_wider_pr

    out: dict[str, list[Path]] = {"pr": [], "roc": [], "gallery": [], "scores": []}
    if any(r.num_detections for r in reports):
        fig, _ = plot_score_histograms({r.name: r.score_counts for r in reports}, SCORE_BINS)
        out["scores"].append(save_figure(fig, fig_dir / "score_histogram")[0])
        plt.close(fig)  # type: ignore[arg-type]
    for flavour in FLAVOURS:
        methods = {r.name: r.wider[flavour.name] for r in reports if flavour.name in r.wider}
        if methods:
            bands = ({r.name: b.wider_bands.get(flavour.name, {})
                      for r, b in zip(reports, boots, strict=True)} if boots else None)
            fig, _ = plot_wider_pr(methods, bands=bands)
            out["pr"].append(save_figure(fig, fig_dir / f"wider_pr_{flavour.name}")[0])
            plt.close(fig)  # type: ignore[arg-type]
    curves = {f"{r.name}: {label}": res.roc for r in reports for label, res in r.fddb.items()}
    if curves:
        roc_bands = ({f"{r.name}: {label}": band for r, b in zip(reports, boots, strict=True)
                      for label, band in b.fddb_bands.items()} if boots else None)
        written = save_fddb_roc_figures(curves, fig_dir, fp_budget=FP_BUDGET, bands=roc_bands)
        out["roc"] = [p for p in written if p.suffix == ".png"]
    for k, r in enumerate(reports):
        if r.gt is None:
            continue
        fps, misses = find_mistakes(r.run_dir, r.gt)
        for kind, items in (("false_positives", fps), ("misses", misses)):
            path = draw_gallery(items, r.gt, fig_dir / f"gallery_{k}_{kind}.png")
            if path is not None:
                out["gallery"].append(path)
    return out


def _anchor_figures(anchors_dir: Path | None) -> tuple[list[Path], dict[str, Any] | None]:
    if anchors_dir is None:
        return [], None
    summary_path = anchors_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    return sorted(anchors_dir.glob("*.png")), summary


# ----------------------------------------------------------------------------- rendering


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def ap_rows(reports: list[RunReport]) -> list[list[str]]:
    """Rows ``[run, images, flavour, easy, medium, hard, no prediction]`` of the AP table
    (errors spelled out). Each run is scored on the images it covered, so runs over different
    subsets are not comparable; the image count says so. The last column counts the annotated
    images without a prediction (their faces count as missed)."""
    rows = []
    for r in reports:
        for flavour in (f.name for f in FLAVOURS):
            if flavour in r.wider:
                res = r.wider[flavour]
                rows.append([r.name, str(res.num_images), flavour,
                             *(_fmt(res.ap[s]) for s in SETTINGS),
                             str(res.num_images_without_prediction)])
            elif flavour in r.wider_errors:
                rows.append([r.name, str(r.num_images), flavour, "port crashes", "", "", ""])
    return rows


def fddb_rows(reports: list[RunReport]) -> list[list[str]]:
    """Rows ``[run, conversion, TPR disc @1000 FP, TPR cont @1000 FP, no prediction]``; the
    last column counts the annotated images without a prediction (missed faces)."""
    return [[r.name, label, _fmt(res.tpr_disc), _fmt(res.tpr_cont),
             str(res.num_images_without_prediction)]
            for r in reports for label, res in r.fddb.items()]


NO_PREDICTION_NOTE = ("no prediction: annotated images the run has no prediction for; their "
                      "faces count as missed.")


def render_markdown(reports: list[RunReport], trainings: list[Any] | None = None) -> str:
    """A terminal- and CI-log-friendly summary."""
    from reports.training_report import training_markdown

    lines = ["# DSFD report", "", *training_markdown(trainings or [])]
    rows = ap_rows(reports)
    if rows:
        lines += ["## WIDER FACE AP", "",
                  "| run | images | flavour | easy | medium | hard | no prediction |",
                  "|---|---|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows),
                  "", NO_PREDICTION_NOTE, ""]
    rows = fddb_rows(reports)
    if rows:
        lines += ["## FDDB (TPR at 1000 false positives)", "",
                  "| run | detections as | discrete | continuous | no prediction |",
                  "|---|---|---|---|---|", *("| " + " | ".join(r) + " |" for r in rows), "",
                  NO_PREDICTION_NOTE, ""]
    if reports:
        lines += ["## Runs", "", "| " + " | ".join(RUN_HEADER) + " |",
                  "|" + "---|" * len(RUN_HEADER), *("| " + " | ".join(r) + " |"
                                                    for r in run_rows(reports))]
    for r in reports:
        if r.errors:
            lines += ["", f"### {r.name}: images that could not be read", "",
                      *(f"- `{i}`: {e}" for i, e in r.errors[:MAX_ERRORS_SHOWN])]
            if len(r.errors) > MAX_ERRORS_SHOWN:
                lines.append(f"- and {len(r.errors) - MAX_ERRORS_SHOWN} more")
    return "\n".join(lines) + "\n"


RUN_HEADER = ["run", "dataset", "model", "images", "of the split", "errors", "detections",
              "median score", "images/s"]


def _median_score(counts: np.ndarray) -> float | None:
    total = int(counts.sum())
    if total == 0:
        return None
    k = int(np.searchsorted(np.cumsum(counts), (total + 1) / 2))
    return float((SCORE_BINS[k] + SCORE_BINS[k + 1]) / 2)


def run_rows(reports: list[RunReport]) -> list[list[str]]:
    """One summary row per run (:data:`RUN_HEADER`): what it covered, its errors, its
    detections and the median score (to the histogram's bin), and its measured speed."""
    rows = []
    for r in reports:
        timing = r.run_json.get("timing", {})
        rows.append([r.name, str(r.run_json.get("dataset_spec", r.kind)),
                     str(r.run_json.get("model", {}).get("name", "?")), str(r.num_images),
                     "" if r.num_annotated is None else str(r.num_annotated),
                     str(r.num_errors), str(r.num_detections),
                     _fmt(_median_score(r.score_counts), 2),
                     _fmt(timing.get("images_per_second"), 2)])
    return rows


def _errors_html(r: RunReport) -> str:
    if not r.errors:
        return ""
    rows = [[i, e] for i, e in r.errors[:MAX_ERRORS_SHOWN]]
    more = len(r.errors) - MAX_ERRORS_SHOWN
    return (f"<h3>{html.escape(r.name)}: images that could not be read</h3>"
            + _table(["image", "reason"], rows)
            + (f"<p>and {more} more (the run's images table lists them all).</p>"
               if more > 0 else ""))


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _attribute_html(r: RunReport) -> str:
    if not r.attributes:
        return ""
    a = r.attributes
    rows = [[attr, label, str(g["num_faces"]), str(g["num_found"]), _fmt(g["recall"])]
            for attr, groups in a["groups"].items() for label, g in groups.items()]
    return (f"<h3>{html.escape(r.name)}</h3><p>Recall of the {a['setting']} faces at the "
            f"threshold where precision first drops below {a['target_precision']} "
            f"(flavour {a['flavour']}).</p>"
            + _table(["attribute", "value", "faces", "found", "recall"], rows))


def _provenance_html(r: RunReport) -> str:
    rj = r.run_json
    model = rj.get("model", {})
    rows = [["dataset", str(rj.get("dataset_spec", ""))],
            ["model", str(model.get("name", ""))],
            ["model spec", str(model.get("spec", ""))],
            ["weights sha256", str(model.get("checksum", ""))],
            ["images (errors)", f"{r.num_images} ({r.num_errors})"]]
    timing = rj.get("timing", {})
    for key in ("started", "finished", "seconds", "images_per_second"):
        if key in timing:
            rows.append([f"timing: {key}", str(timing[key])])
    for key, value in sorted(rj.get("versions", {}).items()):
        rows.append([f"version: {key}", str(value)])
    config = html.escape(json.dumps(rj.get("config", {}), indent=1, sort_keys=True))
    return (f"<h3>{html.escape(r.name)}</h3>" + _table(["", ""], rows)
            + f"<details><summary>config</summary><pre>{config}</pre></details>")


CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#111}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f3f4f6}figure{margin:1em 0}img{max-width:100%}
figcaption{color:#555;font-size:.9em}pre{font-size:.8em;background:#f9fafb;padding:.5em}"""


def _anchor_summary_html(summary: dict[str, Any]) -> str:
    """Per augmentation policy: faces, mean/median matched anchors, median face scale."""
    rows = []
    for policy, p in summary.get("policies", {}).items():
        rows.append([policy, str(p.get("num_faces", "")), _fmt(p.get("mean_matched"), 3),
                     _fmt(p.get("median_matched"), 1), _fmt(p.get("median_face_scale"), 1),
                     _fmt(p.get("share_anchor_sampled_faces"), 3)])
    note = summary.get("image_size_assumption")
    text = (f"<p>Dataset {html.escape(str(summary.get('dataset', '')))}"
            + (f"; {html.escape(str(note))}" if note else "") + ".</p>")
    return text + _table(["policy", "faces", "mean matched anchors", "median matched",
                          "median face scale (px)", "share from anchor sampling"], rows)


# Records on <body> how many figures the browser decoded (data-figures) and how many failed
# (data-broken), so a headless browser test can check that every figure shows.
LOAD_CHECK = """<script>window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.dataset.figures = imgs.length;
  document.body.dataset.broken = imgs.filter(function (i) {
    return !i.complete || i.naturalWidth === 0; }).length;
});</script>"""


def _training_html(trainings: list[Any], figures: dict[str, list[Path]]) -> list[str]:
    from reports.training_report import TRAINING_HEADER, config_html, training_rows

    if not trainings:
        return []
    return ["<h2>Training</h2>", _table(TRAINING_HEADER, training_rows(trainings)),
            *(_img(p, f"training curves: {p.stem}") for p in figures.get("training", [])),
            *(config_html(t) for t in trainings)]


def render_html(reports: list[RunReport], figures: dict[str, list[Path]],
                anchor_pngs: list[Path], anchor_summary: dict[str, Any] | None,
                trainings: list[Any] | None = None, comparison_html: str = "") -> str:
    """The page (figures embedded as data URIs)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>DSFD report</title><style>{CSS}</style></head><body><h1>DSFD report</h1>",
             *_training_html(trainings or [], figures)]
    if reports:
        parts += ["<h2>Runs</h2>", _table(RUN_HEADER, run_rows(reports))]
    parts.append(comparison_html)
    parts += [_img(p, "accuracy against speed") for p in figures.get("speed", [])]
    parts += [_img(p, "score histogram") for p in figures.get("scores", [])]
    parts += [_errors_html(r) for r in reports]
    rows = ap_rows(reports)
    if rows:
        parts += ["<h2>WIDER FACE AP</h2>",
                  _table(["run", "images", "flavour", "easy", "medium", "hard", "no prediction"],
                         rows), f"<p>{html.escape(NO_PREDICTION_NOTE)}</p>"]
        for r in reports:
            for flavour, msg in r.wider_errors.items():
                parts.append(f"<p><b>{html.escape(r.name)}, {flavour}</b>: "
                             f"{html.escape(msg)}</p>")
        parts += [_img(p, f"PR curves ({p.stem.rsplit('_', 1)[-1]} flavour)")
                  for p in figures["pr"]]
    rows = fddb_rows(reports)
    if rows:
        parts += ["<h2>FDDB</h2>",
                  _table(["run", "detections as", "TPR @1000 FP (discrete)",
                          "TPR @1000 FP (continuous)", "no prediction"], rows),
                  f"<p>{html.escape(NO_PREDICTION_NOTE)}</p>"]
        parts += [_img(p, p.stem.replace("_", " ")) for p in figures["roc"]]
    attrs = "".join(_attribute_html(r) for r in reports)
    if attrs:
        parts += ["<h2>Recall by attribute</h2>", attrs]
    if anchor_pngs:
        parts.append("<h2>Matched anchors</h2>")
        if anchor_summary is not None:
            parts.append(_anchor_summary_html(anchor_summary))
        parts += [_img(p, p.stem.replace("_", " ")) for p in anchor_pngs]
    if figures["gallery"]:
        parts.append("<h2>Worst false positives and misses</h2><p>Red: the false positive or "
                     "the missed face; green: ground-truth faces.</p>")
        parts += [_img(p, p.stem.replace("_", " ")) for p in figures["gallery"]]
    parts += ["<h2>Provenance</h2>", *(_provenance_html(r) for r in reports), LOAD_CHECK,
              "</body></html>"]
    return "\n".join(parts)


def write_report(
    run_dirs: list[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    anchors_dir: str | os.PathLike[str] | None = None,
    names: list[str] | None = None,
    bootstrap: int = 0,
) -> tuple[Path, Path, list[RunReport]]:
    """Evaluate the runs and write ``index.html``, ``report.md`` and ``figures/``.

    Args:
        run_dirs: run directories, local or object-storage URIs (and ``dsfd train`` output
            folders, shown in a training section: curves, validation AP, best step, config),
            in this order.
        out_dir: the report folder (created).
        anchors_dir: an output folder of ``dsfd anchors`` to include, or None.
        names: display names (default: the folder names).
        bootstrap: replicates of the bootstrap (0: none): intervals in the tables (WIDER AP,
            FDDB TPR), 95% pointwise bands on the PR and ROC curves, paired differences of
            each run against the first when they share images.

    Returns:
        (html path, markdown path, the per-run reports).
    """
    from reports.training_report import is_training_dir, summarize_training, training_figure

    if not run_dirs:
        raise ValueError("the report needs at least one run directory")
    if names is not None and len(names) != len(run_dirs):
        raise ValueError(f"{len(names)} names for {len(run_dirs)} run directories")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"report output {out} exists and is not a folder")
    named = [(d, None if names is None else names[k]) for k, d in enumerate(run_dirs)]
    trainings = [summarize_training(d, n) for d, n in named if is_training_dir(d)]
    reports = [summarize_run(d, n, bootstrap=bootstrap > 0) for d, n in named
               if not is_training_dir(d)]
    out.mkdir(parents=True, exist_ok=True)  # only once every run has been read
    from reports.tables import run_bootstraps, write_comparison

    boots = run_bootstraps(reports, bootstrap) if bootstrap else None
    figures = _figures(reports, out / "figures", boots)
    comparison = write_comparison(reports, out, bootstrap=bootstrap, boots=boots)
    figures["speed"] = [] if comparison.speed_png is None else [comparison.speed_png]
    figures["training"] = [p for k, t in enumerate(trainings)
                           if (p := training_figure(t, out / "figures", k)) is not None]
    anchor_pngs, anchor_summary = _anchor_figures(Path(anchors_dir) if anchors_dir else None)
    html_path, md_path = out / "index.html", out / "report.md"
    html_path.write_text(render_html(reports, figures, anchor_pngs, anchor_summary, trainings,
                                     comparison_html=comparison.html()))
    md_path.write_text(render_markdown(reports, trainings) + comparison.markdown())
    return html_path, md_path, reports
