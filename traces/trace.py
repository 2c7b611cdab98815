"""The Trace type: one request log as struct-of-arrays, validated once at construction.

Everything downstream (envs, agents) indexes these arrays directly, so every invariant that they
rely on is checked here instead of being re-checked (or silently assumed) in the hot path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from traces.errors import TraceError
from traces.checks import is_integer

__all__ = ["MAX_TOKENS", "Trace", "TraceMeta"]

# Largest prompt or output length a trace may hold: int32's maximum, as serving engines and this
# project's cluster model store token counts (envs/core/workload.py). A larger count is refused, with
# the file, line and field when read from a file, instead of wrapping around downstream.
MAX_TOKENS = 2**31 - 1


@dataclass(frozen=True)
class TraceMeta:
    """Where a trace came from and what was done to it (appended to by every transform)."""

    name: str
    source: str
    licence: str
    transforms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("name", "source", "licence"):
            if not isinstance(getattr(self, name), str):
                raise TraceError(f"TraceMeta.{name}: expected a string, got {getattr(self, name)!r}")
        if not isinstance(self.transforms, tuple) or not all(isinstance(t, str) for t in self.transforms):
            raise TraceError(f"TraceMeta.transforms: expected a tuple of strings, got {self.transforms!r}")

    def with_transform(self, description: str) -> "TraceMeta":
        """A copy with one more entry in `transforms`."""
        return TraceMeta(self.name, self.source, self.licence, self.transforms + (description,))


def _check_array(name: str, a: object, dtype: type, n: int | None) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TraceError(f"Trace.{name}: expected a numpy array, got {type(a).__name__}")
    if a.dtype != np.dtype(dtype):
        raise TraceError(
            f"Trace.{name}: expected dtype {np.dtype(dtype)}, got {a.dtype} "
            f"(convert explicitly, e.g. np.asarray(x, dtype=np.{np.dtype(dtype).name}))"
        )
    if a.ndim != 1:
        raise TraceError(f"Trace.{name}: expected a 1-D array, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise TraceError(f"Trace.{name}: expected length {n}, got {a.shape[0]}")
    return a


_ARRAYS = ("arrival_s", "prompt_tokens", "output_tokens", "block_ids", "block_offsets", "tenant", "failed",
           "parent", "turn")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False)
class Trace:
    """A request trace: arrival times, prompt/output lengths and optional prefix-block chains.

    Block chains are stored CSR-style: request i's chain is
    ``block_ids[block_offsets[i]:block_offsets[i+1]]``, one id per `block_size` prompt tokens
    (the last block may be partial), so a chain always has ``ceil(prompt_tokens / block_size)``
    ids. Equal ids mean the same prefix KV block; a block is reusable only with its whole prefix.
    `output_tokens` (and `prompt_tokens`) may be 0 only where `failed` is True (a request the
    source log marks failed; BurstGPT logs some with 0 request tokens too).
    Both are at most MAX_TOKENS (2**31 - 1); a larger count raises TraceError.
    Multi-turn structure (optional, e.g. Bailian traces): `parent[i]` is the index of the
    request whose conversation request i continues (-1 for a first turn or a parent outside the
    trace; always < i) and `turn[i]` its turn number (>= 1).
    Times are seconds; a trace read from a file starts at its first arrival (t = 0).
    The trace holds read-only views of its arrays, so a validated trace cannot be changed in place.
    """

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    meta: TraceMeta
    block_ids: np.ndarray | None = None
    block_offsets: np.ndarray | None = None
    block_size: int | None = None
    tenant: np.ndarray | None = None
    failed: np.ndarray | None = None
    parent: np.ndarray | None = None
    turn: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.meta, TraceMeta):
            raise TraceError(f"Trace.meta: expected TraceMeta, got {type(self.meta).__name__}")
        t = _check_array("arrival_s", self.arrival_s, np.float64, None)
        n = t.shape[0]
        p = _check_array("prompt_tokens", self.prompt_tokens, np.int64, n)
        o = _check_array("output_tokens", self.output_tokens, np.int64, n)
        if n:
            bad = ~np.isfinite(t)
            if bad.any():
                i = _first(bad)
                raise TraceError(f"Trace.arrival_s[{i}] = {t[i]!r}: arrival times must be finite")
            if (t < 0).any():
                i = _first(t < 0)
                raise TraceError(f"Trace.arrival_s[{i}] = {t[i]!r}: arrival times must be >= 0")
            dec = np.diff(t) < 0
            if dec.any():
                i = _first(dec) + 1
                raise TraceError(
                    f"Trace.arrival_s[{i}] = {t[i]!r} < arrival_s[{i - 1}] = {t[i - 1]!r}: "
                    "arrivals must be sorted non-decreasing"
                )
        failed = self.failed
        if failed is not None:
            _check_array("failed", failed, np.bool_, n)
        if n:
            bad = p < (np.where(failed, 0, 1) if failed is not None else 1)
            if bad.any():
                i = _first(bad)
                why = "must be >= 0" if failed is not None and failed[i] else (
                    "must be >= 1 (0 is allowed only where failed[i] is True)")
                raise TraceError(f"Trace.prompt_tokens[{i}] = {p[i]}: {why}")
            min_out = np.where(failed, 0, 1) if failed is not None else 1
            bad = o < min_out
            if bad.any():
                i = _first(bad)
                why = "must be >= 0" if failed is not None and failed[i] else (
                    "must be >= 1 (0 is allowed only where failed[i] is True)")
                raise TraceError(f"Trace.output_tokens[{i}] = {o[i]}: {why}")
            for name, a in (("prompt_tokens", p), ("output_tokens", o)):
                big = a > MAX_TOKENS
                if big.any():
                    i = _first(big)
                    raise TraceError(f"Trace.{name}[{i}] = {a[i]}: must be <= {MAX_TOKENS} (MAX_TOKENS)")
        if self.tenant is not None:
            ten = _check_array("tenant", self.tenant, np.int32, n)
            if n and (ten < 0).any():
                i = _first(ten < 0)
                raise TraceError(f"Trace.tenant[{i}] = {ten[i]}: tenant ids must be >= 0")
        if (self.parent is None) != (self.turn is None):
            raise TraceError("Trace: parent and turn must be given together (multi-turn structure)")
        if self.parent is not None:
            par = _check_array("parent", self.parent, np.int64, n)
            trn = _check_array("turn", self.turn, np.int32, n)
            bad = (par < -1) | (par >= np.arange(n))
            if bad.any():
                i = _first(bad)
                raise TraceError(f"Trace.parent[{i}] = {par[i]}: must be -1 or the index of an earlier request")
            if (trn < 1).any():
                i = _first(trn < 1)
                raise TraceError(f"Trace.turn[{i}] = {trn[i]}: turn numbers start at 1")
        self._check_blocks(n, p)
        for name in _ARRAYS:
            a = getattr(self, name)
            if a is not None:
                view = a.view()
                view.setflags(write=False)
                object.__setattr__(self, name, view)

    def _check_blocks(self, n: int, p: np.ndarray) -> None:
        ids, off, bs = self.block_ids, self.block_offsets, self.block_size
        if ids is None and off is None and bs is None:
            return
        if ids is None or off is None or bs is None:
            raise TraceError(
                "Trace: block_ids, block_offsets and block_size must be given together "
                f"(got block_ids={'set' if ids is not None else None}, "
                f"block_offsets={'set' if off is not None else None}, block_size={bs})"
            )
        if not is_integer(bs) or bs < 1:
            raise TraceError(f"Trace.block_size = {bs!r}: expected an integer >= 1")
        _check_array("block_ids", ids, np.int64, None)
        _check_array("block_offsets", off, np.int64, n + 1)
        if off[0] != 0 or off[-1] != ids.shape[0]:
            raise TraceError(
                f"Trace.block_offsets: must start at 0 and end at len(block_ids) = {ids.shape[0]}, "
                f"got {off[0]} ... {off[-1]}"
            )
        lengths = np.diff(off)
        if (lengths < 0).any():
            i = _first(lengths < 0)
            raise TraceError(f"Trace.block_offsets[{i + 1}] < block_offsets[{i}]: must be non-decreasing")
        if ids.size and (ids < 0).any():
            i = _first(ids < 0)
            raise TraceError(f"Trace.block_ids[{i}] = {ids[i]}: block ids must be >= 0")
        expect = -(-p // int(bs))
        bad = lengths != expect
        if bad.any():
            i = _first(bad)
            raise TraceError(
                f"Trace: request {i} has {lengths[i]} block ids but prompt_tokens = {p[i]} needs "
                f"ceil({p[i]} / {bs}) = {expect[i]} blocks of {bs} tokens"
            )

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def duration_s(self) -> float:
        """Seconds from trace start (t = 0) to the last arrival; 0 for an empty trace."""
        return float(self.arrival_s[-1]) if len(self) else 0.0

    @property
    def rate_rps(self) -> float:
        """Mean arrival rate n / duration_s (0 when empty, inf when all arrive at t = 0)."""
        n, d = len(self), self.duration_s
        if d > 0:
            return n / d
        return 0.0 if n == 0 else math.inf

    @property
    def has_blocks(self) -> bool:
        return self.block_ids is not None

    def chain(self, i: int) -> np.ndarray:
        """Prefix-block ids of request i's prompt, in chain order."""
        if self.block_ids is None or self.block_offsets is None:
            raise TraceError(f"trace {self.meta.name!r} has no block chains")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"request {i} out of range for a trace of {n} requests")
        i %= n
        return self.block_ids[self.block_offsets[i]:self.block_offsets[i + 1]]

    def select(self, idx: np.ndarray | list[int] | slice) -> "Trace":
        """Subset by integer indices, boolean mask or slice, keeping the block CSR consistent.

        The result must still be sorted by arrival (validation raises TraceError otherwise).
        """
        n = len(self)
        if isinstance(idx, slice):
            sel = np.arange(n, dtype=np.int64)[idx]
        else:
            a = np.asarray(idx)
            if a.dtype == np.bool_:
                if a.shape != (n,):
                    raise TraceError(f"Trace.select: boolean mask of shape {a.shape}, expected ({n},)")
                sel = np.flatnonzero(a)
            elif a.size == 0:
                sel = np.zeros(0, dtype=np.int64)
            elif np.issubdtype(a.dtype, np.integer):
                sel = a.astype(np.int64).ravel()
                if ((sel < -n) | (sel >= n)).any():
                    raise TraceError(f"Trace.select: index out of range for {n} requests")
                sel = np.where(sel < 0, sel + n, sel)
            else:
                raise TraceError(f"Trace.select: expected integer indices or a boolean mask, got {a.dtype}")
        ids = offsets = None
        if self.block_ids is not None and self.block_offsets is not None:
            ids, offsets = _gather_csr(self.block_ids, self.block_offsets, sel)
        parent = None
        if self.parent is not None:
            new_index = np.full(n, -1, dtype=np.int64)
            new_index[sel] = np.arange(sel.shape[0], dtype=np.int64)
            old = self.parent[sel]
            parent = np.where(old >= 0, new_index[np.maximum(old, 0)], -1)
            parent = np.where(parent < np.arange(sel.shape[0]), parent, -1)
        return Trace(
            arrival_s=self.arrival_s[sel],
            prompt_tokens=self.prompt_tokens[sel],
            output_tokens=self.output_tokens[sel],
            meta=self.meta,
            block_ids=ids,
            block_offsets=offsets,
            block_size=self.block_size,
            tenant=None if self.tenant is None else self.tenant[sel],
            failed=None if self.failed is None else self.failed[sel],
            parent=parent,
            turn=None if self.turn is None else self.turn[sel],
        )

    def replace(self, **changes: object) -> "Trace":
        """A validated copy with some fields replaced (dataclasses.replace, re-validated)."""
        import dataclasses

        return dataclasses.replace(self, **changes)

    def equals(self, other: "Trace") -> bool:
        """Bit-for-bit equality of every array and of the metadata."""
        if not isinstance(other, Trace) or self.meta != other.meta or self.block_size != other.block_size:
            return False
        for name in _ARRAYS:
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            if a is not None and (a.dtype != b.dtype or not np.array_equal(a, b)):
                return False
        return True


def _gather_csr(ids: np.ndarray, offsets: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `sel` of a CSR array, vectorized (no Python loop over requests)."""
    lengths = offsets[1:][sel] - offsets[:-1][sel]
    new_off = np.zeros(sel.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    total = int(new_off[-1])
    starts = np.repeat(offsets[:-1][sel] - new_off[:-1], lengths)
    gather = starts + np.arange(total, dtype=np.int64)
    return ids[gather], new_off
