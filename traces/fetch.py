"""Install the public production traces the leaderboard reads, pinned by commit and SHA-256.

    python -m traces.fetch --list
    python -m traces.fetch mooncake_synthetic.jsonl [--dir DIR]
    python -m traces.fetch mooncake_synthetic.jsonl --from PATH   # an offline copy, checked the same way

The project never commits a trace (their licences ask for attribution, and a copy drifts from its
source): scenarios look for a file by name in ``../shared/traces`` beside the project, then in the
fetch cache (``$SERVEGYM_TRACE_DIR``, else ``~/.cache/servegym/public_traces``). Each catalogue entry
(``traces/data/public_traces.toml``) names one upstream commit and the SHA-256 of the file's bytes
there, so an installed file is the one the published numbers were measured on; a download or copy
that differs in size or hash is refused and nothing is left behind. The layout follows
CompilerGym's datasets (a site cache of named, versioned files fetched on demand).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from traces.cache import file_sha256
from traces.errors import TraceError

CATALOGUE_FILE = Path(__file__).resolve().parent / "data" / "public_traces.toml"
SHARED_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"
_FIELDS = ("url", "sha256", "bytes", "source", "licence")


@dataclass(frozen=True)
class PublicTrace:
    """One catalogue entry: ``name`` (the file name scenarios use), its pinned ``url``, ``sha256``
    (hex) and size in ``bytes``, where it comes from (``source``) and its ``licence``."""

    name: str
    url: str
    sha256: str
    bytes: int
    source: str
    licence: str


@functools.lru_cache(maxsize=2)
def catalogue(path: Path = CATALOGUE_FILE) -> dict[str, PublicTrace]:
    """The catalogue, by file name. ``TraceError`` naming the file and entry for a malformed one."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TraceError(f"{path}: cannot read the trace catalogue ({e})") from None
    out = {}
    for name, entry in raw.items():
        missing = [k for k in _FIELDS if k not in entry]
        if missing:
            raise TraceError(f"{path}: [{name!r}] lacks {', '.join(missing)}")
        if len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in entry["sha256"]):
            raise TraceError(f"{path}: [{name!r}] sha256 must be 64 lower-case hex digits")
        out[name] = PublicTrace(name, entry["url"], entry["sha256"], int(entry["bytes"]), entry["source"],
                                entry["licence"])
    return out


def cache_dir() -> Path:
    """Where fetched traces go: ``$SERVEGYM_TRACE_DIR`` if set, else ``~/.cache/servegym/public_traces``."""
    env = os.environ.get("SERVEGYM_TRACE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "servegym" / "public_traces"


def locate(name: str, shared: Path = SHARED_TRACES) -> Path:
    """The path of trace file ``name``: in ``shared`` (``../shared/traces``) if there, else in
    :func:`cache_dir` (which may not exist yet: the caller reports the missing file)."""
    here = shared / name
    return here if here.exists() else cache_dir() / name


def missing_hint(path: str | Path) -> str:
    """What to do about a trace file that is not there (for skip reasons and errors)."""
    name = Path(path).name
    if "ServeGen" in Path(path).parts:
        from traces.servegen import SERVEGEN_COMMIT, SERVEGEN_URL

        return (f"clone {SERVEGEN_URL} into ../shared/traces/ServeGen or {cache_dir() / 'ServeGen'} and check out "
                f"{SERVEGEN_COMMIT}")
    if name in catalogue():
        return f"put it in ../shared/traces or run `python -m traces.fetch {name}`"
    return "../shared/traces absent?"


def not_the_catalogued(path: str | Path) -> str | None:
    """Why trace file ``path`` is not the catalogue's file of its name (size, then SHA-256), or None
    when it is, or when its name is not catalogued or it does not exist (scenarios call this before
    playing an installed trace, so that a truncated or replaced copy is skipped with this reason
    rather than failing mid-run or scoring other data). Hashes are memoized by (path, size, mtime)."""
    path = Path(path)
    entry = catalogue().get(path.name)
    if entry is None or not path.is_file():
        return None
    st = path.stat()
    return _mismatch(entry, path, st.st_size, lambda: _sha256_of(str(path), st.st_size, st.st_mtime_ns))


def _mismatch(entry: PublicTrace, shown: str | Path, size: int, digest: Callable[[], str]) -> str | None:
    """Why a file of ``size`` bytes (shown as ``shown``) is not ``entry``'s: its size, else its
    SHA-256 (``digest()``, only computed when the size matches); None when it is."""
    if size != entry.bytes:
        return f"{shown} has {size} bytes, the catalogue's {entry.name} has {entry.bytes}"
    got = digest()
    if got != entry.sha256:
        return f"{shown} has SHA-256 {got}, the catalogue's {entry.name} has {entry.sha256}"
    return None


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def fetch(name: str, dest: Path | None = None, source: str | Path | None = None) -> Path:
    """Install catalogue file ``name`` into ``dest`` (default :func:`cache_dir`) from its pinned URL,
    or from the local copy ``source``; return its path. An already installed file with the right
    hash is kept. ``TraceError`` (one line, naming the file) for an unknown name, a ``source`` that
    is not a file (also when ``name`` is installed already), a failed download,
    an install directory that cannot be created or written, or a size or SHA-256 other than the
    catalogue's; nothing is written then."""
    cat = catalogue()
    if name not in cat:
        raise TraceError(f"traces.fetch: no public trace {name!r} (have {', '.join(sorted(cat))})")
    entry = cat[name]
    if source is not None and not Path(source).is_file():  # was ignored when the file was installed already
        raise TraceError(f"traces.fetch: cannot read {source} (no such file)")
    dest = cache_dir() if dest is None else Path(dest)
    target = dest / name
    if target.exists() and file_sha256(target) == entry.sha256:
        return target
    created = _missing_dirs(dest)  # removed again unless the file is installed (a refused --from left them)
    installed = False
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", dir=dest)
    except OSError as e:
        _remove_empty(created)
        raise TraceError(f"traces.fetch: cannot write {name} into {dest} ({e.strerror or e})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            if source is not None:
                try:
                    with open(source, "rb") as f:
                        shutil.copyfileobj(f, out)
                except OSError as e:
                    raise TraceError(f"traces.fetch: cannot read {source} ({e.strerror or e})") from None
            else:
                try:
                    with urllib.request.urlopen(entry.url, timeout=60) as r:
                        shutil.copyfileobj(r, out)
                except OSError as e:
                    raise TraceError(f"traces.fetch: download of {name} from {entry.url} failed ({e})") from None
        wrong = _mismatch(entry, source if source is not None else entry.url, tmp.stat().st_size,
                          lambda: file_sha256(tmp))
        if wrong:
            raise TraceError(f"traces.fetch: {wrong}")
        try:
            tmp.chmod(0o644)  # mkstemp's 0600 would hide it from other users of a shared cache
            os.replace(tmp, target)
            installed = True
        except OSError as e:
            raise TraceError(f"traces.fetch: cannot install {target} ({e.strerror or e})") from None
    finally:
        tmp.unlink(missing_ok=True)
        if not installed:
            _remove_empty(created)
    return target


def _missing_dirs(dest: Path) -> list[Path]:
    """The directories that creating ``dest`` makes, deepest first (empty when it exists)."""
    out = []
    while not dest.exists() and dest != dest.parent:
        out.append(dest)
        dest = dest.parent
    return out


def _remove_empty(dirs: list[Path]) -> None:
    """Remove ``dirs`` (deepest first) that exist and are empty; stop at the first that is not."""
    for d in dirs:
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m traces.fetch", description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME", help="catalogue file names (see --list)")
    p.add_argument("--list", action="store_true", help="print the catalogue and where each file is found "
                   "(in --dir when given)")
    p.add_argument("--dir", type=Path, default=None, help="install directory (default: $SERVEGYM_TRACE_DIR "
                   "or ~/.cache/servegym/public_traces)")
    p.add_argument("--from", dest="source", type=Path, default=None,
                   help="install from this local copy instead of downloading (one NAME)")
    a = p.parse_args(argv)
    if not a.list and not a.names:
        p.error("give one or more NAMEs, or --list")
    if a.source is not None and len(a.names) != 1:
        p.error(f"--from takes exactly one NAME, got {len(a.names)}")
    try:
        if a.list:
            for e in catalogue().values():
                where = locate(e.name) if a.dir is None else a.dir / e.name
                wrong = not_the_catalogued(where) if where.exists() else None
                state = "not installed" if not where.exists() else (f"NOT the catalogued file: {wrong}" if wrong
                                                                     else where)
                print(f"{e.name}\t{e.bytes} bytes\t{e.licence}\t{state}\n    {e.source}")
        for name in a.names:
            path = fetch(name, a.dir, a.source)
            print(f"{name}: {path}")
    except TraceError as err:
        print(err, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
