"""Package a training checkpoint as the shipped model (dsfd/weights/).

    python scripts/ship_model.py CKPT_DIR/last.pt --command "dsfd train ..." \
        --synth-command "dsfd synth --out DIR" [--val-ap easy=.. medium=.. hard=..]

Writes ``dsfd/weights/dsfd_synthetic_small.pt`` (model weights and config only: no optimizer
state) and ``dsfd/weights/dsfd_synthetic_small.json`` (the commands that made it, its sha256,
the training config and the measured AP), the record the README and the tests read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "dsfd" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--command", required=True, help="the dsfd train command that made it")
    parser.add_argument("--synth-command", required=True, help="the dsfd synth command")
    parser.add_argument("--val-ap", nargs="*", default=[], metavar="SETTING=AP")
    args = parser.parse_args()

    from dsfd import load_model, save_checkpoint
    from dsfd.checkpoint import read_weights_file

    model, info = load_model(args.checkpoint)
    raw = read_weights_file(args.checkpoint)
    extra = raw.get("extra", {}) if isinstance(raw, dict) else {}
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    out = WEIGHTS / "dsfd_synthetic_small.pt"
    save_checkpoint(out, model, extra={"step": extra.get("step"),
                                       "trained_on": "dsfd synth benchmark (seed 0), train split"})
    record = {
        "file": out.name,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "model": info.name,
        "config": asdict(info.config),
        "step": extra.get("step"),
        "synth_command": args.synth_command,
        "command": args.command,
        "train_config": extra.get("train_config"),
        "val_ap_matlab": {k: float(v) for k, v in (a.split("=", 1) for a in args.val_ap)},
    }
    (WEIGHTS / "dsfd_synthetic_small.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
