"""Export formats of a run directory: one registry behind ``dsfd export KIND`` and
``dsfd label --export KIND`` (no torch, no Ray).

Every format is one module with a function ``(run_dir, out, *, min_score, clip) ->``
:class:`ExportSummary` that reads the run through :class:`pipeline.rundir.RunDir`, one shard
at a time, and one registration line below. Importing this package loads no format module
(nor numpy or pyarrow); :meth:`Exporter.export` imports the chosen one.

- ``coco``: one COCO JSON file (:mod:`pipeline.exports.coco`); ``dsfd label`` writes
  ``RUN_DIR/labels.coco.json``; boxes clipped when asked.
- ``wider``: WIDER FACE submission txt files (:mod:`pipeline.exports.wider`);
  ``RUN_DIR/labels.wider/``; boxes clipped when asked.
- ``yolo``: YOLO txt labels (:mod:`pipeline.exports.yolo`); ``RUN_DIR/labels.yolo/``; boxes
  always clipped.
"""

from pipeline.exports.registry import (
    Exporter,
    ExportSummary,
    check_min_score,
    exporter_names,
    get_exporter,
    register,
)

__all__ = ["ExportSummary", "Exporter", "check_min_score", "exporter_names", "get_exporter",
           "register"]

register(Exporter("coco", "COCO JSON file: image entries and face annotations",
                  "labels.coco.json", "pipeline.exports.coco:export_coco", takes_info=True))
register(Exporter("wider", "WIDER FACE submission txt files (one per image, EVENT/NAME.txt)",
                  "labels.wider", "pipeline.exports.wider:export_wider_txt"))
register(Exporter("yolo", "YOLO txt labels (one per image, class 0 = face; boxes clipped)",
                  "labels.yolo", "pipeline.exports.yolo:export_yolo", always_clips=True))
