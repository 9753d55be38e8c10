"""Training data: the augmented torch dataset addressed by a global sample counter, and the
sampler that gives each data-parallel worker its share of a step (torch, no Ray).

The face boxes come from the dataset registry (:func:`pipeline.datasets.face_records`); images
are decoded by :func:`pipeline.images.decode_image`, as inference decodes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from pipeline.datasets.face_record import FaceRecord
from pipeline.images import ImageReadError, decode_image


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
