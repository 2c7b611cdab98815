"""Which code produced a result: the git commit of the servegym checkout, recorded beside every
leaderboard and training run so that a number can be traced back to the model that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def code_version(root: Path = ROOT) -> dict[str, object]:
    """``{"commit": 40-hex str, "dirty": bool}`` of the git checkout at ``root`` (dirty: tracked
    files differ from the commit); ``{"commit": None, "dirty": None}`` where ``root`` is not a git
    checkout or git is not installed (an installed wheel). Never raises."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": commit.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
