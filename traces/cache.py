"""Parsed-file cache: .npz files keyed by the sha256 of the file's bytes (not its name or mtime).

A corrupt or unreadable entry is parsed again and rewritten; a cache directory that cannot be
written costs a warning, never a failure, since the cache only saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

CACHE_VERSION = 6  # 2: BurstGPT 0-token rows, dense hash ids, raw file times, Bailian; 3: counts > MAX_TOKENS refused;
# 4: a CSV column named twice in the header, a JSON key given twice in one record refused; 5: an Azure TIMESTAMP
# without a date YYYY-MM-DD (a bare number, read as a year), a file mixing UTC offsets and none, and a CSV number
# with '_' ('1_0' read as 10) refused; 6: an Azure TIMESTAMP with a nonzero digit past the ninth fractional one
# refused (read truncated to nanoseconds before, and served so from a v5 entry)
_ENV = "SERVEGYM_CACHE"


def cache_dir() -> Path:
    """$SERVEGYM_CACHE if set, else ~/.cache/servegym/traces."""
    env = os.environ.get(_ENV)
    return Path(env) if env else Path.home() / ".cache" / "servegym" / "traces"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def entry_path(digest: str, fmt: str, parse_params: dict[str, object]) -> Path:
    extra = hashlib.sha256(json.dumps(parse_params, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / f"{digest}-{fmt}-{extra}-v{CACHE_VERSION}.npz"


def load(entry: Path) -> dict[str, object] | None:
    """The cached arrays and notes, or None when absent or corrupt."""
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as z:
            data: dict[str, object] = {k: z[k] for k in z.files}
        data["notes"] = json.loads(str(data.pop("__notes__")))
        if "block_size" in data:
            data["block_size"] = int(data["block_size"])
        return data
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        return None


def store(entry: Path, parsed: dict[str, object]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written entry."""
    arrays = {k: np.asarray(v) for k, v in parsed.items() if k != "notes" and v is not None}
    arrays["__notes__"] = np.asarray(json.dumps(list(parsed.get("notes", []))))
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"trace cache not written ({entry}): {e}", RuntimeWarning, stacklevel=3)
