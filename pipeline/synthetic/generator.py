"""The synthetic benchmark generator: WIDER FACE and FDDB look-alikes generated from a seed.

Layout written under ``DIR`` (the official layouts, so every reader and evaluator of the
project runs on it unchanged; :mod:`pipeline.datasets.synthetic` reads it back)::

    DIR/synth.json                                        seed, counts, version, rules
    DIR/wider/WIDER_{train,val}/images/EVENT/NAME.jpg
    DIR/wider/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    DIR/wider/eval_tools/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    DIR/fddb/FDDB-folds/FDDB-fold-{01..10}.txt, FDDB-fold-{01..10}-ellipseList.txt
    DIR/fddb/originalPics/<image_id>.jpg
    DIR/.dsfd-synth-files.jsonl                           every folder and file created

Every image is a pure function of ``(seed, split, index)``: the same seed gives byte-identical
files. What a new run over ``DIR`` may replace is decided by the file journal
(:mod:`pipeline.synthetic.journal`).

The WIDER part has five events (crowd, group, portrait, street, night) and therefore a
WIDER-like face size distribution: many faces under 20 pixels, a tail of large ones. The
easy/medium/hard keep lists follow :class:`SettingRules`; attributes follow
:class:`~pipeline.synthetic.scene.AttributeRules`. FDDB images hold 1-4 larger faces,
annotated by the ellipse fitted to each drawn head.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.datasets.synthetic import FDDB_DIR, GENERATOR_NAME, INFO_FILE, WIDER_DIR
from pipeline.synthetic.journal import FileJournal, prepare_output_dir
from pipeline.synthetic.scene import (
    AttributeRules,
    RenderedScene,
    SceneFace,
    plan_scene,
    render_scene,
    scene_size,
)

GENERATOR_VERSION = "1"

# (event folder, scene kind, share of images)
EVENTS: tuple[tuple[str, str, float], ...] = (
    ("0--Synthetic_Crowd", "crowd", 0.25),
    ("1--Synthetic_Group", "group", 0.25),
    ("2--Synthetic_Portrait", "portrait", 0.15),
    ("3--Synthetic_Street", "street", 0.25),
    ("4--Synthetic_Night", "night", 0.10),
)
_SPLIT_STREAMS = {"train": 0, "val": 1, "fddb": 2}  # independent random streams per part
_MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, written by " + GENERATOR_NAME.encode()


@dataclass(frozen=True)
class SettingRules:
    """Which faces count in the easy, medium and hard settings (size = box height, pixels).

    hard: valid faces (invalid 0) at least ``hard_min_height`` tall.
    medium: hard faces at least ``medium_min_height`` tall, not heavily occluded (occlusion
    < 2) and not heavily blurred (blur < 2).
    easy: medium faces at least ``easy_min_height`` tall and clear: occlusion 0, blur 0.
    So easy is a subset of medium, medium of hard, as in WIDER FACE.
    """

    hard_min_height: int = 8
    medium_min_height: int = 20
    easy_min_height: int = 40

    def keep(
        self, boxes_xywh: np.ndarray, attributes: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """0-based indices of the faces kept in each setting.

        Args:
            boxes_xywh: (K, 4) int boxes.
            attributes: WIDER attribute name -> (K,) uint8 codes.

        Returns:
            ``{"easy", "medium", "hard"}`` -> ascending int64 index arrays.
        """
        heights = np.asarray(boxes_xywh).reshape(-1, 4)[:, 3]
        hard = (attributes["invalid"] == 0) & (heights >= self.hard_min_height)
        medium = (
            hard
            & (heights >= self.medium_min_height)
            & (attributes["occlusion"] < 2)
            & (attributes["blur"] < 2)
        )
        easy = (
            medium
            & (heights >= self.easy_min_height)
            & (attributes["occlusion"] == 0)
            & (attributes["blur"] == 0)
        )
        return {
            name: np.flatnonzero(sel).astype(np.int64)
            for name, sel in (("easy", easy), ("medium", medium), ("hard", hard))
        }


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        seed: the random seed; same seed and counts, same files.
        num_val: WIDER val images.
        num_train: WIDER train images.
        num_fddb: FDDB images (spread over 10 folds; 0 writes no FDDB part).
        jpeg_quality: JPEG quality of every image.
        attributes: how rendering becomes attribute codes.
        settings: how attributes and sizes become the easy/medium/hard keep lists.
    """

    seed: int = 0
    num_val: int = 100
    num_train: int = 300
    num_fddb: int = 100
    jpeg_quality: int = 90
    attributes: AttributeRules = field(default_factory=AttributeRules)
    settings: SettingRules = field(default_factory=SettingRules)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("num_val", "num_train", "num_fddb"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.num_val < 1:
            raise ValueError(
                f"num_val must be >= 1 (the evaluation files need images), got {self.num_val}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")


def _rng(seed: int, part: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_STREAMS[part], index])


def wider_image_id(event: str, split: str, index: int) -> str:
    """``EVENT/NAME`` of a synthetic WIDER image.

    Example: ``0--Synthetic_Crowd/0_Synthetic_Crowd_val_7``.
    """
    number, label = event.split("--", 1)
    return f"{event}/{number}_{label}_{split}_{index}"


def render_wider_image(
    seed: int, split: str, index: int, rules: AttributeRules | None = None
) -> tuple[str, RenderedScene]:
    """Render image ``index`` of a WIDER split (``train`` or ``val``).

    Returns:
        ``(image_id, scene)``.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    rng = _rng(seed, split, index)
    shares = np.asarray([share for _, _, share in EVENTS])
    event, kind, _ = EVENTS[int(rng.choice(len(EVENTS), p=shares / shares.sum()))]
    scene = _render_kind(rng, kind, rules or AttributeRules())
    return wider_image_id(event, split, index), scene


def fddb_image_id(fold: int, index: int) -> str:
    """Fold path of a synthetic FDDB image, e.g. ``synth/fold_03/big/img_41``."""
    return f"synth/fold_{fold:02d}/big/img_{index}"


def fddb_fold_of(index: int, num_images: int, num_folds: int = 10) -> int:
    """1-based fold of image ``index`` when ``num_images`` are cut into contiguous folds."""
    return index * num_folds // max(num_images, 1) + 1


def render_fddb_image(
    seed: int, index: int, num_images: int, rules: AttributeRules | None = None
) -> tuple[str, RenderedScene]:
    """Render FDDB image ``index`` of ``num_images``; returns ``(image_id, scene)``."""
    rng = _rng(seed, "fddb", index)
    scene = _render_kind(rng, "fddb", rules or AttributeRules())
    return fddb_image_id(fddb_fold_of(index, num_images), index), scene


def _render_kind(rng: np.random.Generator, kind: str, rules: AttributeRules) -> RenderedScene:
    width, height = scene_size(rng, kind)
    plans, num_distractors = plan_scene(rng, kind, width, height)
    return render_scene(
        rng,
        plans=plans,
        width=width,
        height=height,
        num_distractors=num_distractors,
        dark=kind == "night",
        rules=rules,
    )


def scene_boxes_and_attributes(
    faces: tuple[SceneFace, ...],
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(K, 4) int32 boxes and the WIDER attribute arrays (K,) uint8 of a scene's faces."""
    boxes = np.asarray([f.box_xywh for f in faces], dtype=np.int32).reshape(-1, 4)
    names = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
    attributes = {n: np.asarray([getattr(f, n) for f in faces], dtype=np.uint8) for n in names}
    return boxes, attributes


def fddb_ellipses(faces: tuple[SceneFace, ...]) -> np.ndarray:
    """(K, 5) float64 ``ra rb angle cx cy`` of the valid faces (invalid ones are not
    annotated, as FDDB leaves out faces it cannot annotate)."""
    rows = [f.ellipse for f in faces if not f.invalid]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def save_jpeg(image: np.ndarray, path: Path, quality: int) -> None:
    """Write an (H, W, 3) uint8 RGB array as a baseline JPEG (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, "RGB").save(path, "JPEG", quality=quality, optimize=False)


def pin_mat_header(path: Path) -> None:
    """Replace the creation time in a MAT 5 file's 116-byte header text by a fixed text, so
    that the same content always gives the same bytes (the data part is untouched)."""
    with open(path, "r+b") as fh:
        head = fh.read(116)
        if not head.startswith(b"MATLAB 5.0 MAT-file"):
            raise ValueError(f"{path}: not a MAT 5 file (header {head[:19]!r})")
        fh.seek(0)
        fh.write(_MAT_HEADER_TEXT.ljust(116, b" "))


Progress = Callable[[str, int, int], None]


def _generate_wider_split(
    root: Path,
    config: SynthConfig,
    split: str,
    count: int,
    progress: Progress | None,
    journal: FileJournal,
) -> dict[str, Any]:
    """Render and write one WIDER split; returns its counts (and keep counts for val)."""
    from pipeline.datasets.wider import (
        WiderImageRecord,
        wider_annotation_path,
        wider_images_dir,
        write_wider_annotations,
    )

    records = []
    images_dir = wider_images_dir(root, split)
    for index in range(count):
        image_id, scene = render_wider_image(config.seed, split, index, config.attributes)
        image_path = images_dir / f"{image_id}.jpg"
        journal.will_write(image_path)
        save_jpeg(scene.image, image_path, config.jpeg_quality)
        journal.wrote(image_path)
        boxes, attributes = scene_boxes_and_attributes(scene.faces)
        records.append(WiderImageRecord(image_id, boxes, attributes))
        if progress is not None:
            progress(f"wider {split}", index + 1, count)
    records.sort(key=lambda r: (r.event, r.image_id.rsplit("_", 1)[0], _index_of(r.image_id)))
    annotation_path = wider_annotation_path(root, split)
    journal.will_write(annotation_path)
    write_wider_annotations(annotation_path, records)
    journal.wrote(annotation_path)
    counts: dict[str, Any] = {
        "images": len(records),
        "faces": int(sum(r.num_faces for r in records)),
    }
    if split == "val":
        counts.update(_write_val_eval_files(root, config, records, journal))
    return counts


def _write_val_eval_files(
    root: Path, config: SynthConfig, records: list[Any], journal: FileJournal
) -> dict[str, int]:
    """Write the four evaluation ``.mat`` files of val; returns the easy/medium/hard counts."""
    from pipeline.datasets.wider import (
        ALL_FACES_MAT,
        SETTING_MATS,
        wider_gt_dir,
        write_wider_eval_mats,
    )

    keeps = [config.settings.keep(r.boxes_xywh, r.attributes) for r in records]
    keep = {s: [k[s] for k in keeps] for s in ("easy", "medium", "hard")}
    gt_dir = wider_gt_dir(root)
    for name in (ALL_FACES_MAT, *SETTING_MATS.values()):
        journal.will_write(gt_dir / name)
    for path in write_wider_eval_mats(gt_dir, records, keep).values():
        pin_mat_header(path)
        journal.wrote(path)
    return {s: int(sum(len(k) for k in keep[s])) for s in keep}


def _index_of(image_id: str) -> int:
    return int(image_id.rsplit("_", 1)[1])


def _generate_fddb(
    root: Path, config: SynthConfig, progress: Progress | None, journal: FileJournal
) -> dict[str, Any]:
    """Render and write the FDDB part (10 contiguous folds); returns its counts."""
    from pipeline.datasets.fddb import (
        FOLDS_DIR,
        IMAGE_EXT,
        IMAGES_DIR,
        NUM_FOLDS,
        ellipse_list_name,
        fold_list_name,
        write_fddb_folds,
    )

    folds: list[list[tuple[str, np.ndarray]]] = [[] for _ in range(NUM_FOLDS)]
    num_faces = 0
    for index in range(config.num_fddb):
        image_id, scene = render_fddb_image(config.seed, index, config.num_fddb, config.attributes)
        image_path = root / IMAGES_DIR / f"{image_id}{IMAGE_EXT}"
        journal.will_write(image_path)
        save_jpeg(scene.image, image_path, config.jpeg_quality)
        journal.wrote(image_path)
        ellipses = fddb_ellipses(scene.faces)
        folds[fddb_fold_of(index, config.num_fddb, NUM_FOLDS) - 1].append((image_id, ellipses))
        num_faces += len(ellipses)
        if progress is not None:
            progress("fddb", index + 1, config.num_fddb)
    for fold in range(1, NUM_FOLDS + 1):
        journal.will_write(root / FOLDS_DIR / fold_list_name(fold))
        journal.will_write(root / FOLDS_DIR / ellipse_list_name(fold))
    for path in write_fddb_folds(root, folds):
        journal.wrote(path)
    return {"images": config.num_fddb, "faces": num_faces, "folds": NUM_FOLDS}



def _write_info(journal: FileJournal, data: dict[str, Any]) -> None:
    """Write ``synth.json`` atomically (temporary file, then rename), recorded in the journal."""
    final = journal.root / INFO_FILE
    tmp = final.with_name(f".tmp-{final.name}")
    journal.will_write(tmp)
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    journal.will_write(final)
    os.replace(tmp, final)
    journal.gone(tmp)
    journal.wrote(final)


def generate_benchmark(
    out_dir: str | os.PathLike[str], config: SynthConfig, progress: Progress | None = None
) -> dict[str, Any]:
    """Generate the synthetic benchmark into ``out_dir`` (see the module docstring).

    ``synth.json`` is written first with status ``incomplete`` and last with status
    ``complete`` and the counts. Every folder and file created is recorded in the journal
    ``.dsfd-synth-files.jsonl`` first, so that a later run (after this one finished or was
    killed) removes exactly them (see :func:`prepare_output_dir`).

    Args:
        out_dir: empty or missing folder, or a previous synthetic benchmark of this generator
            holding nothing else (its files are replaced).
        config: what to generate.
        progress: called as ``progress(part, done, total)`` after each image.

    Returns:
        The content of ``synth.json``.

    Raises:
        ValueError: ``out_dir`` cannot be used (see :func:`prepare_output_dir`).
    """
    path = prepare_output_dir(out_dir)
    info: dict[str, Any] = {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "jpeg_quality": config.jpeg_quality,
        "events": [{"event": e, "scene": k, "share": s} for e, k, s in EVENTS],
        "setting_rules": asdict(config.settings),
        "attribute_rules": config.attributes.to_dict(),
        "size_measure": "box height in pixels",
        "fddb_annotation": "ellipse fitted to each drawn head; invalid faces not annotated",
        "status": "incomplete",
    }
    journal = FileJournal(path)
    try:
        _write_info(journal, info)
        wider_root = path / WIDER_DIR
        counts: dict[str, Any] = {
            split: _generate_wider_split(wider_root, config, split, count, progress, journal)
            for split, count in (("train", config.num_train), ("val", config.num_val))
        }
        if config.num_fddb:
            counts["fddb"] = _generate_fddb(path / FDDB_DIR, config, progress, journal)
        info.update(counts=counts, status="complete")
        _write_info(journal, info)
    finally:
        journal.close()
    return info
