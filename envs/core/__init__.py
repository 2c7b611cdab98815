"""The vectorized cluster model: struct-of-arrays state and numba kernels over the batch.

Compiled kernels are cached on disk. Numba keys a cache entry on the source file of the
function itself, not on the functions it calls from other files (the step-time model of
hwmodels is inlined into every replica kernel), so a change there would leave stale machine
code behind. The cache therefore lives in a folder named by a digest of every source file the
kernels are compiled from: any change starts a fresh cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba


def _kernel_sources_digest() -> str:
    root = Path(__file__).resolve().parents[2]
    files = sorted((root / "envs").rglob("*.py")) + [root / "hwmodels" / "steptime.py"]
    h = hashlib.sha256(numba.__version__.encode())
    for f in files:
        if f.exists():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _cache_dir() -> Path:
    base = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("SERVEGYM_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "servegym"
    return root / "numba" / _kernel_sources_digest()


numba.config.CACHE_DIR = str(_cache_dir())
