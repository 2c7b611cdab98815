"""Which code and machine produced a result: the git commit of the servegym checkout and the
software and CPU it ran on, recorded beside every leaderboard and training run so that a number
can be traced back to the model that made it.

The platform matters for learned agents: their scores are float arithmetic in torch, so a near
tie between two actions can break differently on another CPU or library build (Routing-v0's zoo
agent of 2026-12-01 on the Mooncake main track at load 0.6: 0.941 on the GPU machine's Xeon with
numpy 2.5.2 and torch 2.11, 0.939 on the 2-core dev box with numpy 2.4.6 and torch 2.13, same
commit and episodes; every heuristic equal on both)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
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


PLATFORM_PACKAGES = ("numpy", "numba", "torch", "stable-baselines3", "sb3-contrib")


def _cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo's first "model name"), else ``platform.processor()``
    or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def platform_record() -> dict[str, object]:
    """``{"python": "3.11.7", "machine": "x86_64", "cpu": model name or None, "packages": {name:
    version or None}}`` of this process: what a score may depend on besides the commit (the
    packages in ``PLATFORM_PACKAGES``, None where not installed). Never raises."""
    packages: dict[str, str | None] = {}
    for name in PLATFORM_PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    return {"python": platform.python_version(), "machine": platform.machine(), "cpu": _cpu_model(),
            "packages": packages}
