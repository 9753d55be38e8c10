"""``Detector``: images in, ``[N, 5]`` float32 ``(x1, y1, x2, y2, score)`` arrays out.

The model runs on the second shot only. Images of the same size are batched in one forward;
differently sized images run separately at their own size (no resize unless ``max_size``).
``prepare`` and ``detect_prepared`` are the two halves of ``detect``, so a data pipeline can
decode and normalise on other threads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dsfd.anchors import AnchorSpec
from dsfd.batching import activation_bytes_per_pixel, bucket_hw, pad_batch, split_to_budget
from dsfd.model import Shot
from dsfd.multiscale import (
    KEEP_ALL,
    TestPass,
    multiscale_jobs,
    pass_detections,
    pass_input,
)
from dsfd.nms import box_vote
from dsfd.optimize import InferenceOptions, optimize_for_inference
from dsfd.postprocess import POSTPROCESS_METHODS, PostprocessConfig, postprocess_shot
from dsfd.preprocess import image_to_tensor, normalize, resize_uint8

DEFAULT_POSTPROCESS = PostprocessConfig()
EMPTY_PASS_PLACEHOLDER = (0.0, 0.0, 0.0, 0.0, 0.001)  # what the official detect_face returns
DTYPES = ("float32", "tf32", "bfloat16", "float16")
"""Forward precisions of :class:`Detector`; ``float32`` reproduces the official numbers."""
_AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: str, device: torch.device) -> None:
    """Refuse a forward precision that is unknown, or that ``device`` cannot autocast to.

    Raises:
        ValueError: ``dtype`` is not one of :data:`DTYPES`, or ``device``'s type has no
            autocast for it (one line).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if dtype in _AUTOCAST and not torch.amp.autocast_mode.is_autocast_available(device.type):
        raise ValueError(f"dtype {dtype}: torch {torch.__version__} has no autocast on "
                         f"{device.type}; use float32")


def max_size_scale(height: int, width: int, max_size: int) -> float:
    """The factor that brings the longer side down to ``max_size`` (1.0 when it fits)."""
    longer = max(height, width)
    return max_size / longer if longer > max_size else 1.0


class Detector:
    """Face detection with a DSFD model.

    Args:
        model: a model from :func:`dsfd.build_model` / :func:`dsfd.load_model`.
        device: where to run; defaults to the model's device.
        config: post-processing thresholds.
        batch_size: most same-size images per forward.
        dtype: forward precision, one of :data:`DTYPES`. ``"float32"`` (the default) is the
            reference. ``"tf32"`` lets CUDA matmuls and convolutions use TensorFloat-32, only
            while this detector's forward runs (the global flags are restored after); on the
            CPU it is exactly float32. ``"bfloat16"``/``"float16"`` run the forward under
            ``torch.autocast(device.type, dtype)`` (the weights stay float32). Post-processing
            (softmax, decode, NMS, voting) always runs in float32 on the head outputs cast to
            float32.
        postprocess: one of :data:`dsfd.postprocess.POSTPROCESS_METHODS` (same kept sets;
            ``"auto"``: per image on the CPU, batched tensor code on other devices).
        optimize: run a copy with BatchNorm folded into the convolutions and channels-last
            weights (:mod:`dsfd.optimize`), if its self-check passes (``optimized`` says);
            detections move by float rounding only.
        bucket: batch prepared images of different sizes: each is padded to its size rounded
            up to the largest anchor stride, images of one padded size share a forward, the
            padding yields no detections. Without it only equal sizes share a forward.
        memory_budget: bytes of activations one forward may take (estimated from a
            calibrated bytes-per-pixel figure); larger batches are split. None: no limit.
    """

    def __init__(self, model: nn.Module, *, device: torch.device | str | None = None,
                 config: PostprocessConfig = DEFAULT_POSTPROCESS, batch_size: int = 8,
                 dtype: str = "float32", postprocess: str = "auto", optimize: bool = False,
                 bucket: bool = False, memory_budget: float | None = None) -> None:
        if not isinstance(config, PostprocessConfig):
            raise TypeError(f"config must be a PostprocessConfig, got {type(config).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if device is None:
            device = next(iter(model.parameters())).device
        self.device = torch.device(device)
        check_dtype(dtype, self.device)
        self.dtype = dtype
        if postprocess not in POSTPROCESS_METHODS:
            raise ValueError(f"postprocess must be one of {POSTPROCESS_METHODS}, "
                             f"got {postprocess!r}")
        self.postprocess = postprocess
        self.bucket = bucket
        self.memory_budget = memory_budget
        self._bytes_per_pixel: float | None = None
        self.model = model.to(self.device).eval()
        self.optimized = False
        self.config = config
        self.batch_size = batch_size
        input_format = getattr(model, "input_format", None)
        specs = getattr(model, "anchor_specs", None)
        if not isinstance(input_format, str) or not isinstance(specs, tuple):
            raise TypeError(f"{type(model).__name__} lacks `input_format`/`anchor_specs`; build "
                            "it with dsfd.build_model or dsfd.load_model")
        self.input_format: str = input_format
        self.anchor_spec: AnchorSpec = specs[1]
        self.stride = max(self.anchor_spec.strides)
        if optimize:
            self.model, self.optimized = self._optimized(self.model)

    def _optimized(self, model: nn.Module) -> tuple[nn.Module, bool]:
        """Folded BatchNorm + channels-last copy, or ``model`` itself if the check fails."""
        example = torch.randn(1, 3, 2 * self.stride, 2 * self.stride,
                              generator=torch.Generator().manual_seed(0)).to(self.device)
        try:
            with torch.no_grad():
                return optimize_for_inference(model, example, InferenceOptions(
                    fuse_batchnorm=True, channels_last=True)), True
        except RuntimeError:  # the self-check refused the folded copy: run the original
            return model, False

    @property
    def bytes_per_pixel(self) -> float:
        """Activation bytes per input pixel of one forward (calibrated on first use)."""
        if self._bytes_per_pixel is None:
            self._bytes_per_pixel = activation_bytes_per_pixel(
                self.model, side=2 * self.stride, device=self.device)
        return self._bytes_per_pixel

    def prepare(self, image: Any, *, scale: float = 1.0, max_size: int | None = None) -> Tensor:
        """An image as network input: ``[3, H', W']`` float32 on the CPU.

        Args:
            image: ``[H, W, 3]`` uint8 RGB, ``[H, W]`` uint8 grayscale or a ``PIL.Image``.
            scale: resize factor (cv2 ``INTER_LINEAR`` semantics, see :mod:`dsfd.preprocess`).
            max_size: instead of ``scale``: downscale so the longer side is ``max_size`` when
                it exceeds it (as :meth:`detect` does).

        Returns:
            Colour order and mean of ``model.input_format``; ``H' = round(H * scale)``.
        """
        pixels = image_to_tensor(image)  # [3, H, W] RGB 0..255
        if max_size is not None:
            scale = max_size_scale(int(pixels.shape[1]), int(pixels.shape[2]), max_size)
        if scale != 1.0:
            pixels = resize_uint8(pixels, scale)
        return normalize(pixels, self.input_format)

    @contextmanager
    def _precision(self) -> Iterator[None]:
        """The forward's precision context (nothing for float32, and for tf32 on the CPU)."""
        if self.dtype in _AUTOCAST:
            with torch.autocast(self.device.type, dtype=_AUTOCAST[self.dtype]):
                yield
        elif self.dtype == "tf32" and self.device.type == "cuda":
            matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
            try:
                yield
            finally:  # other code in the process keeps its own setting
                torch.backends.cuda.matmul.allow_tf32 = matmul
                torch.backends.cudnn.allow_tf32 = cudnn
        else:
            yield

    @torch.inference_mode()
    def _infer(self, batch: Tensor, top_k: int | None,
               image_hw: Sequence[tuple[int, int]] | None = None) -> list[Tensor]:
        """``[N, 3, H, W]`` network input -> N ``[K, 5]`` detections in input pixels
        (``image_hw``: each image's own size inside a padded batch)."""
        batch = batch.to(self.device)
        if self.optimized:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with self._precision():
            shot = self.model(batch).second
        if shot.loc.dtype != torch.float32:  # post-processing runs in float32 whatever the forward
            shot = Shot(shot.loc.float(), shot.conf.float(), shot.feature_hw)
        return postprocess_shot(shot, batch.shape[-2:], self.anchor_spec, self.config, top_k,
                                image_hw=image_hw, method=self.postprocess)

    def detect_prepared(self, tensors: Sequence[Tensor],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Detect on prepared inputs; boxes are mapped to each image's original size.

        Args:
            tensors: ``[3, h, w]`` outputs of :meth:`prepare`.
            sizes: original ``(H, W)`` of each image; boxes are scaled by ``W/w``, ``H/h``.

        Returns:
            Per image a float32 ``[K, 5]`` array, score descending.
        """
        if len(tensors) != len(sizes):
            raise ValueError(f"{len(tensors)} tensors but {len(sizes)} sizes")
        for index, t in enumerate(tensors):
            if t.ndim != 3 or t.shape[0] != 3:
                raise ValueError(f"tensor {index}: expected [3, H, W], got {tuple(t.shape)}")
        own = [(int(t.shape[1]), int(t.shape[2])) for t in tensors]
        results: list[np.ndarray] = [np.zeros((0, 5), np.float32)] * len(tensors)
        for chunk in self.planned_batches(own):
            if self.bucket:  # padded to the bucket; the padding is masked
                batch = pad_batch([tensors[i] for i in chunk],
                                  bucket_hw(own[chunk[0]], self.stride))
                dets = self._infer(batch, self.config.post_nms_top_k, [own[i] for i in chunk])
            else:
                dets = self._infer(torch.stack([tensors[i] for i in chunk]),
                                   self.config.post_nms_top_k)
            for i, d in zip(chunk, dets, strict=True):
                (h, w), (h0, w0) = own[i], sizes[i]
                factor = d.new_tensor([w0 / w, h0 / h] * 2 + [1.0])
                results[i] = (d * factor).cpu().numpy().astype(np.float32)
        return results

    def planned_batches(self, shapes: Sequence[tuple[int, int]], *,
                        pad: bool | None = None) -> list[list[int]]:
        """How :meth:`detect_prepared` would group inputs of these ``(h, w)``: index lists,
        one per forward (buckets, batch size and memory budget applied). ``pad``: whether
        sizes may share a padded bucket (default: ``bucket``); False groups equal sizes."""
        bucketed = self.bucket if pad is None else pad
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, hw in enumerate(shapes):
            groups[bucket_hw(hw, self.stride) if bucketed else hw].append(index)
        return [chunk for hw, members in groups.items()
                for chunk in split_to_budget(members, hw, self.bytes_per_pixel
                                             if self.memory_budget else 0.0,
                                             self.memory_budget, self.batch_size)]

    def detect(self, images: Sequence[Any], *, max_size: int | None = None) -> list[np.ndarray]:
        """Detect faces in a list of images (single scale).

        Args:
            images: ``[H, W, 3]`` uint8 RGB / ``[H, W]`` uint8 arrays or ``PIL.Image``s.
            max_size: if given, images whose longer side exceeds it are downscaled so it
                equals ``max_size``; boxes are still returned in original pixels.

        Returns:
            Per image a float32 ``[K, 5]`` array ``(x1, y1, x2, y2, score)``, score descending.
        """
        if not isinstance(images, Sequence) or isinstance(images, str | bytes):
            raise TypeError(f"detect expects a list of images, got {type(images).__name__}")
        if max_size is not None and max_size < 32:
            raise ValueError(f"max_size must be >= 32 pixels, got {max_size}")
        tensors, sizes = [], []
        for image in images:
            pixels = image_to_tensor(image)
            h, w = int(pixels.shape[-2]), int(pixels.shape[-1])
            sizes.append((h, w))
            if max_size is not None and max(h, w) > max_size:
                pixels = resize_uint8(pixels, max_size_scale(h, w, max_size))
            tensors.append(normalize(pixels, self.input_format))
        return self.detect_prepared(tensors, sizes)

    def detect_pass(self, pixels: Tensor, scale: float, flip: bool) -> Tensor:
        """One pass of the multi-scale test on ``[3, H, W]`` RGB pixels (0..255).

        Returns ``[K, 5]`` detections in original pixels (divided by ``scale``, mirrored back
        when ``flip``), NMS-ed but not capped; the official placeholder box when empty.
        """
        test_pass = TestPass(scale, flip, KEEP_ALL)
        img = normalize(pass_input(pixels, test_pass), self.input_format)
        dets = self._infer(img[None], None)[0]
        return pass_detections(dets, test_pass, int(pixels.shape[-1]), EMPTY_PASS_PLACEHOLDER)

    def detect_multiscale(self, image: Any, *, max_size: int | None = None) -> np.ndarray:
        """The official WIDER FACE multi-scale + flip test with box voting.

        Args:
            image: as for :meth:`detect`.
            max_size: if given, an image whose longer side exceeds it is first downscaled so
                it equals ``max_size`` (the test's scales then follow the smaller image);
                boxes are still returned in original pixels.

        Returns:
            float32 ``[K, 5]`` (``K <= post_nms_top_k``), in original pixels, leader order
            (score descending).
        """
        return self.detect_multiscale_batch([image], max_size=max_size)[0]

    def detect_multiscale_batch(self, images: Sequence[Any], *,
                                max_size: int | None = None) -> list[np.ndarray]:
        """:meth:`detect_multiscale` of several images, their passes run as batched work.

        Passes of equal input size share a forward (the flipped pass with its original, the
        same scale of equal-sized images), at most ``batch_size`` per forward and within the
        memory budget; ``batch_size=1`` runs every pass alone. Results equal those of one
        image at a time up to float rounding of the batched forward.

        Returns:
            Per image a float32 ``[K, 5]`` array, as :meth:`detect_multiscale`.
        """
        if not isinstance(images, Sequence) or isinstance(images, str | bytes):
            raise TypeError(f"detect_multiscale_batch expects a list of images, "
                            f"got {type(images).__name__}")
        originals, pixels = [], []
        for image in images:
            p = image_to_tensor(image)
            h0, w0 = int(p.shape[1]), int(p.shape[2])
            if max_size is not None and max(h0, w0) > max_size:
                p = resize_uint8(p, max_size_scale(h0, w0, max_size))
            originals.append((h0, w0))
            pixels.append(p)
        jobs = multiscale_jobs([(int(p.shape[1]), int(p.shape[2])) for p in pixels])
        found: dict[tuple[int, int], Tensor] = {}
        for chunk in self.planned_batches([job.input_hw for job in jobs], pad=False):
            batch = torch.stack([normalize(pass_input(pixels[jobs[i].image], jobs[i].test_pass),
                                           self.input_format) for i in chunk])
            for i, dets in zip(chunk, self._infer(batch, None), strict=True):
                job = jobs[i]
                found[job.image, job.index] = pass_detections(
                    dets, job.test_pass, int(pixels[job.image].shape[-1]), EMPTY_PASS_PLACEHOLDER)
        results = []
        for image, ((h0, w0), p) in enumerate(zip(originals, pixels, strict=True)):
            passes = [found[job.image, job.index] for job in jobs if job.image == image]
            # voting runs where the detections are: its IoU matrices are the costly part
            voted = box_vote(torch.cat(passes), self.config.vote_thresh,
                             self.config.post_nms_top_k)
            boxes = voted.cpu().numpy().astype(np.float32)
            h, w = int(p.shape[1]), int(p.shape[2])
            if (h, w) != (h0, w0):  # back to the original pixels
                boxes = boxes * np.array([w0 / w, h0 / h] * 2 + [1.0], np.float32)
            results.append(boxes)
        return results
