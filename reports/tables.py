"""Paper-ready comparison outputs of a report: one row per run, as CSV, LaTeX, Markdown, HTML.

From the per-run results :func:`reports.report.summarize_run` already computed (nothing is
evaluated twice), :func:`write_comparison` writes into the report folder:

- ``ap_table.csv`` / ``ap_table.tex``: WIDER FACE AP, one row per run, easy/medium/hard per
  evaluator flavour (matlab, pyport); with ``bootstrap`` replicates, the 95% percentile
  interval of each AP of the matlab flavour (:mod:`reports.wider.bootstrap`: images resampled,
  score normalisation held fixed; the point is the official value).
- ``fddb_table.csv`` / ``fddb_table.tex``: FDDB TPR at 1000 false positives, discrete and
  continuous, per rectangle-to-ellipse conversion.
- ``curves/pr_<flavour>_<setting>.csv`` (run, recall, precision) and
  ``curves/roc_<conversion>.csv`` (run, threshold, false positives, discrete and continuous
  TPR): the plotted curves, to redraw them elsewhere.
- ``speed.csv`` and ``figures/speed.png``/``.pdf``: hard AP (matlab) against the recorded
  images/s, with each run's hardware (:mod:`reports.figures.speed`).

The LaTeX is a booktabs ``tabular`` (``\\usepackage{booktabs}``), three decimals as the
official plots print them, the best value of each column in bold. Loads neither torch nor Ray.
"""

from __future__ import annotations

import csv
import html
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.datasets.wider import SETTINGS
from reports.wider import FLAVOURS, MATLAB

if TYPE_CHECKING:
    from reports.figures.speed import SpeedPoint
    from reports.report import RunReport

__all__ = ["Cell", "Comparison", "GroupedTable", "ap_table", "fddb_table", "speed_points",
           "table_csv", "table_html", "table_latex", "table_markdown",
           "write_comparison", "write_curves"]

Interval = tuple[float, float]
RunIntervals = dict[str, dict[str, Interval]]  # flavour name -> setting -> (lo, hi)
SPEED_SETTING = "hard"
FP_BUDGET_LABEL = "TPR at 1000 FP"


@dataclass(frozen=True)
class Cell:
    """One table entry: a value (None: not available), its interval, or a text instead."""

    value: float | None = None
    interval: Interval | None = None
    text: str = ""

    def formatted(self, digits: int) -> str:
        if self.text:
            return self.text
        if self.value is None or math.isnan(self.value):
            return "n/a"
        out = f"{self.value:.{digits}f}"
        if self.interval is not None:
            out += f" [{self.interval[0]:.{digits}f}, {self.interval[1]:.{digits}f}]"
        return out


@dataclass(frozen=True)
class GroupedTable:
    """Rows of runs under grouped columns (a flavour or conversion over its sub-columns).

    Attributes:
        groups: (group label, sub-column labels) in column order.
        rows: (run name, images evaluated, cells in column order).
        note: what the numbers are (caption).
    """

    groups: tuple[tuple[str, tuple[str, ...]], ...]
    rows: tuple[tuple[str, int, tuple[Cell, ...]], ...]
    note: str = ""

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(g, s) for g, subs in self.groups for s in subs]

    @property
    def has_intervals(self) -> bool:
        return any(c.interval is not None for _, _, cells in self.rows for c in cells)


# ----------------------------------------------------------------------------- intervals


@dataclass
class RunBootstrap:
    """One run's bootstrap: intervals and curve bands (WIDER matlab AP, FDDB TPR per
    conversion) and the per-image states they came from (for paired differences)."""

    wider_intervals: RunIntervals
    wider_bands: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    fddb_intervals: dict[str, dict[str, Interval]]
    fddb_bands: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]
    wider_states: dict[str, Any]
    fddb_states: dict[str, Any]


def run_bootstraps(reports: Sequence[RunReport], num_replicates: int, *, seed: int = 0,
                   level: float = 0.95) -> list[RunBootstrap]:
    """Each run's intervals and pointwise curve bands from ``num_replicates`` image
    resamplings (the same seed for every run, so two runs on the same images are paired).

    WIDER: the matlab flavour's per-image tables (kept by :func:`reports.report.summarize_run`
    with ``bootstrap``, else tabulated from the run once more), PR bands
    (:func:`reports.wider.bootstrap.pr_bands`); FDDB: the evaluation's own per-image entries
    (:func:`reports.fddb.bootstrap.bootstrap_state_from_result`), ROC bands
    (:func:`reports.fddb.bootstrap.roc_bands`).
    """
    from reports.fddb import bootstrap as fddb_bs
    from reports.wider import bootstrap_state, load_predictions
    from reports.wider.bootstrap import bootstrap_interval, pr_bands

    out = []
    for r in reports:
        boot = RunBootstrap({}, {}, {}, {}, {}, {})
        name = MATLAB.name
        if r.gt is not None and name in r.wider:
            state = r.wider_boot.get(name)
            if state is None:  # a report summarized without bootstrap: tabulate once more
                state = bootstrap_state(load_predictions(r.run_dir, r.gt, name), r.gt)
            boot.wider_states[name] = state
            boot.wider_intervals[name] = bootstrap_interval(state, num_replicates, seed=seed,
                                                            level=level)
            boot.wider_bands[name] = pr_bands(state, num_replicates, seed=seed, level=level)
        for label, res in r.fddb.items():
            fddb_state = fddb_bs.bootstrap_state_from_result(res)
            boot.fddb_states[label] = fddb_state
            boot.fddb_intervals[label] = fddb_bs.bootstrap_interval(
                fddb_state, num_replicates, seed=seed, level=level)
            boot.fddb_bands[label] = fddb_bs.roc_bands(fddb_state, num_replicates, seed=seed,
                                                       level=level)
        out.append(boot)
    return out


def paired_table(reports: Sequence[RunReport], boots: Sequence[RunBootstrap],
                 num_replicates: int, *, seed: int = 0,
                 level: float = 0.95) -> GroupedTable | None:
    """Paired bootstrap differences of each later run against the first (same images in the
    same order only): WIDER AP (matlab) per setting and FDDB TPR per conversion, each with
    its interval and two-sided p-value; None when no pair shares images."""
    from reports.fddb import bootstrap as fddb_bs
    from reports.wider.bootstrap import paired_bootstrap

    if len(reports) < 2:
        return None
    base, base_boot = reports[0], boots[0]
    labels = [label for label in base_boot.fddb_states]
    groups: list[tuple[str, tuple[str, ...]]] = [
        ("WIDER AP matlab", tuple(x for s in SETTINGS for x in (s, f"{s} p")))]
    groups += [(f"FDDB {label}", ("discrete", "discrete p", "continuous", "continuous p"))
               for label in labels]
    rows = []
    for r, boot in zip(reports[1:], boots[1:], strict=True):
        cells: list[Cell] = []
        shared = False
        a, b = base_boot.wider_states.get(MATLAB.name), boot.wider_states.get(MATLAB.name)
        if a is not None and b is not None and a.image_ids == b.image_ids:
            shared = True
            diff = paired_bootstrap(a, b, num_replicates, seed=seed, level=level)
            for s in SETTINGS:
                cells += [Cell(diff[s]["diff"], _finite(diff[s]["interval"])),
                          Cell(diff[s]["p_value"])]
        else:
            cells += [Cell(text="n/a")] * (2 * len(SETTINGS))
        for label in labels:
            fa, fb = base_boot.fddb_states.get(label), boot.fddb_states.get(label)
            if fa is not None and fb is not None and fa.image_ids == fb.image_ids:
                shared = True
                diff = fddb_bs.paired_bootstrap(fa, fb, num_replicates, seed=seed, level=level)
                for m in fddb_bs.METRICS:
                    cells += [Cell(diff[m]["diff"], _finite(diff[m]["interval"])),
                              Cell(diff[m]["p_value"])]
            else:
                cells += [Cell(text="n/a")] * 4
        if shared:
            rows.append((f"{base.name} - {r.name}", _num_images(r), tuple(cells)))
    if not rows:
        return None
    return GroupedTable(groups=tuple(groups), rows=tuple(rows),
                        note=f"paired bootstrap ({num_replicates} replicates): first run minus "
                             "each other run on the same images, [95% interval], p-value")


def _num_images(r: RunReport) -> int:
    res = next(iter(r.wider.values()), None) or next(iter(r.fddb.values()), None)
    return res.num_images if res is not None else r.num_images


# ----------------------------------------------------------------------------- tables


def ap_table(reports: Sequence[RunReport],
             intervals: Sequence[RunIntervals] | None = None) -> GroupedTable | None:
    """WIDER AP, one row per run with WIDER results (None when no run has any)."""
    names = [f.name for f in FLAVOURS]
    rows = []
    for k, r in enumerate(reports):
        if not r.wider and not r.wider_errors:
            continue
        iv = intervals[k] if intervals is not None else {}
        cells = []
        for flavour in names:
            for s in SETTINGS:
                if flavour in r.wider:
                    interval = _finite(iv.get(flavour, {}).get(s))
                    cells.append(Cell(r.wider[flavour].ap[s], interval))
                else:
                    cells.append(Cell(text="crash" if flavour in r.wider_errors else "n/a"))
        res = next(iter(r.wider.values()), None)
        rows.append((r.name, res.num_images if res is not None else r.num_images, tuple(cells)))
    if not rows:
        return None
    note = "WIDER FACE AP on the images each run covered"
    if intervals is not None and any(intervals):
        note += "; [95% bootstrap interval over images]"
    return GroupedTable(groups=tuple((f, SETTINGS) for f in names), rows=tuple(rows),
                        note=note)


def fddb_table(reports: Sequence[RunReport],
               boots: Sequence[RunBootstrap] | None = None) -> GroupedTable | None:
    """FDDB TPR at the false-positive budget, one row per run with FDDB results (with each
    run's bootstrap intervals when ``boots`` is given)."""
    labels: list[str] = []
    for r in reports:
        labels += [label for label in r.fddb if label not in labels]
    rows = []
    for k, r in enumerate(reports):
        if not r.fddb:
            continue
        cells = []
        for label in labels:
            res = r.fddb.get(label)
            iv = boots[k].fddb_intervals.get(label, {}) if boots is not None else {}
            cells += [Cell(None if res is None else res.tpr_disc, _finite(iv.get("tpr_disc"))),
                      Cell(None if res is None else res.tpr_cont, _finite(iv.get("tpr_cont")))]
        rows.append((r.name, next(iter(r.fddb.values())).num_images, tuple(cells)))
    if not rows:
        return None
    note = f"FDDB {FP_BUDGET_LABEL}"
    if boots is not None:
        note += "; [95% bootstrap interval over images]"
    return GroupedTable(groups=tuple((label, ("discrete", "continuous")) for label in labels),
                        rows=tuple(rows), note=note)


def table_csv(table: GroupedTable, path: str | os.PathLike[str]) -> Path:
    """Columns ``run, images, <group>_<sub>...`` (six decimals; empty when not available),
    each followed by ``_lo``/``_hi`` when the table has intervals."""
    path = Path(path)
    header = ["run", "images"]
    for g, s in table.columns:
        col = _slug(f"{g}_{s}")
        header += [col, f"{col}_lo", f"{col}_hi"] if table.has_intervals else [col]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for name, images, cells in table.rows:
            row = [name, str(images)]
            for c in cells:
                row.append(_number(c.value))
                if table.has_intervals:
                    lo, hi = c.interval if c.interval is not None else (None, None)
                    row += [_number(lo), _number(hi)]
            writer.writerow(row)
    return path


def table_latex(table: GroupedTable, caption_note: bool = True) -> str:
    """A booktabs ``tabular``: grouped header with ``\\cmidrule``, one row per run, three
    decimals, the best value of each column in bold, intervals in ``\\scriptsize``."""
    cols = table.columns
    best = [max((v for _, _, cells in table.rows if (v := cells[j].value) is not None
                 and not math.isnan(v)), default=None) for j in range(len(cols))]
    lines = ["% " + table.note if caption_note else "", "% requires \\usepackage{booktabs}",
             "\\begin{tabular}{lr" + "c" * len(cols) + "}", "\\toprule"]
    group_cells, rules, start = [], [], 3
    for g, subs in table.groups:
        group_cells.append(f"\\multicolumn{{{len(subs)}}}{{c}}{{{_latex(g)}}}")
        rules.append(f"\\cmidrule(lr){{{start}-{start + len(subs) - 1}}}")
        start += len(subs)
    lines += [" & ".join(["", "", *group_cells]) + " \\\\", " ".join(rules),
              " & ".join(["Method", "Images", *(_latex(s.capitalize()) for _, s in cols)])
              + " \\\\", "\\midrule"]
    for name, images, cells in table.rows:
        entries = [_latex(name), str(images)]
        for j, c in enumerate(cells):
            text = _latex(c.formatted(3).split(" [")[0])
            top = best[j]
            if c.value is not None and top is not None and round(c.value, 3) == round(top, 3):
                text = f"\\textbf{{{text}}}"
            if c.interval is not None:
                text += f" {{\\scriptsize[{c.interval[0]:.3f}, {c.interval[1]:.3f}]}}"
            entries.append(text)
        lines.append(" & ".join(entries) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(line for line in lines if line) + "\n"


def table_markdown(table: GroupedTable) -> str:
    """A Markdown table (four decimals, intervals in brackets) and its note."""
    header = ["run", "images", *(f"{g} {s}" for g, s in table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([name, str(images), *(c.formatted(4) for c in cells)]) + " |"
              for name, images, cells in table.rows]
    return "\n".join(lines) + f"\n\n{table.note}.\n"


def table_html(table: GroupedTable) -> str:
    """An HTML table with a grouped header row and its note."""
    top = "<th></th><th></th>" + "".join(
        f"<th colspan='{len(subs)}'>{html.escape(g)}</th>" for g, subs in table.groups)
    sub = "<th>run</th><th>images</th>" + "".join(
        f"<th>{html.escape(s)}</th>" for _, s in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(x)}</td>"
                         for x in [name, str(images), *(c.formatted(4) for c in cells)])
        + "</tr>" for name, images, cells in table.rows)
    return (f"<table><thead><tr>{top}</tr><tr>{sub}</tr></thead><tbody>{body}</tbody>"
            f"</table><p>{html.escape(table.note)}.</p>")


# ----------------------------------------------------------------------------- curves, speed


def write_curves(reports: Sequence[RunReport], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``pr_<flavour>_<setting>.csv`` (run, recall, precision; thresholds without a proposal
    left out, as plotted) and ``roc_<conversion>.csv`` (run, threshold, false_positives,
    tpr_discrete, tpr_continuous) into ``out_dir`` (created when there is a curve)."""
    out = Path(out_dir)
    written = []
    for flavour in (f.name for f in FLAVOURS):
        for s in SETTINGS:
            rows = []
            for r in reports:
                if flavour in r.wider:
                    curve = r.wider[flavour].pr[s]
                    keep = ~np.isnan(curve["precision"])
                    rows += [[r.name, _number(x), _number(y)] for x, y in
                             zip(curve["recall"][keep], curve["precision"][keep], strict=True)]
            if rows:
                written.append(_write_csv(out / f"pr_{flavour}_{s}.csv",
                                          ["run", "recall", "precision"], rows))
    labels = {label for r in reports for label in r.fddb}
    for label in sorted(labels):
        rows = []
        for r in reports:
            if label in r.fddb:
                roc = r.fddb[label].roc
                rows += [[r.name, _number(t), str(int(fp)), _number(d), _number(c)]
                         for t, fp, d, c in zip(roc.thresholds, roc.fp, roc.tpr_disc,
                                                roc.tpr_cont, strict=True)]
        written.append(_write_csv(out / f"roc_{_slug(label)}.csv",
                                  ["run", "threshold", "false_positives", "tpr_discrete",
                                   "tpr_continuous"], rows))
    return written


def speed_points(reports: Sequence[RunReport],
                 intervals: Sequence[RunIntervals] | None = None) -> list[SpeedPoint]:
    """Hard AP (matlab) and recorded images/s of each WIDER run that has both."""
    from reports.figures.speed import speed_point

    points = []
    for k, r in enumerate(reports):
        if MATLAB.name not in r.wider:
            continue
        iv = (intervals[k] if intervals is not None else {}).get(MATLAB.name, {})
        p = speed_point(r.name, r.run_json, r.wider[MATLAB.name].ap[SPEED_SETTING],
                        iv.get(SPEED_SETTING))
        if p is not None:
            points.append(p)
    return points


# ----------------------------------------------------------------------------- all of it


@dataclass(frozen=True)
class Comparison:
    """What :func:`write_comparison` computed and wrote.

    Attributes:
        ap: the WIDER AP table (None: no WIDER run).
        fddb: the FDDB table (None: no FDDB run).
        intervals: per run (aligned with the reports), flavour -> setting -> (lo, hi).
        files: every file written.
        speed_png: the accuracy/speed figure (PNG; a PDF beside it), None without points.
        paired: paired differences against the first run (:func:`paired_table`), or None.
    """

    ap: GroupedTable | None
    fddb: GroupedTable | None
    intervals: tuple[RunIntervals, ...]
    files: tuple[Path, ...]
    speed_png: Path | None
    paired: GroupedTable | None = None

    def markdown(self) -> str:
        """The comparison section of ``report.md`` (empty without tables)."""
        parts = []
        if self.ap is not None:
            parts += ["## Comparison: WIDER FACE AP", "", table_markdown(self.ap)]
        if self.fddb is not None:
            parts += [f"## Comparison: FDDB {FP_BUDGET_LABEL}", "", table_markdown(self.fddb)]
        if self.paired is not None:
            parts += ["## Paired differences", "", table_markdown(self.paired)]
        return "\n".join(parts)

    def html(self) -> str:
        """The comparison section of ``index.html`` (tables; the speed figure is
        :attr:`speed_png`, embedded by the page like every figure)."""
        parts = []
        if self.ap is not None:
            parts += ["<h2>Comparison: WIDER FACE AP</h2>", table_html(self.ap)]
        if self.fddb is not None:
            parts += [f"<h2>Comparison: FDDB {FP_BUDGET_LABEL}</h2>", table_html(self.fddb)]
        if self.paired is not None:
            parts += ["<h2>Paired differences</h2>", table_html(self.paired)]
        return "\n".join(parts)


def write_comparison(reports: Sequence[RunReport], out_dir: str | os.PathLike[str], *,
                     bootstrap: int = 0, seed: int = 0, level: float = 0.95,
                     boots: Sequence[RunBootstrap] | None = None) -> Comparison:
    """Write the tables (CSV, LaTeX), the curves (CSV) and the speed figure and CSV.

    Args:
        reports: summarized runs, in report order.
        out_dir: the report folder (exists); curves go to ``curves/``, the figure to
            ``figures/``.
        bootstrap: replicates of the WIDER AP intervals (matlab flavour); 0: no intervals.
        seed: seed of the resampling.
        level: coverage of the intervals.
        boots: the runs' bootstrap (:func:`run_bootstraps`) when already computed.

    Raises:
        ValueError: ``bootstrap`` negative.
    """
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ValueError(f"bootstrap must be a replicate count >= 0, got {bootstrap!r}")
    out = Path(out_dir)
    if bootstrap and boots is None:
        boots = run_bootstraps(reports, bootstrap, seed=seed, level=level)
    intervals = ([b.wider_intervals for b in boots] if bootstrap and boots is not None
                 else [{} for _ in reports])
    files: list[Path] = []
    ap = ap_table(reports, intervals)
    fddb = fddb_table(reports, boots if bootstrap else None)
    paired = (paired_table(reports, boots, bootstrap, seed=seed, level=level)
              if bootstrap and boots is not None else None)
    for stem, table in (("ap_table", ap), ("fddb_table", fddb), ("paired_table", paired)):
        if table is not None:
            files.append(table_csv(table, out / f"{stem}.csv"))
            (tex := out / f"{stem}.tex").write_text(table_latex(table))
            files.append(tex)
    files += write_curves(reports, out / "curves")
    points = speed_points(reports, intervals)
    speed_png = None
    if points:
        files.append(_write_csv(out / "speed.csv", ["run", "hardware", "images_per_second",
                                                    "ap_hard_matlab", "ap_lo", "ap_hi"],
                                [[p.name, p.hardware, _number(p.images_per_second),
                                  _number(p.ap), *(_number(x) for x in p.interval or
                                                   (None, None))] for p in points]))
        from reports.figures import save_figure
        from reports.figures.speed import plot_speed

        fig, _ = plot_speed(points)
        saved = save_figure(fig, out / "figures" / "speed")
        files += saved
        speed_png = saved[0]
    return Comparison(ap=ap, fddb=fddb, intervals=tuple(intervals), files=tuple(files),
                      speed_png=speed_png, paired=paired)


# ----------------------------------------------------------------------------- helpers


def _finite(interval: Interval | None) -> Interval | None:
    """The interval, or None when a bound is NaN (no replicate had a defined AP)."""
    if interval is None or any(math.isnan(x) for x in interval):
        return None
    return interval


def _number(x: float | None) -> str:
    if x is None or (isinstance(x, float | np.floating) and math.isnan(x)):
        return ""
    return f"{float(x):.6f}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
