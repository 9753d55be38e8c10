"""Bootstrap speed: 1000 replicates of WIDER AP on a val-sized synthetic run.

Builds the seeded synthetic detections of ``bench_wider_eval`` (about 90k detections on the
3226 real val images), then times, separately: the official evaluation (the point estimate),
the precompute of every image's tables (:func:`reports.wider.bootstrap.bootstrap_state`), and
``--replicates`` replicates of :func:`reports.wider.bootstrap.bootstrap_interval`. Checks that
the all-ones replicate equals the official AP bit for bit. With ``--fddb``, the same for FDDB
on the seeded detections of ``bench_fddb_eval`` (all 2845 annotated images).

    .venv/bin/python benchmarks/bench_bootstrap.py [--gt DIR] [--replicates 1000] [--seed 0]
                                                   [--fddb]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks.bench_wider_eval import DEFAULT_GT, synthetic_detections  # noqa: E402
from pipeline.datasets.wider import load_wider_gt_dir  # noqa: E402
from reports.wider import WiderPredictions, evaluate_predictions  # noqa: E402
from reports.wider.bootstrap import bootstrap_interval, bootstrap_state  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gt", default=str(DEFAULT_GT))
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flavour", default="matlab", choices=("matlab", "pyport"))
    parser.add_argument("--fddb", action="store_true", help="also time the FDDB bootstrap")
    args = parser.parse_args()
    ok = _wider(args)
    if args.fddb:
        ok = _fddb(args) and ok
    return 0 if ok else 1


def _fddb(args: argparse.Namespace) -> bool:
    import numpy as np

    from benchmarks.bench_fddb_eval import FDDB_ROOT, make_detections, make_sizes
    from pipeline.datasets.fddb import FddbDataset
    from reports.fddb import bootstrap as fddb_bs
    from reports.fddb import evaluate_fddb, tpr_at_fp

    rng = np.random.default_rng(args.seed)
    annotations = FddbDataset(FDDB_ROOT).annotations()
    sizes = make_sizes(annotations, rng)
    detections = make_detections(annotations, sizes, rng)
    t0 = time.perf_counter()
    roc = evaluate_fddb(annotations, detections, sizes, "rect")
    t1 = time.perf_counter()
    state = fddb_bs.bootstrap_state(annotations, detections, sizes, "rect")
    t2 = time.perf_counter()
    intervals = fddb_bs.bootstrap_interval(state, args.replicates, seed=args.seed)
    t3 = time.perf_counter()
    disc = tpr_at_fp(roc.tpr_disc, roc.fp)
    same = state.point_estimate()["tpr_disc"] == disc
    print(f"FDDB {len(annotations)} images, {state.num_points} ROC points")
    print(f"official evaluation: {t1 - t0:.2f} s; precompute: {t2 - t1:.2f} s; "
          f"{args.replicates} replicates: {t3 - t2:.2f} s; all-ones discrete == official: {same}")
    lo, hi = intervals["tpr_disc"]
    print(f"  discrete TPR@1000FP {disc:.4f} [{lo:.4f}, {hi:.4f}]")
    return same


def _wider(args: argparse.Namespace) -> bool:
    gt = load_wider_gt_dir(args.gt)
    pred = WiderPredictions(args.flavour, synthetic_detections(gt, args.seed))
    print(f"{len(gt)} images, {pred.num_detections} detections ({args.flavour} flavour)")
    t0 = time.perf_counter()
    result, _ = evaluate_predictions(pred, gt)
    t1 = time.perf_counter()
    state = bootstrap_state(pred, gt)
    t2 = time.perf_counter()
    intervals = bootstrap_interval(state, args.replicates, seed=args.seed)
    t3 = time.perf_counter()
    same = state.point_estimate() == result.ap
    print(f"official evaluation (point estimate): {t1 - t0:.2f} s")
    print(f"precompute per-image tables:          {t2 - t1:.2f} s")
    print(f"{args.replicates} replicates:                    {t3 - t2:.2f} s")
    print(f"all-ones replicate == official AP:    {same}")
    for s, ap in result.ap.items():
        lo, hi = intervals[s]
        print(f"  {s:<7} {ap:.4f} [{lo:.4f}, {hi:.4f}]")
    return same


if __name__ == "__main__":
    raise SystemExit(main())
