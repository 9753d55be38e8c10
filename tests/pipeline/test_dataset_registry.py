"""The registry of dataset kinds: every kind opens from its spec, one grammar for run and train,
unknown kinds list the registered ones, and a new kind is one ``register`` line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.datasets import (
    DatasetSource,
    DatasetSpec,
    FaceRecord,
    ManifestEntry,
    dataset_kinds,
    face_records,
    ground_truth,
    open_dataset,
    register,
    valid_forms,
)
from pipeline.datasets.fddb import FddbImage
from pipeline.datasets.registry import unregister
from pipeline.datasets.wider import WiderGroundTruth
from pipeline.synthetic import SynthConfig, generate_benchmark

BUILTIN = ("wider", "wider-gt", "fddb", "folder", "list", "synthetic", "synthetic-fddb")


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("registry") / "bench"
    generate_benchmark(out, SynthConfig(seed=4, num_val=3, num_train=2, num_fddb=10))
    return out


def _specs(bench: Path, tmp: Path) -> dict[str, str]:
    """One spec per built-in kind, over the generated benchmark."""
    listing = tmp / "images.txt"
    listing.write_text("a.jpg\nb.jpg\n")
    return {
        "wider": f"wider:{bench}/wider",
        "wider-gt": f"wider-gt:{bench}/wider/eval_tools/ground_truth",
        "fddb": f"fddb:{bench}/fddb",
        "folder": f"folder:{bench}/fddb/originalPics",
        "list": f"list:{listing}",
        "synthetic": f"synthetic:{bench}",
        "synthetic-fddb": f"synthetic-fddb:{bench}",
    }


def test_builtin_kinds_in_a_fixed_order() -> None:
    assert dataset_kinds()[: len(BUILTIN)] == BUILTIN
    forms = valid_forms()
    assert forms.startswith("wider:ROOT[:train|val|test], wider-gt:GT_DIR|MAT_FILE, fddb:ROOT")


def test_every_registered_kind_opens_from_its_spec(bench: Path, tmp_path: Path) -> None:
    specs = _specs(bench, tmp_path)
    assert set(specs) == set(BUILTIN)
    counts = {"wider": 3, "wider-gt": 3, "fddb": 10, "folder": 10, "list": 2, "synthetic": 3,
              "synthetic-fddb": 10}
    for kind, spec in specs.items():
        source = open_dataset(spec)
        assert isinstance(source, DatasetSource), kind
        entries = list(source.iter_manifest())
        assert len(entries) == counts[kind], kind
        assert source.describe()["kind"] == kind
        assert source.name.startswith(f"{kind}:")


def test_wider_gt_lists_the_mat_images_where_wider_val_finds_them(bench: Path) -> None:
    gt = open_dataset(f"wider-gt:{bench}/wider/eval_tools/ground_truth/wider_face_val.mat")
    val = open_dataset(f"wider:{bench}/wider:val")
    assert sorted((e.image_id, e.path) for e in gt.iter_manifest()) == sorted(
        (e.image_id, e.path) for e in val.iter_manifest())
    assert all(Path(e.path).is_file() for e in gt.iter_manifest())


def test_wider_gt_is_accepted_by_run_and_train_alike(bench: Path, data_dir: Path) -> None:
    gt_dir = bench / "wider/eval_tools/ground_truth"
    # run's path: the images; train's and anchors' path: the face boxes.
    opened = open_dataset(f"wider-gt:{gt_dir}")
    records = face_records(f"wider-gt:{gt_dir}")
    assert [r.image_id for r in records] == [e.image_id for e in opened.iter_manifest()]
    assert all(r.path is None and r.image_hw is not None for r in records)
    assert all(r.image_hw[1] >= 1024 and r.image_hw[0] >= 768 for r in records)  # type: ignore[index]
    # The official val boxes (no images beside them): boxes yes, images no, one-line reason.
    official = face_records(f"wider-gt:{data_dir / 'wider_val_gt'}")
    assert len(official) == 3226 and isinstance(official[0], FaceRecord)
    with pytest.raises(ValueError, match="no images beside") as info:
        open_dataset(f"wider-gt:{data_dir / 'wider_val_gt'}")
    assert "\n" not in str(info.value)


def test_face_records_of_wider_and_synthetic_agree(bench: Path) -> None:
    synth = face_records(f"synthetic:{bench}")  # train by default
    wider = face_records(f"wider:{bench}/wider")
    assert [r.image_id for r in synth] == [r.image_id for r in wider] and len(synth) == 2
    for a, b in zip(synth, wider, strict=True):
        assert a.path == b.path and Path(str(a.path)).is_file()
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        assert a.boxes_xyxy.dtype == np.float32 and a.image_hw is None
    assert len(face_records(f"synthetic:{bench}", default_split="val")) == 3
    assert len(face_records(f"synthetic:{bench}:val", default_split="train")) == 3


def test_ground_truth_of_each_kind_that_has_one(bench: Path, data_dir: Path) -> None:
    for spec in (f"wider:{bench}/wider", f"synthetic:{bench}",
                 f"wider-gt:{bench}/wider/eval_tools/ground_truth"):
        gt = ground_truth(spec)
        assert isinstance(gt, WiderGroundTruth) and len(gt) == 3
        assert gt.settings == ("easy", "medium", "hard")
    official = ground_truth(f"wider-gt:{data_dir / 'wider_val_gt'}")
    assert len(official) == 3226 and official.settings == ("easy", "medium", "hard")
    for spec in (f"fddb:{bench}/fddb", f"synthetic-fddb:{bench}"):
        annotations = ground_truth(spec)
        assert len(annotations) == 10 and isinstance(annotations[0], FddbImage)


def test_kinds_without_boxes_say_which_have_them(bench: Path) -> None:
    with pytest.raises(ValueError, match=r"kind 'folder' has no face boxes \(kinds with them: "
                                         r"wider, wider-gt, synthetic\)"):
        face_records(f"folder:{bench}")
    with pytest.raises(ValueError, match="kind 'folder' has no ground truth"):
        ground_truth(f"folder:{bench}")


def test_unknown_kind_lists_the_registered_ones(tmp_path: Path) -> None:
    for read in (open_dataset, face_records, ground_truth):
        with pytest.raises(ValueError) as info:
            read(f"coco:{tmp_path}")  # type: ignore[operator]
        message = str(info.value)
        assert "unknown dataset kind 'coco'" in message and "\n" not in message
        for form in ("wider:ROOT", "wider-gt:GT_DIR|MAT_FILE", "fddb:ROOT", "folder:PATH",
                     "list:FILE", "synthetic:DIR", "synthetic-fddb:DIR"):
            assert form in message


def test_train_and_run_share_the_grammar(bench: Path) -> None:
    # The split rules are the same whichever command reads the spec.
    for read in (open_dataset, face_records):
        with pytest.raises(ValueError, match="unknown split 'testing'"):
            read(f"wider:{bench}/wider:testing")  # type: ignore[operator]
        with pytest.raises(ValueError, match="splits train and val"):
            read(f"synthetic:{bench}:test")  # type: ignore[operator]


class _Memory:
    """A dataset kind made up in the test: ``memory:N`` is N images named ``img_K``."""

    def __init__(self, count: int) -> None:
        self.name = f"memory:{count}"
        self.count = count

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        for k in range(self.count):
            yield ManifestEntry(image_id=f"img_{k}", path=f"/nowhere/img_{k}.png")

    def describe(self) -> dict[str, Any]:
        return {"kind": "memory", "num_images": self.count}


def _memory_records(spec: DatasetSpec, default_split: str) -> list[FaceRecord]:
    boxes = np.array([[0, 0, 8, 8]], np.float32)
    return [FaceRecord(f"img_{k}", None, boxes, (16, 16)) for k in range(int(spec.rest))]


@pytest.fixture
def memory_kind() -> Iterator[None]:
    register("memory", lambda spec: _Memory(int(spec.rest)), grammar="memory:N",
             face_records=_memory_records)
    yield
    unregister("memory")


def test_a_new_kind_is_one_register_line(memory_kind: None) -> None:
    source = open_dataset("memory:3")
    assert [e.image_id for e in source.iter_manifest()] == ["img_0", "img_1", "img_2"]
    assert len(face_records("memory:2")) == 2
    assert dataset_kinds()[-1] == "memory" and "memory:N" in valid_forms()
    with pytest.raises(ValueError, match="already registered"):
        register("memory", lambda spec: _Memory(1))


def test_register_checks_the_kind_name() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        register("bad kind", lambda spec: _Memory(1))
    with pytest.raises(ValueError, match="not registered"):
        unregister("never-registered")


@pytest.mark.parametrize(
    ("imports", "forbidden"),
    [
        ("import pipeline.datasets as d; d.dataset_kinds()", ("torch", "ray")),
        ("import pipeline.training.data", ("ray",)),
    ],
)
def test_layering_datasets_without_torch_or_ray_training_data_without_ray(
        imports: str, forbidden: tuple[str, ...]) -> None:
    import subprocess
    import sys

    code = (
        f"import sys; {imports}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
