"""The synthetic benchmark: WIDER FACE and FDDB look-alikes generated from a seed.

Layout written under ``DIR`` (the official layouts, so every reader and evaluator of the
project runs on it unchanged)::

    DIR/synth.json                                        seed, counts, version, rules
    DIR/wider/WIDER_{train,val}/images/EVENT/NAME.jpg
    DIR/wider/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    DIR/wider/eval_tools/ground_truth/wider_face_val.mat, wider_{easy,medium,hard}_val.mat
    DIR/fddb/FDDB-folds/FDDB-fold-{01..10}.txt, FDDB-fold-{01..10}-ellipseList.txt
    DIR/fddb/originalPics/<image_id>.jpg
    DIR/.dsfd-synth-files.jsonl                           every folder and file created

Every image is a pure function of ``(seed, split, index)``: the same seed gives byte-identical
files. A new run over ``DIR`` replaces an earlier benchmark only when ``DIR`` holds nothing but
what the journal ``.dsfd-synth-files.jsonl`` records, unchanged (sha256); it then deletes
exactly those files and folders. Anything else in ``DIR`` (a user's file, an edited file, a
link) makes it refuse before changing anything, naming the first such entry.

The WIDER part has five events (crowd, group, portrait, street, night) and therefore a
WIDER-like face size distribution: many faces under 20 pixels, a tail of large ones. The
easy/medium/hard keep lists follow :class:`SettingRules`; attributes follow
:class:`~pipeline.datasets.synthetic_scene.AttributeRules`. FDDB images hold 1-4 larger faces,
annotated by the ellipse fitted to each drawn head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.datasets.synthetic_scene import (
    AttributeRules,
    RenderedScene,
    SceneFace,
    plan_scene,
    render_scene,
    scene_size,
)

GENERATOR_NAME = "dsfd-synthetic-benchmark"
GENERATOR_VERSION = "1"
INFO_FILE = "synth.json"
WIDER_DIR = "wider"
FDDB_DIR = "fddb"
JOURNAL_FILE = ".dsfd-synth-files.jsonl"

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
_JOURNAL_HEADER: dict[str, Any] = {"generator": GENERATOR_NAME, "journal_version": 1}
_FILE_KEYS = frozenset({"file", "size", "sha256", "gone"})


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


def _file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, hex sha256)`` of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class _FileJournal:
    """Records, as generation goes, every folder and file the generator creates in ``root``.

    The journal ``root/.dsfd-synth-files.jsonl`` holds one JSON object per line: the header
    ``{"generator": GENERATOR_NAME, "journal_version": 1}`` (written by
    :func:`prepare_output_dir`), then ``{"dir": REL}`` before a folder is created,
    ``{"file": REL}`` before a file is created or replaced, ``{"file": REL, "size": N,
    "sha256": H}`` once it is complete and ``{"file": REL, "gone": true}`` once it was renamed
    away. ``REL`` is the ``/``-separated path relative to ``root``; the last line about a file
    gives its state. Each line is flushed before the change it announces, so a killed run
    leaves a journal that covers everything it created.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fh = open(root / JOURNAL_FILE, "a", encoding="utf-8")  # closed by close()

    def close(self) -> None:
        """Close the journal file."""
        self._fh.close()

    def _log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def make_dirs(self, folder: Path) -> None:
        """Create ``folder`` (under the root) and its missing parents, recording each."""
        missing: list[Path] = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for item in reversed(missing):
            self._log({"dir": self._rel(item)})
            item.mkdir()

    def will_write(self, path: Path) -> None:
        """Record that ``path`` is about to be created or replaced; its folder is made."""
        self.make_dirs(path.parent)
        self._log({"file": self._rel(path)})

    def wrote(self, path: Path) -> None:
        """Record the size and sha256 of the complete file ``path``."""
        size, digest = _file_digest(path)
        self._log({"file": self._rel(path), "size": size, "sha256": digest})

    def gone(self, path: Path) -> None:
        """Record that ``path`` was renamed away (it must not exist any more)."""
        self._log({"file": self._rel(path), "gone": True})


def _check_rel(value: object, where: str) -> str:
    """A journal path: relative, ``/``-separated, with no empty, ``.`` or ``..`` part."""
    if not isinstance(value, str) or value.startswith("/") or "\\" in value:
        raise ValueError(f"{where}: bad path {value!r}")
    if value == JOURNAL_FILE or any(p in ("", ".", "..") for p in value.split("/")):
        raise ValueError(f"{where}: bad path {value!r}")
    return value


def _journal_records(path: Path) -> list[Any]:
    """The parsed lines of a journal; a last line cut short (no newline) that does not parse
    is dropped, since its change was never made."""
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{path}:{number}: not a JSON object") from None
    if lines[-1]:
        try:
            records.append(json.loads(lines[-1]))
        except ValueError:
            pass
    return records


def read_journal(root: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """What the journal in ``root`` records: files (``REL`` -> last record) and folders.

    Raises:
        FileNotFoundError: ``root`` has no journal.
        ValueError: the journal is not this generator's, or a line is malformed or names a
            path outside ``root``.
    """
    path = Path(root) / JOURNAL_FILE
    records = _journal_records(path)
    if not records or records[0] != _JOURNAL_HEADER:
        raise ValueError(f"{path}: not a file list of {GENERATOR_NAME} (header {records[:1]})")
    files: dict[str, dict[str, Any]] = {}
    dirs: set[str] = set()
    for number, record in enumerate(records[1:], start=2):
        where = f"{path}:{number}"
        if isinstance(record, dict) and set(record) == {"dir"}:
            dirs.add(_check_rel(record["dir"], where))
        elif isinstance(record, dict) and "file" in record and set(record) <= _FILE_KEYS:
            files[_check_rel(record["file"], where)] = record
        else:
            raise ValueError(f"{where}: unexpected record {record!r}")
    return files, dirs


def _unproven(root: Path, rel: str, files: dict[str, dict[str, Any]]) -> str | None:
    """Why the non-folder entry ``rel`` is not provably the generator's, or None."""
    record = files.get(rel)
    if record is None or record.get("gone"):
        return f"{rel} was not written by dsfd synth"
    if "sha256" not in record:
        return None  # created by a run that stopped before the file was complete
    path = root / rel
    if path.is_symlink() or not path.is_file():
        return f"{rel} is no longer the file dsfd synth wrote"
    if _file_digest(path) != (record["size"], record["sha256"]):
        return f"{rel} was changed since dsfd synth wrote it"
    return None


def first_unproven_entry(
    root: str | os.PathLike[str], files: dict[str, dict[str, Any]], dirs: set[str]
) -> str | None:
    """The first entry under ``root`` (depth first, sorted) that the journal does not prove
    to be the generator's, with the reason; None when every entry is proven.

    A folder is proven when the journal records creating it (a link never is); a file when
    its last record is complete and its size and sha256 still match, or when it was being
    written when a run stopped.
    """
    top = Path(root)
    for current, dirnames, filenames in os.walk(top):
        here = Path(current).relative_to(top)
        names = sorted(dirnames + filenames)
        dirnames.sort()
        for name in names:
            rel = (here / name).as_posix()
            if rel == JOURNAL_FILE:
                continue
            if name in dirnames and not (top / rel).is_symlink():
                if rel not in dirs:
                    return f"{rel}/ was not created by dsfd synth"
                continue
            problem = _unproven(top, rel, files)
            if problem is not None:
                return problem
    return None


def _remove_recorded(root: Path, files: dict[str, dict[str, Any]], dirs: set[str]) -> None:
    """Delete the recorded files that exist, then the recorded folders, deepest first."""
    for rel, record in sorted(files.items()):
        if not record.get("gone") and os.path.lexists(root / rel):
            (root / rel).unlink()
    for rel in sorted(dirs, key=lambda r: (-r.count("/"), r)):
        if (root / rel).is_dir():
            (root / rel).rmdir()


def prepare_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Make ``out_dir`` ready for a generation and start its journal (see :class:`_FileJournal`).

    A missing folder is created and an empty one is used. A folder holding an earlier
    benchmark of this generator loses exactly the files and folders its journal records; that
    happens only when every entry under ``out_dir`` is one the journal records, unchanged.
    ``out_dir`` itself is never removed.

    Raises:
        ValueError: ``out_dir`` is a file, or a non-empty folder without this generator's
            journal, or one holding an entry the generator did not write or a file changed
            since (the one-line message names the first). Nothing is changed then.
    """
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        files, dirs = _earlier_benchmark(path)
        _remove_recorded(path, files, dirs)
    path.mkdir(parents=True, exist_ok=True)
    (path / JOURNAL_FILE).write_text(json.dumps(_JOURNAL_HEADER) + "\n", encoding="utf-8")
    return path


def _earlier_benchmark(path: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The journal of the earlier benchmark in the non-empty folder ``path``, checked against
    the folder's content; raises ValueError (one line) when anything is not proven."""
    if not (path / JOURNAL_FILE).is_file():
        what = (
            "a synthetic benchmark without the list of its files (written by an older dsfd)"
            if is_synthetic_benchmark(path)
            else "no synthetic benchmark"
        )
        raise ValueError(
            f"{path}: folder is not empty and holds {what}; refusing to write into it "
            "(nothing was changed): empty it yourself or choose another --out"
        )
    try:
        files, dirs = read_journal(path)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: unreadable file list ({exc}); refusing to write into it"
        ) from None
    problem = first_unproven_entry(path, files, dirs)
    if problem is not None:
        raise ValueError(
            f"{path}: {problem}; refusing to replace the benchmark (nothing was changed): "
            "move it out of the folder or choose another --out"
        )
    return files, dirs


def _generate_wider_split(
    root: Path,
    config: SynthConfig,
    split: str,
    count: int,
    progress: Progress | None,
    journal: _FileJournal,
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
    root: Path, config: SynthConfig, records: list[Any], journal: _FileJournal
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
    root: Path, config: SynthConfig, progress: Progress | None, journal: _FileJournal
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


def is_synthetic_benchmark(out_dir: str | os.PathLike[str]) -> bool:
    """Whether ``out_dir`` holds a ``synth.json`` written by this generator."""
    info = Path(out_dir) / INFO_FILE
    if not info.is_file():
        return False
    try:
        data = json.loads(info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("generator") == GENERATOR_NAME


def read_synth_info(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``synth.json`` of a generated benchmark.

    Raises:
        ValueError: ``out_dir`` is not a (complete) synthetic benchmark.
    """
    if not is_synthetic_benchmark(out_dir):
        raise ValueError(f"{out_dir}: not a synthetic benchmark (no valid {INFO_FILE})")
    data = json.loads((Path(out_dir) / INFO_FILE).read_text(encoding="utf-8"))
    if data.get("status") != "complete":
        raise ValueError(
            f"{Path(out_dir) / INFO_FILE}: generation did not finish "
            f"(status {data.get('status')!r}); generate it again"
        )
    return data


def _write_info(journal: _FileJournal, data: dict[str, Any]) -> None:
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
    journal = _FileJournal(path)
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
