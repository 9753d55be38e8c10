#!/usr/bin/env bash
# The test command: set-up (first run only), lint, type check, then the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" tests/dsfd
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh"
cd "$repo"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_UV_RUN_RUNTIME_ENV=0
echo "[test] ruff" >&2
ruff check dsfd pipeline reports jobs tests benchmarks
echo "[test] mypy" >&2
mypy
echo "[test] pytest" >&2
exec python -m pytest -q "$@"
