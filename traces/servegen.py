"""ServeGen's production rate records (Alibaba Cloud Model Studio) replayed as days of arrivals.

ServeGen (Xiang et al., "ServeGen: Workload Characterization and Generation of Large Language Model
Serving in Production", NSDI 2026; github.com/alibaba/ServeGen, Apache-2.0) publishes, for each
client of a model, one row per 10-minute window over 14 days
(``data/<category>/<model>/chunk-<client>-trace.csv``): ``window start (s), mean rate (req/s),
coefficient of variation of the inter-arrival times, fitted law (Gamma | Weibull | empty when the
client sent nothing), shape, scale``. The rates are the records' own; only the arrival times
inside a window are drawn.

Arrivals follow ServeGen's own construction (``servegen/construct.py`` ``_sample_iats``): per client
and window, ``ceil(rate x 600)`` inter-arrival times from the fitted law (numpy's Gamma(shape,
scale) / scale x Weibull(shape)), rescaled to fill the window, their running sums the arrival times
after the window's start; the last one falls on the window's end and is dropped, as ServeGen keeps
only times before it (so a window holds ceil(rate x 600) - 1 arrivals). Each arrival is then kept with
probability ``rate_rps / records' mean rate`` (independent thinning keeps every client's
time-varying rate shape), so the 14 days average ``rate_rps`` requests/s. Lengths are not
ServeGen's: its per-client length tables are left out and every request takes ``azure_conv``'s
fitted prompt/output model, as the ``bursty`` generator days do, so a ServeGen day differs from a
generator day in its arrivals only.

A model folder is recognised by its files; the records pinned here (RECORDS) are checked by a
SHA-256 over the trace files in client order, so a different checkout is refused, not silently
replayed. Get it with ``git clone https://github.com/alibaba/ServeGen && git -C ServeGen checkout
f891d1189eb32b3868dfc443800c4150548c282a``.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traces.errors import TraceError
from traces.params import load_params
from traces.trace import Trace, TraceMeta
from traces.checks import is_integer, is_real

__all__ = ["RECORDS", "SERVEGEN_COMMIT", "is_record_file", "is_servegen_dir", "not_the_pinned", "read_records", "records_sha256", "servegen_trace"]

SERVEGEN_URL = "https://github.com/alibaba/ServeGen"
SERVEGEN_COMMIT = "f891d1189eb32b3868dfc443800c4150548c282a"  # 2025-06-09, "Fix SyntaxError in clientpool.py"
WINDOW_S = 600.0  # every record covers 10 minutes
LAWS = ("Gamma", "Weibull")
_FILE = re.compile(r"^chunk-(\d+)-trace\.csv$")
# SHA-256 over (file name, NUL, file bytes) of every chunk-*-trace.csv in client order, at SERVEGEN_COMMIT
RECORDS = {
    "m-large": "72766ccfa8dbf1a933c18ecd877c0832bb1cafe87bdce499f0eb5a1ea7597269",
    "m-mid": "ee7201bdea8e743b20aa30587a16acd95773e00f8bff59a76f42a5917a6d2a91",
    "m-small": "1ebca324aa5876187c5eeddb902081d96fa3838b8e02f5827cbd7775f7c8f410",
}


@dataclass(frozen=True)
class Records:
    """One model's records, one row per (client, window) with a fitted law: window start [R] (s),
    rate [R] (req/s), law [R] (index into LAWS), shape [R], scale [R]; duration_s: the last
    window's end; clients: how many files; sha256: RECORDS' digest of the files."""

    start_s: np.ndarray
    rate: np.ndarray
    law: np.ndarray
    shape: np.ndarray
    scale: np.ndarray
    duration_s: float
    clients: int
    sha256: str


def _files(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m[1]), p) for p in folder.iterdir() if (m := _FILE.match(p.name))]
    return sorted(found)


def is_record_file(path: str | Path) -> bool:
    """Whether `path` is named as one client's ServeGen records (``chunk-<client>-trace.csv``)."""
    return bool(_FILE.match(Path(path).name))


def is_servegen_dir(path: str | Path) -> bool:
    """Whether `path` is a folder holding ServeGen ``chunk-<client>-trace.csv`` files."""
    p = Path(path)
    return p.is_dir() and bool(_files(p))


def records_sha256(folder: str | Path) -> str:
    """RECORDS' digest of `folder`'s chunk-<client>-trace.csv files (SHA-256 over file name, NUL,
    file bytes, in client order); reads the files without parsing them."""
    digest = hashlib.sha256()
    for _, path in _files(Path(folder)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _no_files(folder: Path) -> str:
    return f"{folder}: no ServeGen chunk-<client>-trace.csv files (clone {SERVEGEN_URL} at {SERVEGEN_COMMIT})"


def _unpinned(folder: Path, sha: str, want: str) -> str:
    return (f"{folder}: not the pinned ServeGen records of {folder.name!r} (SHA-256 {sha[:16]}..., pinned "
            f"{want[:16]}...; check out {SERVEGEN_COMMIT})")


def not_the_pinned(folder: str | Path) -> str | None:
    """Why `folder` cannot be replayed as its model's pinned records, or None when it can: no
    chunk-<client>-trace.csv files, or, for a model RECORDS pins, other files (SHA-256). For the
    leaderboard, which skips such a scenario with this reason instead of failing mid-run."""
    folder = Path(folder)
    if not is_servegen_dir(folder):
        return _no_files(folder)
    want = RECORDS.get(folder.name)
    if want is not None and (sha := records_sha256(folder)) != want:
        return _unpinned(folder, sha, want)
    return None


def read_records(folder: str | Path, check: bool = True) -> Records:
    """Parse a ServeGen model folder; TraceError naming the file and line of a malformed row, or,
    with `check`, a folder whose files are not the pinned records of its model (RECORDS)."""
    folder = Path(folder)
    files = _files(folder) if folder.is_dir() else []
    if not files:
        raise TraceError(_no_files(folder))
    digest = hashlib.sha256()
    cols: list[list[float]] = [[], [], [], [], []]
    end = 0.0
    for _, path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line_no = raw.count(b"\n", 0, e.start) + 1
            raise TraceError(f"{path}:{line_no}: not UTF-8 text (byte {raw[e.start]:#04x} "
                             f"at offset {e.start}); ServeGen's records are ASCII CSV") from None
        for no, line in enumerate(text.splitlines(), 1):
            f = line.strip().split(",")
            where = f"{path}:{no}"
            if len(f) != 6:
                raise TraceError(f"{where}: expected 6 fields (start, rate, cv, law, shape, scale), got {len(f)}")
            try:
                t0 = float(f[0])
                rate = float(f[1])
            except ValueError:
                raise TraceError(f"{where}: start and rate must be numbers, got {f[0]!r}, {f[1]!r}") from None
            if not (math.isfinite(t0) and t0 >= 0 and math.isfinite(rate) and rate >= 0):
                raise TraceError(f"{where}: start and rate must be finite and >= 0, got {f[0]!r}, {f[1]!r}")
            end = max(end, t0 + WINDOW_S)
            if f[3] == "":
                if rate != 0:
                    raise TraceError(f"{where}: rate {rate:g} req/s with no fitted law")
                continue
            if f[3] not in LAWS:
                raise TraceError(f"{where}: law must be one of {LAWS} or empty, got {f[3]!r}")
            try:
                shape, scale = float(f[4]), float(f[5])
            except ValueError:
                raise TraceError(f"{where}: shape and scale must be numbers, got {f[4]!r}, {f[5]!r}") from None
            if rate > 0 and not (shape > 0 and scale > 0 and math.isfinite(shape) and math.isfinite(scale)):
                raise TraceError(f"{where}: shape and scale must be finite and > 0, got {f[4]!r}, {f[5]!r}")
            for c, v in zip(cols, (t0, rate, LAWS.index(f[3]), shape, scale)):
                c.append(v)
    sha = digest.hexdigest()
    want = RECORDS.get(folder.name)
    if check and sha != want:
        if want is not None:
            raise TraceError(_unpinned(folder, sha, want))
        raise TraceError(f"{folder}: not the pinned ServeGen records of {folder.name!r} (SHA-256 {sha[:16]}..., "
                         f"pinned models: {', '.join(RECORDS)}); pass check=False for other records")
    a = [np.asarray(c, np.float64) for c in cols]
    return Records(a[0], a[1], a[2].astype(np.int8), a[3], a[4], end, len(files), sha)


def servegen_trace(folder: str | Path, seed: int = 0, rate_rps: float = 60.0, days: int | None = None,
                   check: bool = True) -> Trace:
    """The records of `folder` (a ServeGen ``data/<category>/<model>`` folder) as a Trace.

    rate_rps: mean arrival rate over the replayed span (requests/s, > 0, at most the records' own
    mean as constructed, sum(ceil(rate x 600) - 1) / span: thinning cannot add requests); days:
    the first `days` whole days (default: every whole day the records cover). Same seed, same
    arrivals. Raises TraceError on bad arguments or records (see read_records)."""
    if not isinstance(check, (bool, np.bool_)):
        raise TraceError(f"servegen_trace: check must be True or False for {folder}, got {check!r}")
    rec = read_records(folder, check)
    whole = int(rec.duration_s // 86400.0)
    if days is None:
        days = whole
    if not is_integer(days) or not 1 <= days <= whole:
        raise TraceError(f"servegen_trace: days must be an integer in [1, {whole}] for {folder}, got {days!r}")
    span = days * 86400.0
    sel = rec.start_s < span
    built = np.maximum(np.ceil(rec.rate[sel] * WINDOW_S) - 1, 0)  # arrivals each window gets before thinning
    records_rate = float(built.sum() / span)
    if not is_real(rate_rps) or not 0 < rate_rps <= records_rate:
        raise TraceError(f"servegen_trace: rate_rps must be in (0, {records_rate:.6g}] (the records' mean over "
                         f"{days} day(s) of {folder}, as constructed), got {rate_rps!r}")
    keep_p = float(rate_rps) / records_rate
    rng = np.random.default_rng(seed)
    parts = []
    for t0, rate, law, shape, scale in zip(rec.start_s[sel], rec.rate[sel], rec.law[sel], rec.shape[sel], rec.scale[sel]):
        n = int(math.ceil(rate * WINDOW_S))
        if n < 2:
            continue
        iat = rng.gamma(shape, scale, n) if law == 0 else scale * rng.weibull(shape, n)
        total = float(iat.sum())
        if not total > 0:  # every draw underflowed to 0: spread the window's arrivals evenly
            iat, total = np.ones(n), float(n)
        t = t0 + np.cumsum(iat)[:-1] * (WINDOW_S / total)  # the n-th lands on the window's end: dropped
        parts.append(t[rng.random(n - 1) < keep_p])
    arrival = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
    arrival = arrival[arrival < span]
    from traces.synthetic import _conv_lengths  # the bursty days' length model

    prompt, output = _conv_lengths(rng, arrival.size, load_params("azure_conv"))
    folder = Path(folder)
    meta = TraceMeta(
        f"servegen_{folder.name}",
        f"ServeGen records {folder} ({rec.clients} clients, SHA-256 {rec.sha256[:16]}; {SERVEGEN_URL} at "
        f"{SERVEGEN_COMMIT[:10]}): days 0..{days - 1}, arrivals per ServeGen's construction thinned to "
        f"{rate_rps:g} req/s (x{keep_p:.4g}), seed {seed}; lengths from azure_conv's fitted model",
        "ServeGen records: Apache-2.0 (Alibaba, NSDI 2026); lengths: Azure LLM inference trace 2023 fit (CC-BY 4.0)",
    )
    return Trace(arrival.astype(np.float64), prompt, output, meta)
