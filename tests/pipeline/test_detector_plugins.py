"""Detectors beyond DSFD: ``opencv-haar``, ``py:MODULE:CALLABLE`` and installed plugins of the
``dsfd.detectors`` entry-point group (a test distribution installed into a temporary folder)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.detectors import open_detector
from pipeline.detectors.base import FaceDetector
from pipeline.detectors.plugins import PluginDetector
from tests.plugins import fake_detector

REPO = Path(__file__).resolve().parents[2]
PLUGIN_SOURCE = REPO / "tests" / "plugins" / "dsfd_test_plugin"


def _has_haar() -> bool:
    import cv2

    return hasattr(cv2, "CascadeClassifier")


needs_haar = pytest.mark.skipif(
    not _has_haar(), reason="this OpenCV has no CascadeClassifier (OpenCV 5 moved it out); "
                            "opencv-haar needs opencv-python-headless<5")


@pytest.fixture(scope="module")
def synthetic_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three images of the synthetic benchmark (seed 0): drawn heads with eyes and mouths."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth") / "bench"
    generate_benchmark(root, SynthConfig(num_val=3, num_train=0, num_fddb=0))
    images = sorted(root.rglob("*.jpg"))
    assert len(images) == 3
    return images


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))  # [H, W, 3] uint8


def _check_boxes(boxes: np.ndarray, height: int, width: int) -> None:
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 5
    assert np.all((boxes[:, 4] >= 0) & (boxes[:, 4] <= 1))
    assert np.all(np.diff(boxes[:, 4]) <= 0)  # score descending
    assert np.all((boxes[:, 0] >= 0) & (boxes[:, 2] <= width) & (boxes[:, 0] < boxes[:, 2]))
    assert np.all((boxes[:, 1] >= 0) & (boxes[:, 3] <= height) & (boxes[:, 1] < boxes[:, 3]))


# --- opencv-haar ------------------------------------------------------------------------------

def test_level_weight_score_is_a_monotonic_logistic() -> None:
    from pipeline.detectors.opencv_haar import level_weight_score

    weights = np.array([-1e6, -3.0, 0.0, 0.5, 3.0, 1e6])
    scores = level_weight_score(weights)
    np.testing.assert_allclose(scores[1:5], 1 / (1 + np.exp(-weights[1:5])))
    assert scores[2] == 0.5 and np.all(np.diff(scores) > 0)
    assert 0 <= scores[0] and scores[-1] <= 1


@needs_haar
def test_opencv_haar_finds_synthetic_faces_in_original_pixels(
        synthetic_images: list[Path]) -> None:
    detector = open_detector("opencv-haar", "cpu", 1)
    assert isinstance(detector, FaceDetector) and detector.device == "cpu"
    total = 0
    for path in synthetic_images:
        pixels = _pixels(path)
        height, width = pixels.shape[:2]
        single = detector.detect_prepared([detector.prepare(pixels, max_size=None)],
                                          [(height, width)])[0]
        _check_boxes(single, height, width)
        np.testing.assert_array_equal(detector.detect_multiscale(pixels, max_size=None), single)
        total += len(single)
    assert total > 0


@needs_haar
def test_opencv_haar_maps_downscaled_boxes_back(synthetic_images: list[Path]) -> None:
    detector = open_detector("opencv-haar")
    pixels = _pixels(synthetic_images[1])
    height, width = pixels.shape[:2]
    full = detector.detect_multiscale(pixels, max_size=None)
    prepared = detector.prepare(pixels, max_size=max(height, width) // 2)
    assert max(prepared.shape) == max(height, width) // 2 and prepared.ndim == 2
    half = detector.detect_prepared([prepared], [(height, width)])[0]
    _check_boxes(half, height, width)
    assert len(full) and len(half)
    # the best half-size box lies on a full-size box, in the original frame
    x1, y1 = np.maximum(full[:, :2], half[0, :2]).T
    x2, y2 = np.minimum(full[:, 2:4], half[0, 2:4]).T
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (full[:, 2] - full[:, 0]) * (full[:, 3] - full[:, 1])
    half_area = (half[0, 2] - half[0, 0]) * (half[0, 3] - half[0, 1])
    assert np.max(inter / (area + half_area - inter)) > 0.5


@needs_haar
def test_opencv_haar_identity_is_stable_and_names_the_cascade() -> None:
    import cv2

    first, second = open_detector("opencv-haar").identity, open_detector("opencv-haar").identity
    assert first == second
    cascades = importlib.import_module("cv2.data").haarcascades
    xml = Path(cascades) / "haarcascade_frontalface_default.xml"
    assert first["name"] == "opencv-haar" and first["version"] == cv2.__version__
    assert first["checksum"] == hashlib.sha256(xml.read_bytes()).hexdigest()
    assert first["postprocess"]["opencv_version"] == cv2.__version__
    json.dumps(first)


def test_opencv_haar_without_a_cascade_classifier_fails_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.raises(ValueError, match="opencv-python-headless>=4.6,<5") as caught:
        open_detector("opencv-haar")
    assert "\n" not in str(caught.value)


@needs_haar
def test_an_empty_image_gives_no_haar_boxes() -> None:
    detector = open_detector("opencv-haar")
    for shape in ((1, 1, 3), (8, 300, 3), (120, 90, 3)):
        pixels = np.zeros(shape, np.uint8)
        boxes = detector.detect_multiscale(pixels, max_size=None)
        assert boxes.dtype == np.float32 and boxes.shape == (0, 5)


# --- py:MODULE:CALLABLE -----------------------------------------------------------------------

def test_a_py_spec_opens_the_users_factory_with_an_exact_identity() -> None:
    detector = open_detector("py:tests.plugins.fake_detector:make", "cpu", 1)
    assert isinstance(detector, PluginDetector) and isinstance(detector, FaceDetector)
    pixels = np.zeros((30, 40, 3), np.uint8)
    boxes = detector.detect_prepared([detector.prepare(pixels, max_size=None)], [(30, 40)])[0]
    np.testing.assert_array_equal(boxes, np.array([fake_detector.FIXED_BOX], np.float32))
    np.testing.assert_array_equal(detector.detect_multiscale(pixels, max_size=None), boxes)
    identity = detector.identity
    source = hashlib.sha256(Path(fake_detector.__file__).read_bytes()).hexdigest()
    assert identity["name"] == "fixed-box" and identity["checksum"] == f"module:{source}"
    assert identity["distribution"] is None  # a module of the work tree, not installed
    assert identity["plugin"] == {"kind": "py", "module": "tests.plugins.fake_detector",
                                  "callable": "make"}
    assert identity["postprocess"] == {}
    assert open_detector("py:tests.plugins.fake_detector:make").identity == identity
    json.dumps(identity)


def test_a_py_factory_without_a_device_parameter_and_one_naming_a_file() -> None:
    plain = open_detector("py:tests.plugins.fake_detector:make_without_arguments", "cuda")
    assert plain.device == "cpu" and plain.identity["name"] == "fixed-box"
    weights = open_detector("py:tests.plugins.fake_detector:make_with_weights").identity
    digest = hashlib.sha256(Path(fake_detector.__file__).read_bytes()).hexdigest()
    assert weights["file_sha256"] == weights["checksum"] == digest


@pytest.mark.parametrize(("spec", "expected"), [
    ("py:no_such_module_xyz:make", "cannot import module 'no_such_module_xyz'"),
    ("py:tests.plugins.fake_detector", "expected py:MODULE:CALLABLE"),
    ("py:tests.plugins.fake_detector:nothing", "has no attribute 'nothing'"),
    ("py:tests.plugins.fake_detector:NOT_CALLABLE", "is not callable"),
    ("py:tests.plugins.fake_detector:make_wrong_type", "returned object, not a FaceDetector"),
    ("py:tests.plugins.fake_detector:make_nameless", "non-empty 'name'"),
    ("py:tests.plugins.fake_detector:make_failing", "failed: RuntimeError: weights missing"),
])
def test_a_bad_py_spec_fails_in_one_line_naming_it(spec: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_detector(spec)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"model {spec!r}: ")
    assert expected in message


# --- entry points: a test distribution installed into a temporary folder ----------------------

@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dsfd-test-plugin`` installed with ``pip --target`` (the project's venv untouched)."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(PLUGIN_SOURCE, source)  # setuptools writes build files beside the source
    site = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return site


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    return env


def test_an_installed_plugin_opens_by_its_entry_point_name(plugin_site: Path) -> None:
    code = ("import json; from pipeline.detectors import open_detector; "
            "d = open_detector('fake-face:small', 'cpu', 1); print(json.dumps(d.identity))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(plugin_site),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    identity = json.loads(done.stdout)
    module = plugin_site / "dsfd_test_plugin" / "__init__.py"
    assert identity["name"] == "fake-face" and identity["arg"] == "small"
    assert identity["distribution"] == {"name": "dsfd-test-plugin", "version": "0.1.0"}
    assert identity["checksum"] == f"module:{hashlib.sha256(module.read_bytes()).hexdigest()}"
    assert identity["plugin"]["kind"] == "entry-point"
    assert identity["plugin"]["value"] == "dsfd_test_plugin:make"


def test_dsfd_detect_runs_an_installed_plugin(plugin_site: Path, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.full((30, 40, 3), 127, np.uint8)).save(image)
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "detect", str(image), "--model", "fake-face",
         "--json", "--device", "cpu"],
        cwd=REPO, env=_env(plugin_site), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    payload = json.loads(done.stdout)
    assert [p["image"] for p in payload] == [str(image)]
    np.testing.assert_allclose(payload[0]["detections"], [[3.0, 4.0, 13.0, 14.0, 0.8]],
                               rtol=1e-6)


def test_without_the_plugin_the_name_is_no_detector() -> None:
    with pytest.raises((ValueError, FileNotFoundError)) as caught:
        open_detector("fake-face")
    assert "\n" not in str(caught.value)


# --- dsfd run --model opencv-haar through the CLI and Ray -------------------------------------

@needs_haar
def test_dsfd_run_with_opencv_haar_records_its_identity(
        ray_ctx: None, synthetic_images: list[Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from jobs.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in synthetic_images:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "run"
    argv = ["run", "--dataset", f"folder:{folder}", "--out", str(out), "--model",
            "opencv-haar", "--workers", "1", "--cpus-per-worker", "1"]
    assert main(argv) == 0
    record = json.loads((out / "run.json").read_text())
    identity = open_detector("opencv-haar").identity
    assert record["model"]["name"] == "opencv-haar" and record["model"]["spec"] == "opencv-haar"
    assert record["model"]["checksum"] == identity["checksum"]
    assert record["model"]["version"] == identity["version"]
    assert record["config"]["model"] == {"name": "opencv-haar",
                                         "checksum": identity["checksum"]}
    assert record["config"]["postprocess"] == identity["postprocess"]
    detections = pq.read_table(out / "detections").to_pandas()
    detector = open_detector("opencv-haar")
    expected = {p.name: detector.detect_multiscale(_pixels(p), max_size=None)
                for p in synthetic_images}
    assert len(detections) == sum(len(b) for b in expected.values()) > 0
    for name, boxes in expected.items():
        got = detections[detections.image_id == name][["x1", "y1", "x2", "y2", "score"]]
        np.testing.assert_allclose(np.sort(got.to_numpy(), axis=0), np.sort(boxes, axis=0),
                                   rtol=1e-6)
    assert main(argv) == 0  # resumes: same detector, nothing to redo
