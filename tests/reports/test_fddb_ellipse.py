"""Rectangle -> ellipse conversion: S3FD golden example, fitting, JSON round trip, pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.datasets.fddb import FddbDetections, FddbImage
from reports.fddb.ellipse import (
    S3FD_REGRESSOR,
    EllipseRegressor,
    fit_ellipse_regressor,
    load_rect_to_ellipse,
    matched_pairs,
    turn_angle,
)


def test_s3fd_golden_example() -> None:
    # evaluation_protocols.md B.7: [100 100 80 100] -> ra 63.878, rb 43.064, angle 1.5500,
    # cx 139.848, cy 140.486
    out = S3FD_REGRESSOR(np.array([[100.0, 100.0, 80.0, 100.0]]))
    np.testing.assert_allclose(out[0], [63.878, 43.064, 1.5500, 139.848, 140.486], atol=6e-4)


def test_turn_angle_is_its_own_inverse() -> None:
    angles = np.array([-1.5, -0.3, 0.2, 1.4, 1.57])
    np.testing.assert_allclose(turn_angle(turn_angle(angles)), angles)


def test_fit_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(5)
    rects = np.column_stack(
        [
            rng.uniform(0, 400, 300),
            rng.uniform(0, 300, 300),
            rng.uniform(20, 150, 300),
            rng.uniform(25, 200, 300),
        ]
    )
    truth = EllipseRegressor(
        mean_x=np.array([200.0, 150.0, 80.0, 110.0]),
        std_x=np.array([110.0, 85.0, 37.0, 50.0]),
        mean_y=np.array([60.0, 40.0, 0.02, 210.0, 150.0]),
        std_y=np.array([30.0, 20.0, 0.1, 110.0, 80.0]),
        weights=rng.normal(0, 0.5, (4, 5)),
    )
    ellipses = truth(rects)
    fitted = fit_ellipse_regressor(rects, ellipses)
    np.testing.assert_allclose(fitted(rects), ellipses, atol=1e-8)
    assert fitted.num_pairs == 300
    noisy = fit_ellipse_regressor(
        rects, ellipses + rng.normal(0, 0.5, ellipses.shape) * [1, 1, 0, 1, 1]
    )
    np.testing.assert_allclose(noisy(rects), ellipses, atol=0.5)


def test_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    path = S3FD_REGRESSOR.save(tmp_path / "s3fd.json")
    loaded = load_rect_to_ellipse(str(path))
    rects = np.array([[10.0, 20.0, 30.0, 40.0], [100.0, 50.0, 60.0, 90.0]])
    assert loaded is not None
    np.testing.assert_array_equal(loaded(rects), S3FD_REGRESSOR(rects))
    assert load_rect_to_ellipse("identity") is None
    assert load_rect_to_ellipse("s3fd") is S3FD_REGRESSOR
    (tmp_path / "bad.json").write_text('{"kind": "fddb-ellipse-regressor", "mean_x": [1, 2]}')
    with pytest.raises(ValueError, match=r"bad\.json: missing key 'std_x'"):
        EllipseRegressor.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_rect_to_ellipse(str(tmp_path / "nope.json"))


def test_matched_pairs_keep_overlapping_rectangles() -> None:
    face = np.array([[30.0, 20.0, 1.5707963, 60.0, 50.0]])
    image = FddbImage("a/1", face)
    dets = FddbDetections(
        "a/1", np.array([[40.0, 20.0, 40.0, 60.0], [0.0, 0.0, 10.0, 10.0]]), np.array([0.9, 0.8])
    )
    rects, ells = matched_pairs([image], {"a/1": dets}, {"a/1": (120, 100)})
    np.testing.assert_array_equal(rects, [[40.0, 20.0, 40.0, 60.0]])
    np.testing.assert_array_equal(ells, face)
