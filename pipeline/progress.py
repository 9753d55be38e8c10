"""Progress display of a pipeline run: a tqdm bar on stderr when it is a terminal."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """Images done, images/s, ETA (when the total is known) and errors so far.

    Quiet (draws nothing) unless ``enabled``; by default enabled only when stderr is a
    terminal, so logs and CI output stay clean.
    """

    def __init__(self, total: int | None, *, initial: int = 0, enabled: bool | None = None,
                 description: str = "detect") -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.errors = 0
        self._bar: Any = None
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit="img", desc=description,
                             file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
            self._bar.set_postfix(errors=0)

    def update(self, num_images: int, num_errors: int = 0) -> None:
        """Count ``num_images`` more images done, ``num_errors`` of them errors."""
        self.errors += num_errors
        if self._bar is not None:
            self._bar.update(num_images)
            self._bar.set_postfix(errors=self.errors, refresh=False)

    def set_total(self, total: int) -> None:
        """Set the total once the manifest has been read to its end (enables the ETA)."""
        if self._bar is not None and self._bar.total != total:
            self._bar.total = total
            self._bar.refresh()

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
