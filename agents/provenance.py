"""Which code produced a result: the git commit of the servegym checkout, recorded beside every
leaderboard and training run so that a number can be traced back to the model that made it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_COMMIT = "SERVEGYM_COMMIT"  # set by a runner that copies a clean tree without its own .git


def code_version(root: Path = ROOT) -> dict[str, object]:
    """``{"commit": 40-hex str, "dirty": bool}`` of the git checkout at ``root`` (dirty: tracked
    files differ from the commit); ``{"commit": None, "dirty": None}`` where ``root`` is not a git
    checkout or git is not installed (an installed wheel).

    Where the environment variable ``SERVEGYM_COMMIT`` is set, it names the commit instead, as
    ``{"commit": ..., "dirty": None, "source": "SERVEGYM_COMMIT"}``: a remote machine that runs a
    copy of a clean checkout has no .git of its own (or a stale one), so the runner says which
    commit it copied. Raises ValueError if that variable is not a 40-hex commit id; otherwise
    never raises."""
    named = os.environ.get(ENV_COMMIT)
    if named is not None:
        if not re.fullmatch(r"[0-9a-f]{40}", named):
            raise ValueError(f"environment variable {ENV_COMMIT}={named!r}: expected a 40-hex git commit id")
        return {"commit": named, "dirty": None, "source": ENV_COMMIT}
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
