"""MoE expert load: a generator of per-step routed-token counts, and a loader for measured counts.

The generator models what expert-placement policies react to: a skewed popularity (Zipf over a
latent ranking of experts), that drifts slowly (AR(1) random walk of the latent scores), shifts
abruptly when the workload changes phase (a random permutation of the experts), and is correlated
between consecutive layers (tokens that favour an expert at layer l tend to favour related ones at
l + 1). Defaults are illustrative assumptions, not measurements: fit them to your model's routing
logs (load_expert_counts) before drawing conclusions.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numba as nb
import numpy as np

from traces.errors import TraceError

__all__ = ["ExpertLoadGenerator", "load_expert_counts", "inclusion_probs"]

_MAX_REDRAWS = 1000


def inclusion_probs(n_experts: int, top_k: int, zipf_s: float) -> np.ndarray:
    """Per-rank probability that a token routes to the expert of that rank (sums to top_k).

    Zipf weights r^-s scaled by top_k, capped at 1 by water-filling (a token picks an expert at
    most once, so no expert can receive more than every token); the excess goes to the others in
    proportion to their weights.
    """
    w = np.arange(1, n_experts + 1, dtype=np.float64) ** -zipf_s
    pi = top_k * w / w.sum()
    capped = np.zeros(n_experts, dtype=bool)
    for _ in range(top_k + 1):
        over = (pi > 1.0) & ~capped
        if not over.any():
            break
        capped |= over
        free = top_k - capped.sum()
        pi = np.where(capped, 1.0, free * w / w[~capped].sum())
    return pi


@nb.njit(cache=True)
def _ar1_block(block: np.ndarray, noise: np.ndarray, a: float, d: float, rho: float, c: float) -> np.ndarray:
    """Latent scores of n steps without a phase shift: ``block[0]`` holds the scores in force at
    the first step; fills ``block[1:]`` and returns the scores after the last. ``noise[i]`` holds
    the normals of step i ([n, layers, experts]) and becomes that step's layer-correlated noise
    (``noise[l] = rho noise[l-1] + c eps[l]``); each step z <- a z + d noise. The same IEEE
    operations in the same order as numpy's elementwise expressions (no fused multiply-add)."""
    n, L, E = noise.shape
    z = np.empty((L, E))
    for i in range(n):
        for x in range(E):
            prev = noise[i, 0, x]
            for layer in range(1, L):
                prev = rho * prev + c * noise[i, layer, x]
                noise[i, layer, x] = prev
        for layer in range(L):
            for x in range(E):
                v = a * block[i, layer, x] + d * noise[i, layer, x]
                if i + 1 < n:
                    block[i + 1, layer, x] = v
                else:
                    z[layer, x] = v
    return z


@nb.njit(cache=True)
def _popularity_steps(Z: np.ndarray, pi_rank: np.ndarray, out: np.ndarray) -> None:
    """``out[s, l, x] = pi_rank[rank of expert x]`` with experts ranked by descending latent score
    ``Z[s, l]`` (ties: lower index first), i.e. ``pi_rank[argsort(argsort(-z, stable), stable)]``
    of ``popularity()`` for every step. Each row is insertion-sorted from the previous step's
    order of the same layer (scores drift slowly, so few experts move); the order is total
    (score, then index), so the result is the stable sort's whatever the starting order."""
    n, L, E = Z.shape
    order = np.empty((L, E), np.int64)
    for layer in range(L):
        for x in range(E):
            order[layer, x] = x
    for s in range(n):
        for layer in range(L):
            o = order[layer]
            z = Z[s, layer]
            for i in range(1, E):
                x = o[i]
                v = -z[x]
                j = i
                while j > 0:
                    w = -z[o[j - 1]]
                    if w > v or (w == v and o[j - 1] > x):
                        o[j] = o[j - 1]
                        j -= 1
                    else:
                        break
                o[j] = x
            for i in range(E):
                out[s, layer, o[i]] = pi_rank[i]


# Version of ExpertLoadGenerator's output (``expert_load-vN`` in records such as the zoo's): bump it
# whenever the same arguments and seed yield other counts.
EXPERT_LOAD_VERSION = 1


class ExpertLoadGenerator:
    """Tokens routed to each expert per batch step: int64 [steps, layers, experts].

    Args:
        n_layers, n_experts, top_k: the MoE shape (each token picks top_k distinct experts).
        tokens_per_step: tokens in one batch step; every [step, layer] row sums to tokens_per_step * top_k.
        zipf_s: popularity skew; the expert ranked r gets weight r^-zipf_s (0 = uniform).
        drift: per-step innovation of the latent popularity scores, z <- sqrt(1-drift^2) z + drift eps
            (0 = frozen ranking, 1 = a new ranking every step).
        phase_shift_every: every this many steps the experts' popularity is permuted at random (one
            permutation for all layers); None = never.
        layer_corr: correlation of latent scores between consecutive layers (0 = independent layers).
        seed: the generator is deterministic given the seed and the sequence of generate() calls.

    Counts are a multinomial of tokens_per_step * top_k expert slots over the inclusion
    probabilities, redrawn in the rare rows where an expert would exceed tokens_per_step; experts
    whose inclusion probability is 1 get exactly tokens_per_step. This keeps the row sum exact; its
    per-expert variance T*pi*(1 - pi/k) slightly exceeds exact per-token top-k routing's T*pi*(1 - pi).
    """

    def __init__(self, n_layers: int, n_experts: int, top_k: int, tokens_per_step: int, *,
                 zipf_s: float = 1.0, drift: float = 0.01, phase_shift_every: int | None = None,
                 layer_corr: float = 0.5, seed: int = 0) -> None:
        for name, v, lo in (("n_layers", n_layers, 1), ("n_experts", n_experts, 1), ("top_k", top_k, 1),
                            ("tokens_per_step", tokens_per_step, 1), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise TraceError(f"ExpertLoadGenerator: {name} must be an integer >= {lo}, got {v!r}")
        if top_k > n_experts:
            raise TraceError(f"ExpertLoadGenerator: top_k={top_k} exceeds n_experts={n_experts}")
        if not (np.isfinite(zipf_s) and zipf_s >= 0):
            raise TraceError(f"ExpertLoadGenerator: zipf_s must be >= 0, got {zipf_s!r}")
        if not 0 <= drift <= 1:
            raise TraceError(f"ExpertLoadGenerator: drift must lie in [0, 1], got {drift!r}")
        if not 0 <= layer_corr <= 1:
            raise TraceError(f"ExpertLoadGenerator: layer_corr must lie in [0, 1], got {layer_corr!r}")
        if phase_shift_every is not None and (isinstance(phase_shift_every, bool) or
                                              not isinstance(phase_shift_every, (int, np.integer)) or phase_shift_every < 1):
            raise TraceError(f"ExpertLoadGenerator: phase_shift_every must be None or an integer >= 1, got {phase_shift_every!r}")
        self.n_layers, self.n_experts, self.top_k = int(n_layers), int(n_experts), int(top_k)
        self.tokens_per_step = int(tokens_per_step)
        self.zipf_s, self.drift, self.layer_corr = float(zipf_s), float(drift), float(layer_corr)
        self.phase_shift_every = None if phase_shift_every is None else int(phase_shift_every)
        self._rng = np.random.default_rng(int(seed))
        self._pi_rank = inclusion_probs(self.n_experts, self.top_k, self.zipf_s)
        self._z = self._layer_noise()
        self._step = 0

    def _layer_noise(self) -> np.ndarray:
        """Standard normal [layers, experts] with correlation layer_corr between consecutive layers."""
        eps = self._rng.standard_normal((self.n_layers, self.n_experts))
        out = np.empty_like(eps)
        out[0] = eps[0]
        rho = self.layer_corr
        for layer in range(1, self.n_layers):
            out[layer] = rho * out[layer - 1] + np.sqrt(1 - rho * rho) * eps[layer]
        return out

    def popularity(self) -> np.ndarray:
        """Current inclusion probabilities [layers, experts] (each row sums to top_k)."""
        rank = np.argsort(np.argsort(-self._z, axis=1, kind="stable"), axis=1, kind="stable")
        return self._pi_rank[rank]

    def _latent_steps(self, steps: int) -> np.ndarray:
        """The latent scores in force at each of the next ``steps`` steps, [steps, layers, experts],
        advancing the generator past them. Equal, bit for bit and draw for draw, to recording
        ``self._z`` and advancing one step at a time (per step: ``_layer_noise`` when drift > 0,
        z <- sqrt(1-drift^2) z + drift noise, a permutation at each phase shift): the normals of
        the steps between two phase shifts are drawn in one call (the same stream in the same
        order), the layer correlation is applied across those steps at once, and the AR(1) update
        runs with the same operations per step (tests keep the one-step reference)."""
        L, E = self.n_layers, self.n_experts
        Z = np.empty((steps, L, E))
        d, rho, every = self.drift, self.layer_corr, self.phase_shift_every
        a = np.sqrt(1 - d * d)
        c = np.sqrt(1 - rho * rho)
        s = 0
        while s < steps:
            n = steps - s if not every else min(steps - s, every - self._step % every)
            block = Z[s:s + n]
            block[0] = self._z
            if d > 0:
                noise = self._rng.standard_normal((n, L, E))  # eps of steps s..s+n-1, in draw order
                self._z = _ar1_block(block, noise, a, d, rho, c)
            else:
                block[1:] = self._z
            self._step += n
            s += n
            if every and self._step % every == 0:
                self._z = self._z[:, self._rng.permutation(E)]
        return Z

    def _advance(self) -> None:
        d = self.drift
        if d > 0:
            self._z = np.sqrt(1 - d * d) * self._z + d * self._layer_noise()
        self._step += 1
        if self.phase_shift_every and self._step % self.phase_shift_every == 0:
            self._z = self._z[:, self._rng.permutation(self.n_experts)]

    def generate(self, steps: int) -> np.ndarray:
        """The next `steps` batch steps of expert counts, int64 [steps, layers, experts]."""
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise TraceError(f"steps must be an integer >= 0, got {steps!r}")
        T, k = self.tokens_per_step, self.top_k
        full = self._pi_rank >= 1.0
        slots = T * (k - int(full.sum()))
        # popularity() of every step at once: the expert at sorted position i gets pi_rank[i]
        # (argsort of a permutation is its inverse, so this is pi_rank[argsort(argsort(-z))]).
        pis = np.empty((steps, self.n_layers, self.n_experts))
        _popularity_steps(self._latent_steps(steps), self._pi_rank, pis)
        out = np.zeros((steps, self.n_layers, self.n_experts), dtype=np.int64)
        is_full = pis >= 1.0
        out[is_full] = T
        q = np.where(is_full, 0.0, pis)
        if slots > 0 and steps:
            q /= q.sum(axis=2, keepdims=True)
            out += self._rng.multinomial(slots, q)
            for _ in range(_MAX_REDRAWS):
                bad = (out > T).any(axis=2)
                if not bad.any():
                    break
                out[bad] = np.where(is_full[bad], T, 0) + self._rng.multinomial(slots, q[bad])
            else:
                raise TraceError("ExpertLoadGenerator: could not draw counts within tokens_per_step; lower zipf_s")
        return out


def load_expert_counts(path: str | Path) -> np.ndarray:
    """Measured routing counts from an .npz with key 'counts' [steps, layers, experts], validated.

    Integer dtypes are required (float arrays whose values are all whole numbers are accepted and
    converted; anything else is an error naming the first offending index).
    """
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise TraceError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise TraceError(f"{path}: expected an .npz archive with key 'counts', got a bare .npy array")
    with z:
        if "counts" not in z.files:
            raise TraceError(f"{path}: no key 'counts' (keys: {z.files})")
        a = z["counts"]
    if a.ndim != 3:
        raise TraceError(f"{path}: 'counts' must be 3-D [steps, layers, experts], got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise TraceError(f"{path}: 'counts'{list(idx)} = {a[idx].item()!r} is not a whole number")
    elif not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise TraceError(f"{path}: 'counts' must hold integers, got dtype {a.dtype}")
    if a.dtype == np.bool_ or a.dtype.kind not in "iuf":
        raise TraceError(f"{path}: 'counts' must hold integers, got dtype {a.dtype}")
    neg = a < 0
    if neg.any():
        idx = tuple(int(i) for i in np.argwhere(neg)[0])
        raise TraceError(f"{path}: 'counts'{list(idx)} = {a[idx].item()} is negative; counts must be >= 0")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise TraceError(f"{path}: 'counts' values exceed int64")
    return a.astype(np.int64)
