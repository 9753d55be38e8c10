"""A Ray address nothing answers at fails in seconds, in one line, without touching --out."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from jobs.cli import main
from tests.pipeline.runner_support import synthetic_root  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("address, reason", [
    (f"127.0.0.1:{_free_port()}", "no Ray cluster answers there (Connection refused)"),
    ("no-such-host.invalid:6379", "cannot resolve host 'no-such-host.invalid'"),
    ("localhost", "expected HOST:PORT"),
])
def test_a_bad_address_fails_fast_in_one_line(
        address: str, reason: str, tmp_path: Path, synthetic_root: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "run"
    start = time.monotonic()
    code = main(["run", "--dataset", f"synthetic:{synthetic_root}", "--out", str(out),
                 "--model", "vgg16", "--address", address])
    seconds = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err, err
    assert err.startswith(f"dsfd run: error: --address {address}: {reason}"), err
    assert seconds < 60  # the vgg16 model is loaded first; the check itself takes < 5 s
    assert not out.exists() or not any(out.iterdir())
