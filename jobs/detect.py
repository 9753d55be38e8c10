"""`dsfd detect IMAGE|FOLDER...`: detect faces in image files and print them (table or JSON).

Images are decoded by :func:`pipeline.images.decode_image`, the decoder of ``run``, ``label``,
training and the report (EXIF orientation applied, 16-bit scaled, decompression bombs refused),
so ``detect`` finds the boxes ``run`` finds, in the frame the image is displayed in. A folder
stands for the images under it, listed as the ``folder:`` dataset lists them. An image that
cannot be read costs one line on stderr; the others are still detected and printed, and the
exit status is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from jobs.common import CommandError, note, positive_int, score
from jobs.run import DTYPE_CHOICES, DTYPE_HELP

DEFAULT_MODEL = "shipped"
DEFAULT_MIN_SCORE = 0.5
SHIPPED_NOTE = ("the shipped model was trained on synthetic faces only; for real photographs "
                "use the official checkpoint (--model release-r152:PATH)")
EPILOG = ("Exit status: 0 when every image was read; 1 when an image (or a folder) could not "
          "be read, after the results of the others are printed (one line 'dsfd detect: "
          "error: PATH: REASON' on stderr per such image), or when the model cannot be "
          "loaded; 2 on a usage error.")


def _width(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 4], got {text!r}") from exc
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 4], got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dsfd detect``."""
    parser.epilog = EPILOG
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files or folders; a folder stands for every image under "
                             "it, recursively, sorted by path, hidden entries skipped (as the "
                             "folder: dataset lists it)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model name (vgg16, resnet50, resnet101, resnet152, release-r152; "
                             "random weights), 'shipped', a checkpoint of ours, the official "
                             "state_dict file, or release-r152:PATH. Default: the shipped small "
                             "model, trained on the synthetic benchmark only (for real photos "
                             "use release-r152:PATH)")
    parser.add_argument("--multiscale", action="store_true",
                        help="the official WIDER FACE multi-scale + flip test with box voting")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32", help=DTYPE_HELP)
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="run the model as loaded (default: BatchNorm folded into the "
                             "convolutions and channels-last, when its self-check passes)")
    parser.add_argument("--json", action="store_true",
                        help='print [{"image": PATH, "detections": [[x1, y1, x2, y2, score], '
                             '...]}, ...] (images that were read only)')
    parser.add_argument("--width", type=_width, default=None, metavar="W",
                        help="channel multiplier of a model given by name (default 1.0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--min-score", type=score, default=DEFAULT_MIN_SCORE, metavar="S",
                        help=f"print only boxes scoring at least S, in [0, 1] (default "
                             f"{DEFAULT_MIN_SCORE}; 0 prints every box the detector keeps, up "
                             "to 750 per image)")
    parser.add_argument("--max-pixels", type=positive_int, default=None, metavar="P",
                        help="refuse images with more pixels (default: Pillow's 178956970)")


def _expand(paths: Sequence[str]) -> Iterator[tuple[str, str | None]]:
    """``(path, None)`` per image to read, ``(path, reason)`` per folder that yields none.

    A folder expands to the files :func:`pipeline.datasets.folder.iter_image_files` lists
    (including entries it cannot read, so that each is reported rather than skipped).
    """
    from pipeline.datasets.folder import iter_image_files

    for path in paths:
        if not os.path.isdir(path):
            yield path, None
            continue
        found = False
        try:
            for image_path in iter_image_files(path):
                found = True
                yield image_path, None
        except OSError as exc:
            yield path, f"folder cannot be listed: {exc.strerror or exc}"
            continue
        if not found:
            yield path, "no image files in this folder"


def _load(args: argparse.Namespace) -> Any:
    """The detector ``--model`` names (any spec form of :func:`pipeline.detectors.open_detector`),
    or a DSFD model by name with ``--width``."""
    import torch

    from pipeline.detectors import open_detector

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda: no CUDA device available")
    if args.width is not None:
        import dsfd

        if args.model not in dsfd.MODEL_NAMES:
            raise CommandError("--width applies only to a model given by name")
        model = dsfd.build_model(args.model, width=args.width).to(device).eval()
        try:  # prepare/detect_* as a FaceDetector
            return dsfd.Detector(model, device=device, dtype=args.dtype, batch_size=2,
                                 optimize=args.optimize)
        except ValueError as exc:
            raise CommandError(f"--dtype {args.dtype}: {exc}") from exc
    try:
        # one image at a time; batch 2 lets the multi-scale flip pass share the original's forward
        detector = open_detector(args.model, device, 2, dtype=args.dtype)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    configure = getattr(detector, "configure_inference", None)
    if configure is not None:  # the DSFD family
        configure(optimize=args.optimize, bucket=False, memory_budget=None)
    if args.model == DEFAULT_MODEL:
        note("detect", SHIPPED_NOTE)
    return detector


def _detect(detector: Any, pixels: Any, *, multiscale: bool) -> Any:
    """Float32 ``(K, 5)`` boxes of one ``(H, W, 3)`` image, in its pixels."""
    if multiscale:
        return detector.detect_multiscale(pixels, max_size=None)
    height, width = pixels.shape[:2]
    return detector.detect_prepared([detector.prepare(pixels, max_size=None)],
                                    [(height, width)])[0]


def _print_table(path: str, dets: Any) -> None:
    print(f"{path}: {len(dets)} faces")
    if len(dets):
        print(f"  {'x1':>8} {'y1':>8} {'x2':>8} {'y2':>8} {'score':>6}")
    for x1, y1, x2, y2, box_score in dets.tolist():
        print(f"  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f} {box_score:6.3f}")
    sys.stdout.flush()  # keep the order of stdout and the stderr error lines


def _report_failure(path: str, reason: str) -> None:
    """One line ``dsfd detect: error: PATH: REASON`` (the path once, not twice)."""
    reason = reason.removesuffix(f": {path}")  # the decoder ends some reasons with the path
    print(f"dsfd detect: error: {path}: {reason}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Detect and print, image by image; 0 when every image was read, else 1.

    The model is loaded once the first image has been read, so a command whose images are
    all unreadable reports them without loading a model.
    """
    from pipeline.datasets.folder import utf8_id
    from pipeline.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_image

    max_pixels = args.max_pixels or DEFAULT_MAX_PIXELS
    detector = None
    results: list[tuple[str, Any]] = []
    num_failed = 0
    for path, problem in _expand(args.images):
        shown = utf8_id(path)  # a file name that is not UTF-8 still prints
        if problem is None:
            try:
                pixels = decode_image(path, max_pixels=max_pixels).pixels  # [H, W, 3] RGB
            except ImageReadError as exc:
                problem = str(exc)
        if problem is not None:
            num_failed += 1
            _report_failure(shown, utf8_id(problem))
            continue
        detector = detector if detector is not None else _load(args)
        dets = _detect(detector, pixels, multiscale=args.multiscale)
        dets = dets[dets[:, 4] >= args.min_score]
        if args.json:
            results.append((shown, dets))
        else:
            _print_table(shown, dets)
    if args.json:
        payload = [{"image": image, "detections": [[float(v) for v in row] for row in boxes]}
                   for image, boxes in results]
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    return 1 if num_failed else 0
