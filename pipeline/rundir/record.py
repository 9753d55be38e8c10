"""``run.json``: the run's record (config, model, plan, timing), read, written and compared."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pipeline.rundir.errors import RunDirError
from pipeline.storage import Location, write_whole

RUN_JSON = "run.json"
RUN_FORMAT = 2
RECORD_KIND = "dsfd-run"


def config_digest(config: Mapping[str, Any]) -> str:
    """Hex digest (32 characters) of a JSON-able config, independent of key order."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class UnreadableRecord(RunDirError):
    """``run.json`` exists but cannot be read as a run record (bad UTF-8, truncated JSON)."""


def is_our_record(data: Any) -> bool:
    """Whether a parsed JSON value is a run record of this pipeline (any format)."""
    return isinstance(data, dict) and (data.get("kind") == RECORD_KIND
                                       or (data.get("format") == 1 and "config" in data))


def read_record(path: Location) -> dict[str, Any] | None:
    """The run record at ``path``; None when there is none.

    Raises:
        UnreadableRecord: the file is not UTF-8 JSON (one line naming the file and where).
        RunDirError: the file is JSON but not a run record of this pipeline (foreign).
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnreadableRecord(f"{path}: not UTF-8 (byte {exc.start}); the file is "
                               "damaged") from exc
    except json.JSONDecodeError as exc:
        raise UnreadableRecord(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg}); the file "
                               "is damaged or truncated") from exc
    if not is_our_record(data):
        raise RunDirError(f"{path}: not a dsfd run record; it is not ours to replace: move it "
                          "or choose another --out")
    return dict(data)


def write_record(path: Location, data: Mapping[str, Any], tmp_name: str) -> None:
    """Write ``data`` to ``path`` atomically: on a disk through ``tmp_name`` beside it (fsync,
    rename), on object storage in one object write."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_whole(path, text.encode("utf-8"), tmp_name=tmp_name)


def _diff(old: Any, new: Any, prefix: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                out.append(f"{name}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{name}: {old[key]!r} -> (absent)")
            else:
                _diff(old[key], new[key], name, out)
    elif old != new:
        out.append(f"{prefix}: {old!r} -> {new!r}")


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable ``key: old -> new`` lines for every leaf that differs."""
    out: list[str] = []
    _diff(json.loads(json.dumps(old, default=str)), json.loads(json.dumps(new, default=str)),
          "", out)
    return out
