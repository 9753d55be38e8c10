"""``dsfd export onnx --model SPEC --out FILE.onnx``: a DSFD model (a name, ``shipped``, a
checkpoint of ours, ``release-r152:PATH``) as an ONNX graph with dynamic batch, height and
width, for ``--model onnx:FILE.onnx`` and other runtimes.

The graph holds normalisation, the network, anchors, box decoding and the softmax
(:mod:`dsfd.onnx_export`); score threshold, top-k and NMS run outside it, in the ``onnx:``
detector, with the thresholds stored in the file's metadata. After writing, the file is run
once through onnxruntime against the torch graph and the largest differences are printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from jobs.common import CommandError

NOT_DSFD_PREFIXES = ("onnx:", "py:", "opencv-haar")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shipped", metavar="SPEC",
                        help="a DSFD model: name, 'shipped', checkpoint or release-r152:PATH "
                             "(default: shipped)")
    parser.add_argument("--out", required=True, metavar="FILE.onnx",
                        help="the ONNX file to write (must not exist)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix != ".onnx":
        raise CommandError(f"--out {args.out}: expected a file name ending in .onnx")
    if out.exists():
        raise CommandError(f"--out {args.out}: already exists; remove it or choose another name")
    if not out.parent.is_dir():
        raise CommandError(f"--out {args.out}: folder {out.parent} does not exist")
    if args.model.startswith(NOT_DSFD_PREFIXES):
        raise CommandError(f"--model {args.model}: only DSFD models export to ONNX")
    summary = export_model(args.model, out)
    print(f"wrote {out} ({summary})")
    return 0


def export_model(spec: str, out: Path) -> str:
    """Export the DSFD model ``spec`` to ``out`` (written under a temporary name, then
    renamed) and check it once with onnxruntime; returns a one-line summary."""
    import numpy as np
    import onnxruntime as ort
    import torch

    import dsfd
    from dsfd.onnx_export import INPUT_NAME, DetectionGraph, export_onnx

    model, info = dsfd.load_model(spec, map_location="cpu")
    metadata = {"name": info.name, "checksum": info.checksum, "source": info.source,
                "spec": spec, "config": info.config.to_dict(),
                "torch_version": torch.__version__}
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        export_onnx(model, temporary, metadata=metadata)
        session = ort.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
        example = torch.from_numpy(
            np.random.default_rng(0).uniform(0, 255, (1, 3, 83, 117)).astype(np.float32))
        boxes, scores = session.run(None, {INPUT_NAME: example.numpy()})
        with torch.no_grad():
            want_boxes, want_scores = DetectionGraph(model)(example)
        box_diff = float(np.abs(boxes - want_boxes.numpy()).max())
        score_diff = float(np.abs(scores - want_scores.numpy()).max())
        os.replace(temporary, out)
    finally:
        if temporary.exists():
            temporary.unlink()
    return (f"{info.name}, {boxes.shape[1]} anchors at 83x117; onnxruntime vs torch: "
            f"max |box diff| {box_diff:.2g} px, max |score diff| {score_diff:.2g}")
