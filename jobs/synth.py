"""`dsfd synth`: generate the synthetic benchmark (WIDER FACE and FDDB layouts) from a seed.

Writes ``OUT/synth.json``, ``OUT/wider/...``, ``OUT/fddb/...`` and the journal of what it
created, ``OUT/.dsfd-synth-files.jsonl`` (see ``pipeline.synthetic.journal``). A previous
benchmark in ``OUT`` is replaced by deleting exactly the files and folders its journal records;
when ``OUT`` holds anything else (a user's file, an edited file, a link, or no journal), the
command refuses before changing anything and names the first such entry.
"""

from __future__ import annotations

import argparse
import sys
import time

from jobs.common import CommandError


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``dsfd synth``."""
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: empty, new, or an earlier `dsfd synth` output holding nothing "
        "else (its files are replaced)",
    )
    parser.add_argument("--images", type=_count, default=100, help="WIDER val images (100)")
    parser.add_argument("--train-images", type=_count, default=300, help="WIDER train images (300)")
    parser.add_argument(
        "--fddb-images",
        type=_count,
        default=100,
        help="FDDB images over 10 folds (100; 0 for none)",
    )
    parser.add_argument("--seed", type=_count, default=0, help="random seed (0)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def _progress(part: str, done: int, total: int) -> None:
    if done == total or done % 20 == 0:
        print(
            f"\r{part}: {done}/{total}",
            end="\n" if done == total else "",
            file=sys.stderr,
            flush=True,
        )


def run(args: argparse.Namespace) -> int:
    """Generate the benchmark and print a one-line summary per part."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    if args.images < 1:
        raise CommandError("--images must be >= 1 (the val split holds the evaluation files)")
    config = SynthConfig(
        seed=args.seed, num_val=args.images, num_train=args.train_images, num_fddb=args.fddb_images
    )
    start = time.perf_counter()
    try:
        info = generate_benchmark(args.out, config, None if args.quiet else _progress)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    counts = info["counts"]
    val = counts["val"]
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s (seed {args.seed})")
    print(f"  WIDER train: {counts['train']['images']} images, {counts['train']['faces']} faces")
    print(
        f"  WIDER val:   {val['images']} images, {val['faces']} faces "
        f"(easy {val['easy']}, medium {val['medium']}, hard {val['hard']})"
    )
    if "fddb" in counts:
        print(f"  FDDB:        {counts['fddb']['images']} images, {counts['fddb']['faces']} faces")
    return 0
