"""Forward precisions of :class:`dsfd.Detector`: float32 unchanged, tf32 equal to float32 on
the CPU, bfloat16 and float16 close to float32 on the shipped model, post-processing in
float32, bad dtypes refused in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import dsfd
import dsfd.detector as detector_module
from dsfd.detector import DTYPES
from dsfd.postprocess import postprocess_shot
from pipeline.images import decode_image


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    """One torch thread: the box comparisons are fast and stable on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shipped() -> Any:
    model, _ = dsfd.load_model("shipped")
    return model


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Three synthetic WIDER val images (seed 0), decoded as the pipeline decodes them."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=0, num_val=3, num_train=0, num_fddb=0))
    return [decode_image(str(p)).pixels for p in sorted(root.rglob("*.jpg"))]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[A, B]`` IoU of ``xyxy`` boxes ``a`` ``[A, 4+]`` and ``b`` ``[B, 4+]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def matched_share(reference: list[np.ndarray], other: list[np.ndarray], min_iou: float,
                  min_score: float = 0.5) -> float:
    """Share of ``reference`` boxes scoring >= ``min_score`` that some ``other`` box overlaps
    at IoU >= ``min_iou``."""
    hits = total = 0
    for ref, got in zip(reference, other, strict=True):
        ref = ref[ref[:, 4] >= min_score]
        total += len(ref)
        if len(ref) and len(got):
            hits += int((iou(ref, got).max(axis=1) >= min_iou).sum())
    return hits / total


def test_float32_is_the_default_and_unchanged_bit_for_bit(shipped: Any,
                                                          images: list[np.ndarray]) -> None:
    default = dsfd.Detector(shipped, device="cpu")
    assert default.dtype == "float32"
    got = default.detect(images)
    explicit = dsfd.Detector(shipped, device="cpu", dtype="float32").detect(images)
    for image, a, b in zip(images, got, explicit, strict=True):
        tensor = default.prepare(image)[None]
        with torch.inference_mode():  # the plain forward + post-processing, no precision code
            shot = shipped(tensor).second
            want = postprocess_shot(shot, tensor.shape[-2:], default.anchor_spec,
                                    default.config, default.config.post_nms_top_k)[0]
        assert np.array_equal(a, want.numpy())
        assert np.array_equal(a, b)


def test_tf32_on_the_cpu_is_float32(shipped: Any, images: list[np.ndarray]) -> None:
    want = dsfd.Detector(shipped, device="cpu").detect(images)
    got = dsfd.Detector(shipped, device="cpu", dtype="tf32").detect(images)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_autocast_dtypes_run_on_the_cpu_and_match_float32(
        shipped: Any, images: list[np.ndarray], dtype: str) -> None:
    want = dsfd.Detector(shipped, device="cpu").detect(images)
    got = dsfd.Detector(shipped, device="cpu", dtype=dtype).detect(images)
    assert all(g.dtype == np.float32 and np.isfinite(g).all() for g in got)
    assert sum(len(w[w[:, 4] >= 0.5]) for w in want) > 20  # the comparison has boxes to match
    assert matched_share(want, got, 0.9) >= 0.95
    small = images[0][::4, ::4].copy()  # the multi-scale test upsamples: keep it short
    multiscale = dsfd.Detector(shipped, device="cpu", dtype=dtype).detect_multiscale(small)
    assert multiscale.dtype == np.float32 and len(multiscale)


def test_post_processing_runs_in_float32(shipped: Any, images: list[np.ndarray],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.dtype, torch.dtype]] = []

    def spy(shot: Any, *args: Any, **kwargs: Any) -> list[torch.Tensor]:
        seen.append((shot.loc.dtype, shot.conf.dtype))
        return postprocess_shot(shot, *args, **kwargs)

    monkeypatch.setattr(detector_module, "postprocess_shot", spy)
    dsfd.Detector(shipped, device="cpu", dtype="bfloat16").detect(images[:1])
    assert seen == [(torch.float32, torch.float32)]


def test_tf32_flags_are_set_only_around_a_cuda_forward(shipped: Any) -> None:
    detector = dsfd.Detector(shipped, device="cpu", dtype="tf32")
    detector.device = torch.device("cuda")  # the flags only; no forward runs here
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with detector._precision():
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_bad_dtypes_are_refused(shipped: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DTYPES == ("float32", "tf32", "bfloat16", "float16")
    with pytest.raises(ValueError, match=r"dtype must be one of float32, tf32, bfloat16, "
                                         r"float16; got 'half'"):
        dsfd.Detector(shipped, device="cpu", dtype="half")
    monkeypatch.setattr(torch.amp.autocast_mode, "is_autocast_available", lambda _: False)
    with pytest.raises(ValueError, match=r"dtype float16: .* no autocast on cpu; use float32"):
        dsfd.Detector(shipped, device="cpu", dtype="float16")
    dsfd.Detector(shipped, device="cpu", dtype="tf32")  # needs no autocast


def test_open_detector_passes_dtype_to_dsfd_and_refuses_it_elsewhere() -> None:
    from pipeline.detectors import open_detector

    detector = open_detector("shipped", "cpu", 1, dtype="bfloat16")
    assert detector.identity["dtype"] == "bfloat16"
    assert detector.detector.dtype == "bfloat16"  # type: ignore[attr-defined]
    assert open_detector("shipped", "cpu", 1).identity["dtype"] == "float32"
    with pytest.raises(ValueError, match=r"opencv-haar detector family runs float32 only, not "
                                         r"dtype bfloat16"):
        open_detector("opencv-haar", "cpu", 1, dtype="bfloat16")
    with pytest.raises(ValueError, match=r"dtype must be one of"):
        open_detector("shipped", "cpu", 1, dtype="fp8")


def test_iou_helper_golden() -> None:
    a = np.array([[0, 0, 10, 10, 1.0]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
    assert np.allclose(iou(a, b), [[1.0, 50 / 150]])
    assert Path(__file__).name == "test_dtype.py"
