"""`dsfd`: the command line. Each subcommand lives in its own module under ``jobs/``.

A subcommand module defines ``configure(parser)`` (add its arguments; no heavy imports) and
``run(args) -> int`` (do the work; imports torch/Ray only when needed). The modules are imported
only when their subcommand is chosen, so ``dsfd eval ...`` never loads torch or Ray.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from jobs.common import CommandError, interrupt_on_sigterm
from pipeline.exports import exporter_names, get_exporter  # names only: no numpy

# subcommand -> (module, one-line help); "eval" and "export" have their own sub-subcommands.
COMMANDS: dict[str, tuple[str, str]] = {
    "detect": ("jobs.detect", "detect faces in image files"),
    "run": ("jobs.run", "run the detector over a dataset on Ray, writing Parquet (resumes)"),
    "label": ("jobs.label", "pseudo-label an image folder or list (resumes)"),
    "train": ("jobs.train", "train DSFD with Ray Train (resumes)"),
    "anchors": ("jobs.anchors", "matched-anchor statistics of a dataset"),
    "report": ("jobs.report", "HTML report with figures from run directories"),
    "synth": ("jobs.synth", "generate the synthetic benchmark"),
    "demo": ("jobs.demo", "the whole path on a generated benchmark"),
}
GROUPS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "eval": (
        "evaluate detections",
        {
            "wider": ("jobs.eval_wider", "WIDER FACE AP (easy/medium/hard) and PR curves"),
            "fddb": ("jobs.eval_fddb", "FDDB discrete and continuous ROC"),
        },
    ),
    "export": (
        "export a run's detections to a label or submission format",
        {**{name: ("jobs.export", get_exporter(name).description) for name in exporter_names()},
         "onnx": ("jobs.export_onnx", "a DSFD model as an ONNX file (dynamic height and width)")},
    ),
}


__all__ = ["CommandError", "build_parser", "main"]


def _add(sub: argparse._SubParsersAction, name: str, module: str, help_: str, chosen: bool):
    parser = sub.add_parser(name, help=help_, description=help_)
    parser.set_defaults(_module=module)
    # Only the chosen subcommand's module is imported (for its arguments).
    if chosen:
        importlib.import_module(module).configure(parser)
    return parser


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dsfd", description="DSFD face detection on Ray")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    words = [a for a in argv if not a.startswith("-")]
    first, second = (words + ["", ""])[:2]
    for name, (module, help_) in COMMANDS.items():
        _add(sub, name, module, help_, name == first)
    for group, (help_, members) in GROUPS.items():
        gp = sub.add_parser(group, help=help_, description=help_)
        gsub = gp.add_subparsers(dest="subcommand", required=True, metavar="KIND")
        for name, (module, mhelp) in members.items():
            _add(gsub, name, module, mhelp, group == first and name == second)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        previous = signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return int(module.run(args) or 0)
    except CommandError as exc:
        print(f"dsfd {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError) as exc:
        print(f"dsfd {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        hint = f"; {exc}" if str(exc) else ""
        print(f"dsfd {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
