"""Five trials of the fault soak (``benchmarks/soak_faults.py``), one of each kind: an actor
killed through Ray, a worker process SIGKILLed, a driver SIGKILLed and resumed, two drivers
started at once into one folder, a part truncated mid-run; each run must equal the
uninterrupted one with every image once, no partial part, no ``.tmp-*`` file, no mixed folder,
and the user's file beside the run untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED = 1


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_one_trial_of_each_fault_kind_passes(tmp_path: Path) -> None:
    summary_file = tmp_path / "soak.json"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run([sys.executable, "benchmarks/soak_faults.py", "--trials", "5",
                           "--cycle", "--seed", str(SEED), "--images", "8", "--json",
                           str(summary_file)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=480)
    assert summary_file.is_file(), done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads(summary_file.read_text())
    assert summary["trials_by_kind"] == {"actor": 1, "worker": 1, "driver": 1,
                                         "concurrent": 1, "truncate": 1}
    assert summary["verdict"] == "PASS", done.stdout[-3000:]
    assert done.returncode == 0
    assert summary["images_found"] == summary["images_expected"] == 40
    assert summary["duplicates"] == summary["partial_files"] == 0
    assert summary["orphaned_tmp_files"] == 0 and summary["unequal_to_uninterrupted"] == 0
    assert summary["mixed_directories"] == 0 and summary["user_files_lost"] == 0
    # a fault that fired after the run ended proves nothing: the file faults always land,
    # and at least one of the process kills must have
    assert summary["faults_by_kind"].get("concurrent") == 1, summary["trials"]
    assert summary["faults_by_kind"].get("truncate") == 1, summary["trials"]
    assert summary["faults_injected"] >= 3, summary["trials"]
