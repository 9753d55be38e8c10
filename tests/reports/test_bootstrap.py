"""Bootstrap intervals (WIDER AP, FDDB TPR): refusals, the all-ones replicate equals the point
estimate, intervals contain it, seeds reproduce, a run paired with itself differs by 0."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets.fddb import FddbDetections, FddbImage
from reports.fddb import bootstrap as fddb_bs
from reports.fddb import evaluate_fddb, tpr_at_fp
from reports.wider import WiderPredictions, evaluate_predictions
from reports.wider import bootstrap as wider_bs
from reports.wider.predictions import ImageDetections, stable_descending
from tests.reports.test_wider_helpers import tiny_gt


def _wider_case(seed: int, flavour: str = "matlab", n_images: int = 40, drop: str | None = None):
    rng = np.random.default_rng(seed)
    boxes, images = {}, {}
    for i in range(n_images):
        k = int(rng.integers(1, 6))
        g = np.concatenate([rng.integers(0, 200, (k, 2)), rng.integers(8, 60, (k, 2))], 1)
        boxes[f"ev{i % 3}/im{i}"] = g.tolist()
    gt = tiny_gt({k: v for k, v in boxes.items() if k != drop})
    for img in gt:
        g = img.boxes_xywh.astype(float)
        hit = rng.random(len(g)) < 0.7
        tp = g[hit] + rng.normal(0, 2, (int(hit.sum()), 4))
        fp = np.concatenate([rng.random((3, 2)) * 200, rng.integers(8, 60, (3, 2))], 1)
        scores = np.round(np.concatenate([rng.beta(5, 1.5, len(tp)), rng.beta(1.2, 5, 3)]), 3)
        b = np.concatenate([tp, fp])
        o = stable_descending(scores) if flavour == "matlab" else np.arange(len(scores))
        images[img.image_id] = ImageDetections(b[o], scores[o])
    return WiderPredictions(flavour, images), gt


@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_wider_all_ones_replicate_is_the_official_ap_exactly(flavour) -> None:
    pred, gt = _wider_case(1, flavour)
    result, _ = evaluate_predictions(pred, gt)
    state = wider_bs.bootstrap_state(pred, gt)
    assert state.point_estimate() == result.ap  # bit for bit
    aps = state.replicate_aps(np.ones((2, state.num_images)))
    assert all(aps[s][1] == result.ap[s] for s in result.ap)


@pytest.mark.parametrize("flavour", ["matlab", "pyport"])
def test_wider_tables_collected_during_the_evaluation_equal_a_second_pass(flavour) -> None:
    pred, gt = _wider_case(4, flavour)
    collector = wider_bs.BootstrapCollector(len(gt), flavour)
    result, _ = evaluate_predictions(pred, gt, per_image=collector.add)
    once, twice = collector.state(), wider_bs.bootstrap_state(pred, gt)
    assert np.array_equal(once.matrix, twice.matrix) and once.image_ids == twice.image_ids
    assert once.num_detections == twice.num_detections and once.flavour == twice.flavour
    assert once.point_estimate() == result.ap  # bit for bit
    with pytest.raises(ValueError, match="missing"):
        wider_bs.BootstrapCollector(len(gt) + 1, flavour).state()


def test_wider_replicate_equals_evaluating_the_resampled_images() -> None:
    # weights 2/0 with the normalisation held fixed: the AP of a set with image 0 twice and
    # image 1 absent, built by merging the per-image states by hand.
    pred, gt = _wider_case(2)
    state = wider_bs.bootstrap_state(pred, gt)
    weights = np.ones(state.num_images)
    weights[0], weights[1] = 2, 0
    got = state.replicate_aps(weights[None, :])
    for s in state.settings:
        tables = np.tensordot(weights, state.tables(s), axes=1)  # (T, 2)
        faces = weights @ state.matrix[:, len(state.settings) * 2000 + state.settings.index(s)]
        with np.errstate(divide="ignore", invalid="ignore"):
            ap = state.flavour.voc_ap(tables[:, 1] / faces, tables[:, 1] / tables[:, 0])
        assert got[s][0] == ap


def test_wider_interval_contains_point_and_seed_reproduces() -> None:
    pred, gt = _wider_case(3)
    state = wider_bs.bootstrap_state(pred, gt)
    point = state.point_estimate()
    a = wider_bs.bootstrap_interval(state, 200, seed=7)
    assert a == wider_bs.bootstrap_interval(state, 200, seed=7)
    assert a != wider_bs.bootstrap_interval(state, 200, seed=8)
    for s, (lo, hi) in a.items():
        assert lo <= point[s] <= hi and lo < hi
    wide = wider_bs.bootstrap_interval(state, 200, seed=7, level=0.99)
    assert all(wide[s][0] <= a[s][0] and a[s][1] <= wide[s][1] for s in a)


def test_wider_refuses_no_replicates_and_bad_level() -> None:
    pred, gt = _wider_case(4, n_images=5)
    state = wider_bs.bootstrap_state(pred, gt)
    for n in (0, -3):
        with pytest.raises(ValueError, match="at least 1 replicate"):
            wider_bs.bootstrap_interval(state, n, seed=0)
        with pytest.raises(ValueError, match="at least 1 replicate"):
            wider_bs.paired_bootstrap(state, state, n, seed=0)
    with pytest.raises(ValueError, match="level"):
        wider_bs.bootstrap_interval(state, 10, seed=0, level=1.0)


def test_wider_paired_with_itself_is_zero_and_detects_a_worse_run() -> None:
    pred, gt = _wider_case(5)
    state = wider_bs.bootstrap_state(pred, gt)
    same = wider_bs.paired_bootstrap(state, state, 100, seed=0)
    for s in state.settings:
        assert same[s]["diff"] == 0.0 and same[s]["interval"] == (0.0, 0.0)
        assert same[s]["p_value"] == 1.0
    # B: every detection scored at random -> clearly worse AP on every setting
    rng = np.random.default_rng(0)
    worse = WiderPredictions(
        "matlab",
        {
            k: ImageDetections(d.boxes_xywh, np.round(rng.random(len(d)), 3))
            for k, d in pred.images.items()
        },
    )
    worse = WiderPredictions(
        "matlab",
        {
            k: ImageDetections(d.boxes_xywh[stable_descending(d.scores)],
                               d.scores[stable_descending(d.scores)])
            for k, d in worse.images.items()
        },
    )
    other = wider_bs.bootstrap_state(worse, gt)
    diff = wider_bs.paired_bootstrap(state, other, 300, seed=0)
    for s in state.settings:
        lo, hi = diff[s]["interval"]
        assert diff[s]["diff"] > 0 and lo <= diff[s]["diff"] <= hi


def test_wider_paired_refuses_different_images() -> None:
    pred, gt = _wider_case(6, n_images=6)
    pred_b, gt_b = _wider_case(6, n_images=6, drop="ev1/im1")
    a, b = wider_bs.bootstrap_state(pred, gt), wider_bs.bootstrap_state(pred_b, gt_b)
    with pytest.raises(ValueError, match="'ev1/im1'"):
        wider_bs.paired_bootstrap(a, b, 10, seed=0)


# ------------------------------------------------------------------------------------- FDDB


def _fddb_case(seed: int, n_images: int = 30, skip: int | None = None):
    rng = np.random.default_rng(seed)
    annotations, detections, sizes = [], [], {}
    for k in range(n_images):
        if k == skip:
            continue
        image_id = f"s/img_{k}"
        n_faces = int(rng.integers(1, 4))
        centres = rng.uniform(30, 170, (n_faces, 2))
        faces = np.concatenate(
            [rng.uniform(10, 20, (n_faces, 2)), rng.uniform(-0.3, 0.3, (n_faces, 1)), centres], 1
        )
        annotations.append(FddbImage(image_id, faces))
        hit = faces[rng.random(n_faces) < 0.8] + rng.normal(0, 1.0, (1, 5)) * [1, 1, 0.05, 1, 1]
        fp = np.concatenate(
            [rng.uniform(5, 15, (2, 2)), np.zeros((2, 1)), rng.uniform(20, 180, (2, 2))], 1
        )
        scores = np.concatenate([rng.uniform(0.5, 1, len(hit)), rng.uniform(0, 0.7, 2)])
        scores = np.round(scores, 2)
        detections.append(FddbDetections(image_id, np.concatenate([hit, fp]), scores))
        sizes[image_id] = (200, 200)
    return annotations, detections, sizes


def _fddb_state(seed: int, budget: float = 5, skip: int | None = None):
    annotations, detections, sizes = _fddb_case(seed, skip=skip)
    roc = evaluate_fddb(annotations, detections, sizes, "ellipse")
    state = fddb_bs.bootstrap_state(annotations, detections, sizes, "ellipse", fp_budget=budget)
    return roc, state


def test_fddb_all_ones_replicate_is_the_official_curve() -> None:
    roc, state = _fddb_state(0)
    tp_disc, fp, tp_cont, faces = state.curve(np.ones(state.num_images))
    assert faces == roc.num_faces
    assert np.array_equal(tp_disc, roc.tp_disc) and np.array_equal(fp, roc.fp)  # integers: exact
    np.testing.assert_allclose(tp_cont, roc.tp_cont, rtol=1e-12, atol=1e-12)
    point = state.point_estimate()
    for budget in (1, 5, 20):
        st = fddb_bs.bootstrap_state_from_rocs(state.image_ids, _rocs(0), budget)
        p = st.point_estimate()
        assert p["tpr_disc"] == tpr_at_fp(roc.tpr_disc, roc.fp, budget) or (
            np.isnan(p["tpr_disc"]) and np.isnan(tpr_at_fp(roc.tpr_disc, roc.fp, budget))
        )
        assert p["tpr_cont"] == pytest.approx(tpr_at_fp(roc.tpr_cont, roc.fp, budget), rel=1e-12)
    assert point["tpr_disc"] == tpr_at_fp(roc.tpr_disc, roc.fp, 5)


def test_fddb_state_from_the_evaluation_equals_a_second_pass() -> None:
    from reports.fddb import evaluate_run

    annotations, detections, sizes = _fddb_case(3)
    result = evaluate_run(detections, annotations, sizes=sizes, det_format="ellipse",
                          fp_budget=5)
    once = fddb_bs.bootstrap_state_from_result(result)
    twice = fddb_bs.bootstrap_state(annotations, detections, sizes, "ellipse", fp_budget=5)
    assert once.image_ids == twice.image_ids and once.num_points == twice.num_points
    for name in ("entry_image", "entry_point", "deltas", "num_faces"):
        assert np.array_equal(getattr(once, name), getattr(twice, name))
    assert once.point_estimate()["tpr_disc"] == result.tpr_disc


def _rocs(seed: int):
    annotations, detections, sizes = _fddb_case(seed)
    return fddb_bs.image_rocs(annotations, detections, sizes, "ellipse")


def test_fddb_interval_contains_point_seed_reproduces_and_refusals() -> None:
    _, state = _fddb_state(1)
    point = state.point_estimate()
    a = fddb_bs.bootstrap_interval(state, 200, seed=3)
    assert a == fddb_bs.bootstrap_interval(state, 200, seed=3)
    for m, (lo, hi) in a.items():
        assert lo <= point[m] <= hi
    with pytest.raises(ValueError, match="at least 1 replicate"):
        fddb_bs.bootstrap_interval(state, 0, seed=0)


def test_fddb_paired_with_itself_and_refusal() -> None:
    _, state = _fddb_state(2)
    same = fddb_bs.paired_bootstrap(state, state, 100, seed=0)
    for m in fddb_bs.METRICS:
        assert same[m]["diff"] == 0.0 and same[m]["interval"] == (0.0, 0.0)
        assert same[m]["p_value"] == 1.0
    _, other = _fddb_state(2, skip=4)
    with pytest.raises(ValueError, match="'s/img_4'"):
        fddb_bs.paired_bootstrap(state, other, 10, seed=0)


# -------------------------------------------------------------------------------------- CLI


def _cli(capsys, *args: str) -> tuple[int, str]:
    from jobs.cli import main

    rc = main(list(args))
    return rc, capsys.readouterr().out


def test_wider_cli_adds_intervals_and_keeps_the_rest(data_dir, tmp_path, capsys) -> None:
    import json
    import tarfile

    case = data_dir / "oracle_public" / "cases" / "wider_pub"
    for name in ("pred", "pred_missing"):
        with tarfile.open(case / f"{name}.tar.gz") as tar:
            tar.extractall(tmp_path, filter="data")
    common = ("eval", "wider", "--pred", str(tmp_path / "pred"), "--gt",
              str(data_dir / "wider_val_gt"))
    rc, plain = _cli(capsys, *common, "--json", str(tmp_path / "a.json"))
    assert rc == 0
    rc, boot = _cli(capsys, *common, "--json", str(tmp_path / "b.json"), "--bootstrap", "20",
                    "--seed", "3", "--compare", str(tmp_path / "pred_missing"))
    assert rc == 0 and boot.startswith(plain)  # the official lines, unchanged, come first
    assert "95% bootstrap intervals (20 replicates, seed 3" in boot and "paired bootstrap" in boot
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    extra = b.pop("bootstrap")
    assert a == b
    assert set(extra["intervals"]) == {"easy", "medium", "hard"}
    assert set(extra["compare"]["diff"]["hard"]) == {"diff", "interval", "p_value"}
    rc, _ = _cli(capsys, *common, "--bootstrap", "0")
    assert rc == 1


def test_fddb_cli_adds_intervals_and_keeps_the_rest(data_dir, tmp_path, capsys) -> None:
    import json

    case = data_dir / "oracle_public" / "cases" / "fddb_pub"
    common = ("eval", "fddb", "--pred", str(case / "dets_ellipse.txt"), "--det-format",
              "ellipse", "--annotations", str(case / "ellipseList.txt"), "--sizes",
              str(case / "sizes.tsv"))
    rc, plain = _cli(capsys, *common, "--out", str(tmp_path / "a_"))
    assert rc == 0
    rc, boot = _cli(capsys, *common, "--out", str(tmp_path / "b_"), "--bootstrap", "30")
    assert rc == 0 and boot.startswith(plain.replace("a_", "b_"))
    assert "discrete   TPR@1000FP 0.6447 [" in boot
    for kind in ("DiscROC", "ContROC"):
        assert (tmp_path / f"b_{kind}.txt").read_bytes() == (case / "expected" /
                                                              f"f1_{kind}.txt").read_bytes()
    a = json.loads((tmp_path / "a_fddb.json").read_text())
    b = json.loads((tmp_path / "b_fddb.json").read_text())
    assert set(b.pop("bootstrap")["intervals"]) == {"tpr_disc", "tpr_cont"}
    assert {k: v for k, v in a.items() if "roc" not in k} == {
        k: v for k, v in b.items() if "roc" not in k
    }


def test_fddb_cli_compare_is_a_paired_bootstrap(data_dir, tmp_path, capsys) -> None:
    import json

    case = data_dir / "oracle_public" / "cases" / "fddb_pub"
    dets = case / "dets_ellipse.txt"
    lines = dets.read_text().splitlines(keepends=True)
    # run B: the same file with every detection's score halved except each image's first
    worse, k = [], 0
    while k < len(lines):
        count = int(float(lines[k + 1]))
        rows = lines[k + 2 : k + 2 + count]
        worse += [lines[k], lines[k + 1]] + rows[:1] + [
            " ".join(r.split()[:-1] + [f"{float(r.split()[-1]) * 0.5:g}"]) + "\n"
            for r in rows[1:]]
        k += 2 + count
    run_b = tmp_path / "b.txt"
    run_b.write_text("".join(worse))
    common = ("eval", "fddb", "--pred", str(dets), "--det-format", "ellipse", "--annotations",
              str(case / "ellipseList.txt"), "--sizes", str(case / "sizes.tsv"))
    rc, out = _cli(capsys, *common, "--out", str(tmp_path / "s_"), "--bootstrap", "50",
                   "--compare", str(dets))
    assert rc == 0 and "paired bootstrap: TPR(--pred) - TPR(" in out
    same = json.loads((tmp_path / "s_fddb.json").read_text())["bootstrap"]["compare"]
    for m in ("tpr_disc", "tpr_cont"):
        assert same["diff"][m] == {"diff": 0.0, "interval": [0.0, 0.0], "p_value": 1.0}
    rc, out = _cli(capsys, *common, "--out", str(tmp_path / "w_"), "--bootstrap", "50",
                   "--compare", str(run_b))
    assert rc == 0
    doc = json.loads((tmp_path / "w_fddb.json").read_text())
    cmp = doc["bootstrap"]["compare"]
    assert cmp["diff"]["tpr_disc"]["diff"] == pytest.approx(
        doc["tpr_disc"] - cmp["tpr_b"]["tpr_disc"])
    lo, hi = cmp["diff"]["tpr_cont"]["interval"]
    assert lo <= cmp["diff"]["tpr_cont"]["diff"] <= hi
    rc, _ = _cli(capsys, *common, "--out", str(tmp_path / "x_"), "--compare", str(dets))
    assert rc == 1  # --compare needs --bootstrap


# ------------------------------------------------------------------------------ curve bands


def _bands_of(ax) -> list:
    return [c for c in ax.collections if c.get_gid() == "band"]


def test_wider_pr_band_contains_the_point_curve_and_is_drawn() -> None:
    from reports.figures.wider_pr import plot_wider_pr

    pred, gt = _wider_case(5)
    result, _ = evaluate_predictions(pred, gt)
    state = wider_bs.bootstrap_state(pred, gt)
    bands = wider_bs.pr_bands(state, 200, seed=1)
    for s in state.settings:
        lo, hi = bands[s]
        precision = np.asarray(result.pr[s]["precision"])
        ok = ~np.isnan(precision)
        assert ok.any() and np.all(lo[ok] <= precision[ok] + 1e-12)
        assert np.all(precision[ok] <= hi[ok] + 1e-12) and np.any(hi[ok] > lo[ok])
    _, axes = plot_wider_pr({"A": result}, bands={"A": bands})
    for ax, s in zip(axes, state.settings, strict=True):
        (band,) = _bands_of(ax)
        ys = band.get_paths()[0].vertices[:, 1]
        assert np.isclose(ys.min(), np.nanmin(bands[s][0])) and \
            np.isclose(ys.max(), np.nanmax(bands[s][1]))
    _, plain = plot_wider_pr({"A": result})
    assert not any(_bands_of(ax) for ax in plain)


def test_fddb_roc_band_contains_the_point_curve_and_is_drawn() -> None:
    from reports.figures.fddb_roc import plot_fddb_roc

    roc, state = _fddb_state(6)
    bands = fddb_bs.roc_bands(state, 200, seed=2)
    for metric, tpr in (("tpr_disc", roc.tpr_disc), ("tpr_cont", roc.tpr_cont)):
        lo, hi = bands[metric]
        assert lo.shape == tpr.shape == hi.shape
        assert np.all(lo <= tpr + 1e-12) and np.all(tpr <= hi + 1e-12) and np.any(hi > lo)
    fig, ax = plot_fddb_roc({"A": roc}, "cont", bands={"A": bands})
    (band,) = _bands_of(ax)
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.max(), bands["tpr_cont"][1].max())
