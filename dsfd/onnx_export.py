"""DSFD models as ONNX graphs in the project's detector convention (``onnx:PATH``).

The graph takes raw pixels and returns decoded boxes and face scores for every anchor; the
selection that follows (score threshold, top-k, NMS, the 750 kept) is
:func:`dsfd.postprocess.detections_from_decoded`, run by the ``onnx:`` detector, so the one
post-processing of the project decides the detections of both runtimes.

Convention (also in ``docs/benchmarking.md``):

- input ``images``: ``[N, 3, H, W]`` float32, RGB, pixel values 0..255 (not normalised: the
  graph applies the model's own normalisation), ``N``, ``H`` and ``W`` dynamic;
- output ``boxes``: ``[N, A, 4]`` float32 xyxy in pixels of the input, ``x2``/``y2``
  exclusive; output ``scores``: ``[N, A]`` float32 face probability in ``[0, 1]``;
- metadata ``dsfd.postprocess``: the :class:`~dsfd.postprocess.PostprocessConfig` as JSON;
  ``dsfd.model``: the source model's name, checksum and config.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsfd.anchors import AnchorSpec
from dsfd.boxes import decode
from dsfd.postprocess import MAX_LOG_SCALE, PostprocessConfig
from dsfd.preprocess import BGR_MEAN, IMAGENET_MEAN, IMAGENET_STD

INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")
OPSET = 18
DEFAULT_POSTPROCESS = PostprocessConfig()


class DetectionGraph(nn.Module):
    """A DSFD model between raw pixels and decoded boxes/scores (the exported graph).

    Args:
        model: a model from :func:`dsfd.load_model` (eval mode), with ``input_format`` and
            ``anchor_specs``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        self.input_format: str = model.input_format  # type: ignore[assignment]
        self.anchor_spec: AnchorSpec = model.anchor_specs[1]  # type: ignore[index,assignment]
        if self.input_format not in ("bgr_mean", "rgb_imagenet"):
            raise ValueError(f"cannot export input_format {self.input_format!r}")

    def normalise(self, images: Tensor) -> Tensor:
        """``[N, 3, H, W]`` RGB 0..255 -> the model's input (as :func:`dsfd.preprocess.normalize`
        does per image, the same float32 operations)."""
        if self.input_format == "bgr_mean":
            mean = torch.tensor(BGR_MEAN, dtype=torch.float32)
            return images.flip(1) - mean[None, :, None, None]  # RGB -> BGR, minus mean
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)
        return (images / 255.0 - mean[None, :, None, None]) / std[None, :, None, None]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``[N, 3, H, W]`` float32 RGB 0..255 -> ``boxes [N, A, 4]``, ``scores [N, A]``."""
        shot = self.model(self.normalise(images)).second
        anchors = graph_anchors(self.anchor_spec, images.shape[-2], images.shape[-1])
        boxes = decode(shot.loc.float(), anchors, max_log_scale=MAX_LOG_SCALE)  # [N, A, 4]
        scores = torch.softmax(shot.conf.float(), dim=-1)[..., 1]  # [N, A]
        return boxes, scores


def graph_anchors(spec: AnchorSpec, height: Any, width: Any) -> Tensor:
    """:func:`dsfd.anchors.make_anchors` with the feature sizes of :func:`feature_sizes`, written
    with tensor operations only so that ``height`` and ``width`` stay dynamic in a graph
    (same float64 arithmetic, then float32).

    Returns:
        ``[A, 4]`` float32 xyxy pixels, level 0 first, row-major.
    """
    sqrt_ratio = math.sqrt(spec.ratio)
    per_level = []
    for size, stride in zip(spec.sizes, spec.strides, strict=True):
        fh = (height + stride - 1) // stride  # ceil(H / stride), the backbones' map size
        fw = (width + stride - 1) // stride
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) * stride  # [fh]
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) * stride  # [fw]
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # [fh, fw] each
        w = torch.full_like(cx, size / sqrt_ratio)
        h = torch.full_like(cx, size * sqrt_ratio)
        per_level.append(torch.stack((cx, cy, w, h), dim=-1).reshape(-1, 4))  # [fh*fw, 4]
    centre = torch.cat(per_level)  # [A, 4] cx, cy, w, h
    if spec.clip:
        hw = torch.stack((torch.as_tensor(width), torch.as_tensor(height))).to(torch.float64)
        scale = hw.repeat(2)  # [W, H, W, H]
        centre = (centre / scale).float().clamp(0.0, 1.0).double() * scale
    x1 = centre[:, 0] - centre[:, 2] / 2
    y1 = centre[:, 1] - centre[:, 3] / 2
    return torch.stack((x1, y1, x1 + centre[:, 2], y1 + centre[:, 3]), dim=-1).float()


def export_onnx(model: nn.Module, out: str | Path, *, metadata: dict[str, Any],
                postprocess: PostprocessConfig = DEFAULT_POSTPROCESS,
                example_hw: tuple[int, int] = (96, 128)) -> Path:
    """Write ``model`` as an ONNX file in the convention of this module.

    Args:
        model: a DSFD model (eval mode, CPU).
        out: the ``.onnx`` file to write (its folder must exist).
        metadata: the source model's identity, stored as ``dsfd.model`` (JSON-able).
        postprocess: the thresholds the ``onnx:`` detector applies, stored as
            ``dsfd.postprocess``.
        example_hw: the size of the example input traced (any size runs afterwards).

    Returns:
        The path written.
    """
    import onnx  # an optional dependency of export only

    graph = DetectionGraph(model.cpu()).eval()
    example = torch.zeros(1, 3, *example_hw, dtype=torch.float32)
    out = Path(out)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape-dependent Python code
        torch.onnx.export(
            graph, (example,), str(out), input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), opset_version=OPSET, dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                          "boxes": {0: "batch", 1: "anchors"},
                          "scores": {0: "batch", 1: "anchors"}})
    proto = onnx.load(str(out))
    for key, value in (("dsfd.model", json.dumps(metadata, sort_keys=True)),
                       ("dsfd.postprocess", json.dumps(asdict(postprocess), sort_keys=True))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "dsfd"
    onnx.save(proto, str(out))
    return out
