"""``onnx:PATH``: an ONNX model run by ``onnxruntime`` as a
:class:`~pipeline.detectors.base.FaceDetector`.

The model follows the convention of :mod:`dsfd.onnx_export` (``docs/benchmarking.md``): input
``[N, 3, H, W]`` float32 RGB 0..255 (dynamic ``N``, ``H``, ``W``); outputs ``boxes [N, A, 4]``
(xyxy, input pixels) and ``scores [N, A]`` (in ``[0, 1]``). The detector then applies the
project's one post-processing (:func:`dsfd.postprocess.detections_from_decoded`: score
threshold, top-k, NMS, the best kept) with the thresholds of the file's ``dsfd.postprocess``
metadata (the defaults when absent), and maps boxes back to the original image.

Images are prepared as :class:`dsfd.Detector` prepares them (the same resize for
``max_size``) and batched only with images of the same prepared size: nothing is padded, so a
batch gives each image the detections it gets alone.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from pipeline.detectors.base import register_detector

PREFIX = "onnx:"
OUTPUT_NAMES = ("boxes", "scores")


class OnnxFaceDetector:
    """An ONNX face detector on onnxruntime's CPU provider, or CUDA's when ``device`` is
    ``"cuda"`` and this onnxruntime has it (else the CPU; ``device`` says which ran).

    Args:
        path: the ``.onnx`` file.
        device: the device the job chose (``"cpu"``, ``"cuda"``).
        batch_size: most same-size images per session run.
        threads: onnxruntime's intra-op threads (default: torch's, so both runtimes use the
            same cores).

    Raises:
        ValueError: the file is missing, is not a model onnxruntime can load, or breaks the
            input/output convention (one line naming the file).
    """

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 1, *,
                 threads: int | None = None) -> None:
        import onnxruntime as ort
        import torch

        from dsfd.checkpoint import sha256_file
        from dsfd.postprocess import PostprocessConfig

        spec = PREFIX + path
        if not os.path.isfile(path):
            raise ValueError(f"model {spec!r}: no such file {path}")
        if batch_size < 1:
            raise ValueError(f"model {spec!r}: batch_size must be >= 1, got {batch_size}")
        use_cuda = device.startswith("cuda") and \
            "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, sess_options=options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"model {spec!r}: onnxruntime cannot load {path}: "
                             f"{first[:300]}") from None
        self.input_name = _check_convention(spec, self.session)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.config = _postprocess_config(spec, meta.get("dsfd.postprocess"), PostprocessConfig)
        self.device = "cuda" if use_cuda else "cpu"
        self.batch_size = batch_size
        checksum = sha256_file(path)
        exported_from = _json_or_text(meta.get("dsfd.model"))
        self.identity: dict[str, Any] = {
            "name": f"onnx:{os.path.basename(path)}", "checksum": checksum,
            "file_sha256": checksum, "source": os.path.abspath(path),
            "runtime": "onnxruntime", "version": ort.__version__,
            "exported_from": exported_from,
            # the runtime's version decides results too: a resume under another is refused
            "postprocess": {**asdict(self.config), "onnxruntime_version": ort.__version__}}

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``[3, h, w]`` float32 RGB 0..255, resized as
        :meth:`dsfd.Detector.prepare` resizes for ``max_size`` (not normalised: the graph
        does it)."""
        from dsfd.detector import max_size_scale
        from dsfd.preprocess import image_to_tensor, resize_uint8

        image = image_to_tensor(pixels)  # [3, H, W] float32 0..255
        if max_size is not None:
            scale = max_size_scale(int(image.shape[1]), int(image.shape[2]), max_size)
            if scale != 1.0:
                image = resize_uint8(image, scale)
        return np.ascontiguousarray(image.numpy(), dtype=np.float32)

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Per prepared image, float32 ``(K, 5)`` ``x1 y1 x2 y2 score`` in pixels of the
        original ``(H, W)`` of ``sizes``, score descending."""
        if len(batch) != len(sizes):
            raise ValueError(f"{len(batch)} images but {len(sizes)} sizes")
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, image in enumerate(batch):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"image {index}: expected [3, H, W], got {tuple(image.shape)}")
            groups[tuple(image.shape)].append(index)
        results = [np.zeros((0, 5), np.float32)] * len(batch)
        for shape, members in groups.items():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                stacked = np.stack([batch[i] for i in chunk])  # [n, 3, h, w]
                boxes, scores = self.session.run(list(OUTPUT_NAMES), {self.input_name: stacked})
                for row, i in enumerate(chunk):
                    results[i] = self._select(boxes[row], scores[row], shape, sizes[i])
        return results

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        """Single scale: an exported graph holds one forward (the official multi-scale test
        with flips and box voting runs on the torch model)."""
        height, width = pixels.shape[:2]
        return self.detect_prepared([self.prepare(pixels, max_size=max_size)],
                                    [(height, width)])[0]

    def _select(self, boxes: np.ndarray, scores: np.ndarray, shape: tuple[int, ...],
                size: tuple[int, int]) -> np.ndarray:
        """The project's post-processing of one image's outputs, in original pixels."""
        import torch

        from dsfd.postprocess import detections_from_decoded

        dets = detections_from_decoded(torch.from_numpy(np.asarray(boxes, np.float32)),
                                       torch.from_numpy(np.asarray(scores, np.float32)),
                                       self.config, self.config.post_nms_top_k)
        height, width = size
        factor = dets.new_tensor([width / shape[2], height / shape[1]] * 2 + [1.0])
        return (dets * factor).numpy().astype(np.float32)  # as dsfd.Detector maps them


def _check_convention(spec: str, session: Any) -> str:
    """The input's name, after checking one rank-4 float input and the two outputs."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
        got = ", ".join(f"{i.name} {i.type} rank {len(i.shape)}" for i in inputs)
        raise ValueError(f"model {spec!r}: expected one float32 input [N, 3, H, W], got {got}")
    names = {o.name: len(o.shape) for o in session.get_outputs()}
    if names.get("boxes") != 3 or names.get("scores") != 2:
        raise ValueError(f"model {spec!r}: expected outputs 'boxes' [N, A, 4] and 'scores' "
                         f"[N, A], got {sorted(names)}")
    return str(inputs[0].name)


def _postprocess_config(spec: str, text: str | None, config_type: Any) -> Any:
    """The file's ``dsfd.postprocess`` metadata as a ``PostprocessConfig`` (defaults when
    absent)."""
    if text is None:
        return config_type()
    try:
        values = json.loads(text)
        known = {f.name for f in fields(config_type)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}")
        return config_type(**values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"model {spec!r}: bad 'dsfd.postprocess' metadata: {exc}") from None


def _json_or_text(text: str | None) -> Any:
    """Metadata as JSON when it parses, else the text itself (None when absent)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _open(spec: str, device: str, batch_size: int) -> OnnxFaceDetector:
    return OnnxFaceDetector(spec[len(PREFIX):], device, batch_size)


register_detector("onnx", lambda spec: spec.startswith(PREFIX), _open)
