"""Training data: face boxes of a dataset spec, and the augmented torch dataset.

Dataset specs understood here:

* ``wider:ROOT[:split]``: a WIDER FACE root (annotation txt plus images); split ``train`` by
  default.
* ``synthetic:DIR[:split]``: the generated benchmark (WIDER layout under ``DIR/wider``); split
  ``train`` by default.
* ``wider-gt:PATH``: boxes only, from the official evaluation ``.mat`` file (``PATH`` is the
  folder holding ``wider_face_val.mat`` or the file itself). The images are absent, so each image
  is assumed to be a canvas of ``max(1024, right-most box edge)`` by ``max(768, lowest box edge)``
  pixels (WIDER FACE images are 1024 pixels wide); the assumed size travels with every record.
  Only for box statistics (``dsfd anchors``), not for training.

Boxes come as the annotations' ``x y w h`` and become ``xyxy = (x, y, x + w, y + h)`` float32.
Boxes narrower or shorter than 2 pixels are dropped, as the official training data loader does
(this also removes the ``0 0 0 0`` placeholders of images without faces).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pipeline.datasets.wider import WiderDataset, read_wider_eval_mat
from pipeline.images import ImageReadError, decode_image, read_image_size

GT_CANVAS_WH: tuple[int, int] = (1024, 768)
MIN_BOX_SIDE = 2


@dataclass(frozen=True)
class FaceRecord:
    """One training image and its faces.

    Attributes:
        image_id: the benchmark's image id (``EVENT/NAME`` for WIDER FACE).
        path: image file, or None for a boxes-only source.
        boxes_xyxy: ``float32 [N, 4]`` xyxy pixels.
        image_hw: ``(height, width)`` when known without decoding (the assumed canvas of a
            boxes-only source), else None.
    """

    image_id: str
    path: str | None
    boxes_xyxy: np.ndarray
    image_hw: tuple[int, int] | None = None


def xywh_to_xyxy_filtered(boxes_xywh: np.ndarray) -> np.ndarray:
    """``[K, 4]`` ``x y w h`` to ``float32 [N, 4]`` xyxy, dropping boxes under 2 px a side."""
    b = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    b = b[(b[:, 2] >= MIN_BOX_SIDE) & (b[:, 3] >= MIN_BOX_SIDE)]
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)


def _canvas_hw(boxes_xyxy: np.ndarray) -> tuple[int, int]:
    width, height = GT_CANVAS_WH
    if len(boxes_xyxy):
        width = max(width, int(np.ceil(boxes_xyxy[:, 2].max())))
        height = max(height, int(np.ceil(boxes_xyxy[:, 3].max())))
    return height, width


def _split_spec(spec: str) -> tuple[str, str, str | None]:
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise ValueError(
            f"dataset spec {spec!r}: expected KIND:PATH[:split] with KIND one of "
            "wider, synthetic, wider-gt"
        )
    path, split = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("train", "val", "test"):
        path, split = head, tail
    return kind, path, split


def load_face_records(spec: str, default_split: str = "train") -> list[FaceRecord]:
    """Face records of a dataset spec (see the module docstring).

    Args:
        spec: ``wider:ROOT[:split]``, ``synthetic:DIR[:split]`` or ``wider-gt:PATH``.
        default_split: the split when the spec names none.

    Returns:
        Records in the dataset's file order.

    Raises:
        ValueError: unknown kind. FileNotFoundError: missing files.
    """
    kind, path, split = _split_spec(spec)
    if kind == "wider-gt":
        mat = Path(path)
        if mat.is_dir():
            mat = mat / "wider_face_val.mat"
        records, _ = read_wider_eval_mat(mat)
        out = []
        for r in records:
            boxes = xywh_to_xyxy_filtered(r.boxes_xywh)
            out.append(FaceRecord(r.image_id, None, boxes, _canvas_hw(boxes)))
        return out
    if kind == "wider":
        root = Path(path)
    elif kind == "synthetic":
        root = Path(path) / "wider"
    else:
        raise ValueError(
            f"dataset spec {spec!r}: unknown kind {kind!r} (expected wider, synthetic, wider-gt)"
        )
    dataset = WiderDataset(root, split or default_split)
    return [
        FaceRecord(r.image_id, r.path, xywh_to_xyxy_filtered(r.boxes_xywh))
        for r in dataset.records()
    ]


def image_hw_of(record: FaceRecord) -> tuple[int, int]:
    """``(height, width)`` of a record: the known size or the image file's header.

    Raises:
        ValueError: no size and no path, or an image file that cannot be read.
    """
    if record.image_hw is not None:
        return record.image_hw
    if record.path is None:
        raise ValueError(f"image {record.image_id!r}: neither a size nor a path")
    try:  # header only, in the frame decode_image gives (EXIF orientation applied)
        width, height = read_image_size(record.path)
    except ImageReadError as exc:
        raise ValueError(f"{record.path}: cannot read image {record.image_id!r}: {exc}") from exc
    return height, width


def describe_records(records: Sequence[FaceRecord]) -> dict[str, int]:
    """Image and face counts (for resolved configs)."""
    return {"num_images": len(records), "num_faces": int(sum(len(r.boxes_xyxy) for r in records))}


class TrainingImages(Dataset):
    """Augmented training samples addressed by a global sample counter (a torch map dataset).

    Sample ``i`` is image ``perm_e[i mod n]`` of epoch ``e = i // n`` (``perm_e`` a permutation
    seeded by ``(seed, e)``), augmented with a generator seeded by ``(seed, i)``. The data a step
    sees is therefore a pure function of the seed and the step, so a resumed run draws exactly
    what an uninterrupted run would, without saving any loader state.

    Images are read with :func:`pipeline.images.decode_image`, as inference reads them (EXIF
    orientation applied, every mode to RGB), so the boxes are in the frame ``run`` sees.

    Args:
        records: the training images (with paths).
        augment: the augmentation policy and training size.
        seed: the run's seed.
        input_format: the model's input format (``model.input_format``).
    """

    def __init__(
        self,
        records: Sequence[FaceRecord],
        augment: Any,
        seed: int,
        input_format: str,
    ) -> None:
        if not records:
            raise ValueError("training dataset has no images")
        missing = [r.image_id for r in records if r.path is None]
        if missing:
            raise ValueError(
                f"training needs image files; {len(missing)} records have none "
                f"(first {missing[0]!r})"
            )
        self.records = list(records)
        self.augment = augment
        self.seed = int(seed)
        self.input_format = input_format
        self._perm: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return 2**62  # addressed by an unbounded counter; the sampler decides what is drawn

    def image_of(self, index: int) -> int:
        """Index into ``records`` of global sample ``index``."""
        epoch, offset = divmod(int(index), len(self.records))
        if epoch not in self._perm:
            self._perm = {
                epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self.records))
            }
        return int(self._perm[epoch][offset])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        """``(input float32 [3, S, S], boxes float32 [M, 4])`` of global sample ``index``."""
        import torch

        from dsfd.augment import augment
        from dsfd.preprocess import normalize

        record = self.records[self.image_of(index)]
        try:
            rgb_pixels = decode_image(str(record.path)).pixels  # [H, W, 3] RGB
        except ImageReadError as exc:
            raise ValueError(f"{record.path}: cannot decode image {record.image_id!r}: "
                             f"{exc}") from exc
        image = np.ascontiguousarray(rgb_pixels[..., ::-1])  # RGB -> BGR, as augment takes
        rng = np.random.default_rng([self.seed, 1, int(index)])
        sample = augment(image, record.boxes_xyxy, rng, self.augment)
        rgb = torch.from_numpy(np.ascontiguousarray(sample.image[..., ::-1]))  # BGR -> RGB
        x = normalize(rgb.permute(2, 0, 1).float(), self.input_format)  # [3, S, S]
        return x, torch.from_numpy(sample.boxes)


def step_indices(step: int, batch_size: int, rank: int, world_size: int) -> list[int]:
    """Global sample indices of one worker's share of a step (slots ``rank::world_size``)."""
    return [step * batch_size + slot for slot in range(rank, batch_size, world_size)]


class StepBatchSampler:
    """Yields, for steps ``start..stop-1``, the sample indices of one worker's share."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int, world_size: int):
        self.start, self.stop = int(start), int(stop)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield step_indices(step, self.batch_size, self.rank, self.world_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def collate(samples: Sequence[tuple[Any, Any]]) -> tuple[Any, list[Any]]:
    """Stack inputs ``[B, 3, S, S]``; keep the per-image boxes as a list."""
    import torch

    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]
