"""One line out of a long error: what a command prints when a Ray worker (or Ray Train) fails."""

from __future__ import annotations


def root_cause(exc: BaseException) -> str:
    """The last ``SomeError: message`` line of an error's text (for a Ray error: the worker's
    own exception), else its first line, else the exception's type name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line
    return lines[0] if lines else type(exc).__name__
