"""Up-front check of an output path given on the command line, so that a run that takes minutes
does not end in a traceback when it writes its result."""

from __future__ import annotations

from pathlib import Path


def check_writable(path: str | Path | None, flag: str) -> None:
    """ValueError naming `flag` and `path` when `path` (a file to create or overwrite) cannot be
    written: an existing folder or unwritable file there, or no writable folder to create it in
    (missing folders are created now, as the write would). None passes."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path}: is a folder, expected a file path")
    existed = p.exists()
    try:  # root passes os.access everywhere, so try it: create the folders and open for append
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a"):
            pass
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot write here ({e.strerror or e})") from None
    if not existed:
        p.unlink()
