"""The synthetic benchmark generator (``dsfd synth``), apart from the readers.

:mod:`~pipeline.synthetic.generator` writes a benchmark in the WIDER FACE and FDDB layouts from
a seed, :mod:`~pipeline.synthetic.scene` composes the scenes, :mod:`~pipeline.synthetic.faces`
draws the faces and :mod:`~pipeline.synthetic.journal` records every file written so that a
later run replaces exactly those. The benchmark is read back through the ``synthetic:`` and
``synthetic-fddb:`` dataset kinds (:mod:`pipeline.datasets.synthetic`).
"""

from pipeline.synthetic.generator import (
    EVENTS,
    GENERATOR_VERSION,
    SettingRules,
    SynthConfig,
    fddb_ellipses,
    fddb_fold_of,
    fddb_image_id,
    generate_benchmark,
    render_fddb_image,
    render_wider_image,
    scene_boxes_and_attributes,
    wider_image_id,
)
from pipeline.synthetic.journal import (
    JOURNAL_FILE,
    first_unproven_entry,
    prepare_output_dir,
    read_journal,
)
from pipeline.synthetic.scene import AttributeRules

__all__ = [
    "EVENTS",
    "GENERATOR_VERSION",
    "JOURNAL_FILE",
    "AttributeRules",
    "SettingRules",
    "SynthConfig",
    "fddb_ellipses",
    "fddb_fold_of",
    "fddb_image_id",
    "first_unproven_entry",
    "generate_benchmark",
    "prepare_output_dir",
    "read_journal",
    "render_fddb_image",
    "render_wider_image",
    "scene_boxes_and_attributes",
    "wider_image_id",
]
