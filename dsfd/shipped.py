"""The small model shipped inside the package (trained on the synthetic benchmark).

It exists so that the demo and first tries give meaningful detections on a CPU in minutes; it
knows only the synthetic faces of ``dsfd synth``. ``dsfd/weights/README.md`` records the exact
command that trained it and its measured AP.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_NAME = "dsfd_synthetic_small.pt"
SHIPPED_SPEC = "shipped"


def shipped_model_path() -> Path:
    """Path of the shipped checkpoint inside the installed package.

    Raises:
        FileNotFoundError: the package was installed without its weights.
    """
    path = Path(__file__).resolve().parent / "weights" / SHIPPED_NAME
    if not path.is_file():
        raise FileNotFoundError(f"the shipped model {path} is missing from this installation")
    return path
