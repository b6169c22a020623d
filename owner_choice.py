"""What the owner chose survives a restart: `miner stop` (paused) and `pin`, kept in PATH_RUNTIME.

A restarted manager must not undo them: it restores them before the first analysis, and the profit
loop saves them whenever they change.
"""
from __future__ import annotations

import config
import utils
from utils import log

RUNTIME_FIELDS = ("paused", "pinned")


def load_runtime(path: str) -> dict:
    """The owner's last `miner stop` / `pin`; wrong types are ignored, a damaged file is reported."""
    try:
        data = utils.read_json(path, default={}, expect=dict)
    except utils.DataFileError as exc:
        log(f"[WARN] {exc}: starting unpaused and unpinned")
        return {}
    out = {}
    if isinstance(data.get("paused"), bool):
        out["paused"] = data["paused"]
    if isinstance(data.get("pinned"), str) and data["pinned"].strip():
        out["pinned"] = data["pinned"].strip()
    return out


def save_runtime(path: str, choice: dict) -> None:
    try:
        utils.atomic_write_json(path, choice)
    except OSError as exc:
        log(f"[WARN] Cannot write {path}: {exc}; a restart will forget paused/pinned")


def owner_choice() -> dict:
    """The owner's current choice, from the run state."""
    return {name: config.state.get(name) for name in RUNTIME_FIELDS}


def restore_runtime(path: str) -> None:
    saved = load_runtime(path)
    if saved:
        config.state.update(**saved)
        log(f"[INFO] Restored from {path}: " + ", ".join(f"{k}={v}" for k, v in saved.items())
            + (" (send \"miner start\" to resume)" if saved.get("paused") else ""), force=True)
