#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and installs the project into it.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only installs what changed).
#
#   DSFD_VENV   where the virtual environment lives (default: .venv in the repository)
#   DSFD_TORCH  the torch requirement installed first when the venv has no torch
#               (default: torch==2.13.0, the CPU wheel; a GPU user installs CUDA torch into
#               the venv first, or points DSFD_VENV at a venv that has it, and it is kept).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DSFD_VENV:-$repo/.venv}"
torch_req="${DSFD_TORCH:-torch==2.13.0}"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup] creating virtual environment $venv" >&2
    python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] installing $torch_req" >&2
    "$py" -m pip install --quiet --disable-pip-version-check "$torch_req"
fi
stamp="$venv/.dsfd-install-stamp"
want="$(sha256sum "$repo/pyproject.toml" | cut -d' ' -f1) $repo"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing the project and its dependencies" >&2
    "$py" -m pip install --quiet --disable-pip-version-check -e "$repo[test]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
