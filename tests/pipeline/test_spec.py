"""Dataset SPEC parsing: every form, the defaults, and one-line errors naming spec and forms.

The registry itself (registration, ground truth, face records) is tested in
``test_dataset_registry.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.datasets import DatasetSource, LimitedSource, limit_dataset, open_dataset, valid_forms
from pipeline.datasets.fddb import FddbDataset
from pipeline.datasets.folder import FolderDataset
from pipeline.datasets.listfile import ListFileDataset
from pipeline.datasets.wider import WiderDataset
from pipeline.synthetic import SynthConfig, generate_benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spec") / "bench"
    generate_benchmark(out, SynthConfig(seed=2, num_val=3, num_train=2, num_fddb=10))
    return out


def test_wider_and_synthetic_forms(bench: Path) -> None:
    val = open_dataset(f"synthetic:{bench}")
    assert isinstance(val, WiderDataset) and isinstance(val, DatasetSource)
    assert val.split == "val" and val.root == bench / "wider"
    assert val.name == f"synthetic:{bench}:val"
    train = open_dataset(f"synthetic:{bench}:train")
    assert isinstance(train, WiderDataset) and train.split == "train"
    assert len(list(train.iter_manifest())) == 2 and len(list(val.iter_manifest())) == 3
    wider = open_dataset(f"wider:{bench}/wider")
    assert isinstance(wider, WiderDataset) and wider.split == "val"
    assert [e.image_id for e in wider.iter_manifest()] == [e.image_id for e in val.iter_manifest()]
    assert open_dataset(f"wider:{bench}/wider:train").split == "train"  # type: ignore[attr-defined]
    info = val.describe()
    assert info["kind"] == "synthetic" and info["split"] == "val" and info["num_images"] == 3
    assert info["synthetic"]["seed"] == 2
    assert wider.describe()["kind"] == "wider" and "synthetic" not in wider.describe()
    assert val.describe() != train.describe()
    assert len(val.ground_truth()) == 3  # the reader's ground truth stays reachable


def test_fddb_forms(bench: Path) -> None:
    synth = open_dataset(f"synthetic-fddb:{bench}")
    plain = open_dataset(f"fddb:{bench}/fddb")
    for source in (synth, plain):
        assert isinstance(source, FddbDataset) and isinstance(source, DatasetSource)
        assert len(list(source.iter_manifest())) == 10
    assert synth.describe()["kind"] == "synthetic-fddb" and plain.describe()["kind"] == "fddb"
    assert synth.name == f"synthetic-fddb:{bench}"


def test_folder_and_list_forms(bench: Path, tmp_path: Path) -> None:
    folder = open_dataset(f"folder:{bench}/fddb/originalPics")
    assert isinstance(folder, FolderDataset)
    ids = [e.image_id for e in folder.iter_manifest()]
    assert len(ids) == 10 and all(i.endswith(".jpg") for i in ids)
    listing = tmp_path / "l.txt"
    listing.write_text("a.jpg\n")
    source = open_dataset(f"list:{listing}")
    assert isinstance(source, ListFileDataset) and source.describe()["num_images"] == 1


def test_paths_with_colons(tmp_path: Path) -> None:
    odd = tmp_path / "a:b"
    odd.mkdir()
    source = open_dataset(f"folder:{odd}")
    assert isinstance(source, FolderDataset) and source.root == odd


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("nope:/x", "unknown dataset kind 'nope'"),
        ("/just/a/path", "no KIND: prefix"),
        ("wider:{missing}", "not found"),
        ("wider:{bench}/wider:testing", "unknown split 'testing'"),
        ("synthetic:{bench}:test", "splits train and val"),
        ("synthetic:{tmp}", "not a synthetic benchmark"),
        ("synthetic:{missing}", "not found"),
        ("synthetic-fddb:{missing}", "not found"),
        ("fddb:{tmp}", "FDDB folds folder not found"),
        ("fddb:{missing}", "not found"),
        ("folder:{missing}", "not found"),
        ("folder:", "empty path"),
        ("list:{tmp}", "not a file"),
        ("list:", "not found"),
    ],
)
def test_errors_are_one_line(bench: Path, tmp_path: Path, spec: str, reason: str) -> None:
    text = spec.format(bench=bench, tmp=tmp_path, missing=tmp_path / "missing")
    with pytest.raises(ValueError) as info:
        open_dataset(text)
    message = str(info.value)
    assert reason in message and repr(text) in message and valid_forms() in message
    assert "\n" not in message


def test_incomplete_benchmark_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "b"
    generate_benchmark(out, SynthConfig(seed=0, num_val=1, num_train=0, num_fddb=0))
    info = (out / "synth.json").read_text().replace('"complete"', '"incomplete"')
    (out / "synth.json").write_text(info)
    with pytest.raises(ValueError, match="did not finish"):
        open_dataset(f"synthetic:{out}")
    with pytest.raises(ValueError, match="without an FDDB part"):
        (out / "synth.json").write_text(info.replace('"incomplete"', '"complete"'))
        open_dataset(f"synthetic-fddb:{out}")


def test_spec_must_be_a_string() -> None:
    with pytest.raises(TypeError):
        open_dataset(Path("/x"))  # type: ignore[arg-type]


def test_limited_source_streams_the_first_images_and_says_so(tmp_path) -> None:
    from PIL import Image

    for k in range(5):
        Image.new("RGB", (8, 8)).save(tmp_path / f"img{k}.png")
    source = open_dataset(f"folder:{tmp_path}")
    assert limit_dataset(source, None) is source
    limited = limit_dataset(source, 3)
    assert isinstance(limited, LimitedSource)
    ids = [e.image_id for e in limited.iter_manifest()]
    assert ids == [e.image_id for e in source.iter_manifest()][:3]
    assert limited.describe() == source.describe()  # the run records the limit in its plan
    assert limit_dataset(source, 10).limit == 10
    with pytest.raises(ValueError, match="limit"):
        LimitedSource(source, 0)
