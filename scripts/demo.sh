#!/usr/bin/env bash
# The main job: set-up (first run only), then the end-to-end demo. Arguments go to `dsfd demo`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$repo/scripts/setup.sh"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
exec dsfd demo "$@"
