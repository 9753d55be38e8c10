"""WIDER FACE records and ground truth: the in-memory form every WIDER reader yields.

numpy only (no torch, no Ray). Image ids are ``EVENT/NAME`` (no extension), as in the
evaluation files. Boxes are the annotation's ``x y w h`` in integer pixels (``boxes_xywh``,
int32), exactly as written in the files; degenerate boxes (w <= 0 or h <= 0) are kept, because
the official evaluation keeps them. Keep lists are 0-based int64 indices into an image's boxes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "blur",
    "expression",
    "illumination",
    "invalid",
    "occlusion",
    "pose",
)
"""Attribute columns of the annotation txt, in file order (after ``x y w h``)."""

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
"""The three WIDER FACE evaluation settings, in the official order."""


def _as_int32_boxes(boxes: Any, where: str) -> np.ndarray:
    arr = np.asarray(boxes)
    if arr.dtype == np.int32 and arr.ndim == 2 and arr.shape[1] == 4:  # fast path
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: boxes_xywh must have shape (K, 4), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise TypeError(f"{where}: boxes_xywh must hold integers, got dtype {arr.dtype}")
    info = np.iinfo(np.int32)
    if arr.min() < info.min or arr.max() > info.max:
        raise ValueError(f"{where}: boxes_xywh values must fit in int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _as_attributes(attributes: Mapping[str, Any], num_boxes: int, where: str) -> dict:
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{where}: attributes must be a dict, got {type(attributes).__name__}")
    unknown = sorted(set(attributes) - set(ATTRIBUTE_NAMES))
    missing = [a for a in ATTRIBUTE_NAMES if a not in attributes]
    if unknown or missing:
        raise ValueError(
            f"{where}: attribute keys must be {list(ATTRIBUTE_NAMES)}; "
            f"missing {missing}, unknown {unknown}"
        )
    out: dict[str, np.ndarray] = {}
    for name in ATTRIBUTE_NAMES:
        arr = np.asarray(attributes[name]).reshape(-1)
        if arr.dtype == np.uint8 and arr.shape == (num_boxes,):  # fast path: already valid
            out[name] = np.ascontiguousarray(arr)
            continue
        if arr.shape != (num_boxes,):
            raise ValueError(
                f"{where}: attribute {name!r} must have shape ({num_boxes},), got {arr.shape}"
            )
        if arr.size and (arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr))):
            raise ValueError(f"{where}: attribute {name!r} must hold integers in 0..255")
        out[name] = np.ascontiguousarray(arr, dtype=np.uint8)
    return out


@dataclass(frozen=True)
class WiderImageRecord:
    """One annotated image, as written in the annotation txt or the evaluation ``.mat`` files.

    Attributes:
        image_id: ``EVENT/NAME`` without extension, e.g. ``0--Parade/0_Parade_marchingband_1_5``.
        boxes_xywh: (K, 4) int32 ``x y w h`` pixels (left, top, width, height).
        attributes: name -> (K,) uint8 codes for each of :data:`ATTRIBUTE_NAMES`.
        path: the image file when known, else None.

    Inputs are validated and converted (integer-valued arrays become int32/uint8).
    """

    image_id: str
    boxes_xywh: np.ndarray
    attributes: dict[str, np.ndarray]
    path: str | None = None

    def __post_init__(self) -> None:
        event, name = split_image_id(self.image_id)
        where = f"image {self.image_id!r}"
        boxes = _as_int32_boxes(self.boxes_xywh, where)
        object.__setattr__(self, "boxes_xywh", boxes)
        object.__setattr__(self, "attributes", _as_attributes(self.attributes, len(boxes), where))

    @property
    def event(self) -> str:
        """The event folder, e.g. ``0--Parade``."""
        return self.image_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The image name without extension, e.g. ``0_Parade_marchingband_1_5``."""
        return self.image_id.split("/", 1)[1]

    @property
    def num_faces(self) -> int:
        """Number of boxes K."""
        return int(self.boxes_xywh.shape[0])


def split_image_id(image_id: str) -> tuple[str, str]:
    """Split ``EVENT/NAME`` into its two parts, checking the form.

    Raises:
        ValueError: when ``image_id`` is not exactly two non-empty parts or has an extension.
    """
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a str, got {type(image_id).__name__}")
    parts = image_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p != p.strip() for p in parts):
        raise ValueError(f"image_id must be 'EVENT/NAME', got {image_id!r}")
    if parts[1].lower().endswith(".jpg"):
        raise ValueError(f"image_id must not carry the .jpg extension, got {image_id!r}")
    return parts[0], parts[1]


@dataclass(frozen=True)
class WiderImageGT:
    """Ground truth of one image for evaluation.

    Attributes:
        image_id: ``EVENT/NAME``.
        boxes_xywh: (K, 4) int32 ``x y w h`` pixels.
        attributes: name -> (K,) uint8.
        keep: setting name -> (k,) int64 0-based indices into ``boxes_xywh`` of the faces that
            count in that setting (ascending). Only the settings the source defines are present.
    """

    image_id: str
    boxes_xywh: np.ndarray
    attributes: dict[str, np.ndarray]
    keep: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class WiderGroundTruth:
    """Ground truth of a WIDER FACE split, in file order (event by event).

    Attributes:
        images: one :class:`WiderImageGT` per image, in the order of the source file.
        events: event names in first-seen order.
        settings: the settings whose keep lists are known (``()`` for a txt-only source).
        source: where it was read from (for messages).
    """

    images: tuple[WiderImageGT, ...]
    events: tuple[str, ...]
    settings: tuple[str, ...] = ()
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, img in enumerate(self.images):
            if img.image_id in index:
                raise ValueError(f"{self.source}: image {img.image_id!r} appears twice")
            index[img.image_id] = i
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.images)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def __getitem__(self, image_id: str) -> WiderImageGT:
        try:
            return self.images[self._index[image_id]]
        except KeyError:
            raise KeyError(f"{image_id!r} is not an image of {self.source or 'this GT'}") from None

    def __iter__(self) -> Iterator[WiderImageGT]:
        return iter(self.images)

    @property
    def image_ids(self) -> list[str]:
        """Image ids in file order."""
        return [img.image_id for img in self.images]

    def num_faces(self, setting: str | None = None) -> int:
        """Number of boxes (``setting=None``) or of kept faces in ``setting``."""
        if setting is None:
            return int(sum(len(img.boxes_xywh) for img in self.images))
        if setting not in self.settings:
            raise KeyError(f"setting {setting!r} not available; have {list(self.settings)}")
        return int(sum(len(img.keep[setting]) for img in self.images))

    @classmethod
    def from_records(
        cls,
        records: Sequence[WiderImageRecord],
        keep: Mapping[str, Sequence[np.ndarray]] | None = None,
        source: str = "",
    ) -> WiderGroundTruth:
        """Build from records and optional 0-based keep lists (one per record per setting)."""
        keep = dict(keep or {})
        checked = check_keep(records, keep)
        images = tuple(
            WiderImageGT(
                image_id=r.image_id,
                boxes_xywh=r.boxes_xywh,
                attributes=r.attributes,
                keep={s: checked[s][i] for s in checked},
            )
            for i, r in enumerate(records)
        )
        settings = tuple(s for s in SETTINGS if s in checked)
        return cls(images=images, events=events_of(records), settings=settings, source=source)


def events_of(records: Sequence[WiderImageRecord]) -> tuple[str, ...]:
    """Event names of ``records`` in first-seen order."""
    return tuple(dict.fromkeys(r.event for r in records))


def check_keep(
    records: Sequence[WiderImageRecord], keep: Mapping[str, Sequence[np.ndarray]]
) -> dict[str, list[np.ndarray]]:
    """Validate keep lists: ``keep[setting][i]`` indexes ``records[i].boxes_xywh``.

    Returns:
        Setting -> one 0-based, strictly ascending int64 array per record.

    Raises:
        ValueError, TypeError: an unknown setting, a wrong count, or bad indices (named).
    """
    out: dict[str, list[np.ndarray]] = {}
    for setting, lists in keep.items():
        if setting not in SETTINGS:
            raise ValueError(f"keep: unknown setting {setting!r}; expected one of {SETTINGS}")
        if len(lists) != len(records):
            raise ValueError(f"keep[{setting!r}] has {len(lists)} lists for {len(records)} records")
        checked = []
        for rec, idx in zip(records, lists, strict=True):
            arr = np.asarray(idx).reshape(-1)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                if np.any(arr != np.round(arr)):
                    raise TypeError(f"keep[{setting!r}] for {rec.image_id!r}: not integers")
            arr = arr.astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= rec.num_faces):
                raise ValueError(
                    f"keep[{setting!r}] for {rec.image_id!r}: indices must be in "
                    f"0..{rec.num_faces - 1}, got {arr.tolist()}"
                )
            if arr.size > 1 and np.any(np.diff(arr) <= 0):
                raise ValueError(
                    f"keep[{setting!r}] for {rec.image_id!r}: indices must ascend strictly, "
                    f"got {arr.tolist()}"
                )
            checked.append(arr)
        out[setting] = checked
    return out
