"""onnxruntime against torch on this CPU: the same model, images and threads.

Exports the model (default: the shipped one) with :func:`dsfd.onnx_export.export_onnx`,
generates a synthetic val split, decodes and prepares every image once, then times
``detect_prepared`` (forward + the same post-processing) image by image for the torch detector
and the ``onnx:`` detector, alternating rounds so that load on the machine hits both alike.
Both runtimes get ``--threads`` intra-op threads. Prints images/s per runtime, the ratio, and
how many of the kept boxes agree (IoU >= 0.99, |score diff| < 1e-4).

    .venv/bin/python benchmarks/bench_onnx.py [--model shipped] [--images 20] [--threads 2]
                                              [--rounds 3] [--max-size 640]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shipped")
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-size", type=int, default=None)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from pipeline.boxes import box_iou
    from pipeline.datasets.wider import WiderDataset
    from pipeline.detectors import open_detector
    from pipeline.images import decode_image
    from pipeline.synthetic import SynthConfig, generate_benchmark

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        generate_benchmark(root, SynthConfig(seed=3, num_val=args.images, num_train=0,
                                             num_fddb=0))
        import dsfd
        from dsfd.onnx_export import export_onnx

        model, info = dsfd.load_model(args.model)
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", metadata={"name": info.name})
        detectors = {"torch": open_detector(args.model),
                     "onnxruntime": open_detector(f"onnx:{onnx_path}")}
        images = [decode_image(e.path).pixels
                  for e in WiderDataset(root / "wider", "val").iter_manifest()]
        prepared = {name: [d.prepare(p, max_size=args.max_size) for p in images]
                    for name, d in detectors.items()}
        sizes = [p.shape[:2] for p in images]
        seconds = {name: 0.0 for name in detectors}
        outputs: dict[str, list[np.ndarray]] = {}
        for name, d in detectors.items():  # warm-up (first-call allocations, anchor cache)
            d.detect_prepared(prepared[name][:1], sizes[:1])
        for _ in range(args.rounds):
            for name, d in detectors.items():
                start = time.perf_counter()
                outputs[name] = [d.detect_prepared([x], [s])[0]
                                 for x, s in zip(prepared[name], sizes, strict=True)]
                seconds[name] += time.perf_counter() - start
    total = agree = 0
    for want, got in zip(outputs["torch"], outputs["onnxruntime"], strict=True):
        iou = box_iou(want[:, :4], got[:, :4])
        best = iou.argmax(axis=1)
        agree += int(((iou[np.arange(len(want)), best] >= 0.99)
                      & (np.abs(want[:, 4] - got[best, 4]) < 1e-4)).sum())
        total += len(want)
    count = args.images * args.rounds
    rate = {name: count / s for name, s in seconds.items()}
    mean_hw = np.mean([s for s in sizes], axis=0)
    print(f"model {args.model} ({info.name}, width {info.config.width}), {args.images} "
          f"synthetic images (mean {mean_hw[0]:.0f}x{mean_hw[1]:.0f}), max_size "
          f"{args.max_size}, {args.threads} threads, {args.rounds} rounds; torch "
          f"{torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print("| runtime | images/s | ratio to torch |")
    print("| --- | --- | --- |")
    for name in detectors:
        print(f"| {name} | {rate[name]:.2f} | {rate[name] / rate['torch']:.2f} |")
    print(f"kept boxes agreeing (IoU >= 0.99, |score diff| < 1e-4): {agree}/{total} "
          f"({agree / max(total, 1):.4%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
