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
from traces.numeric import pairwise_sum
from traces.portable import fill_standard_normal, multinomial_row, permutation, pow_neg
from traces.checks import is_integer, is_real

__all__ = ["ExpertLoadGenerator", "load_expert_counts", "inclusion_probs"]

_MAX_REDRAWS = 1000


def inclusion_probs(n_experts: int, top_k: int, zipf_s: float) -> np.ndarray:
    """Per-rank probability that a token routes to the expert of that rank (sums to top_k).

    Zipf weights r^-s scaled by top_k, capped at 1 by water-filling (a token picks an expert at
    most once, so no expert can receive more than every token); the excess goes to the others in
    proportion to their weights. float64 [n_experts]. Where the weights left to share the excess
    underflow to 0 (zipf_s above about 1075 with top_k >= 2), the limit as the weights vanish is
    taken: 1 for the top_k highest ranks, 0 for the others.
    """
    w = pow_neg(np.arange(1, n_experts + 1, dtype=np.float64), float(zipf_s))  # the same bits on every machine
    pi = top_k * w / w.sum()
    capped = np.zeros(n_experts, dtype=bool)
    for _ in range(top_k + 1):
        over = (pi > 1.0) & ~capped
        if not over.any():
            break
        capped |= over
        free = top_k - capped.sum()
        rest = w[~capped].sum()
        pi = np.ones(n_experts)
        if rest == 0.0:  # r^-zipf_s underflowed to 0 past the capped ranks (0 / 0 would be nan): their true
            # weights fall so fast with r that each next rank takes all that is left; the limit caps the next ones
            pi[~capped] = 0.0
            pi[np.flatnonzero(~capped)[:free]] = 1.0
            break
        pi[~capped] = free * w[~capped] / rest
    return pi


@nb.njit(cache=True)
def _popularity_rows(z: np.ndarray, noise: np.ndarray, shift_at: np.ndarray, perms: np.ndarray, a: float, d: float,
                     rho: float, c: float, pi_rank: np.ndarray, T: int, normalize: bool, q: np.ndarray,
                     out: np.ndarray) -> None:
    """Every step's popularity and the counts of the experts that take every token.

    ``z`` [layers, experts]: latent scores in force at the first step, advanced in place past the
    last. Per step s: the inclusion probabilities ``pi_rank[rank]`` with experts ranked by
    descending score (ties: lower index first), i.e. ``popularity()``; where one is >= 1 the
    expert gets ``out = T`` and ``q = 0``, else ``q`` = the probability, divided by the row's sum
    (numpy's pairwise order) when ``normalize``; then, if d > 0, the scores advance with the step's
    normals ``noise[s]`` [layers, experts] (made layer-correlated in place,
    ``noise[l] = rho noise[l-1] + c eps[l]``; z <- a z + d noise); then, where ``shift_at[j] == s``,
    the experts' scores are permuted by ``perms[j]`` (a phase shift). The same IEEE operations in
    the same order as the numpy expressions of the one-step generator (no fused multiply-add).
    Ranks are insertion-sorted from the previous step's order of the same layer (scores drift
    slowly, so few experts move); the order is total (score, then index), so the result is the
    stable sort's whatever the starting order."""
    steps, L, E = out.shape
    order = np.empty((L, E), np.int64)
    keys = np.empty((L, E))  # -score of the expert at each sorted position
    for layer in range(L):
        for x in range(E):
            order[layer, x] = x
    tmp = np.empty(E)
    j_shift = 0
    for s in range(steps):
        for layer in range(L):
            o = order[layer]
            ks = keys[layer]
            zl = z[layer]
            for i in range(E):
                ks[i] = -zl[o[i]]
            for i in range(1, E):
                x = o[i]
                v = ks[i]
                j = i
                while j > 0:
                    w = ks[j - 1]
                    if w > v or (w == v and o[j - 1] > x):
                        o[j] = o[j - 1]
                        ks[j] = w
                        j -= 1
                    else:
                        break
                o[j] = x
                ks[j] = v
            qr = q[s, layer]
            orow = out[s, layer]
            for i in range(E):
                x = o[i]
                p = pi_rank[i]
                if p >= 1.0:
                    orow[x] = T
                    qr[x] = 0.0
                else:
                    qr[x] = p
            if normalize:
                tot = pairwise_sum(qr, 0, E)
                for x in range(E):
                    qr[x] = qr[x] / tot
        if d > 0:
            ns = noise[s]
            for layer in range(1, L):
                up = ns[layer - 1]
                cur = ns[layer]
                for x in range(E):
                    cur[x] = rho * up[x] + c * cur[x]
            for layer in range(L):
                zl = z[layer]
                nl = ns[layer]
                for x in range(E):
                    zl[x] = a * zl[x] + d * nl[x]
        if j_shift < shift_at.shape[0] and shift_at[j_shift] == s:
            perm = perms[j_shift]
            for layer in range(L):
                for x in range(E):
                    tmp[x] = z[layer, perm[x]]
                for x in range(E):
                    z[layer, x] = tmp[x]
            j_shift += 1


@nb.njit(cache=True)
def _draw_counts(rng: np.random.Generator, slots: int, T: int, q: np.ndarray, out: np.ndarray,
                 max_redraws: int) -> bool:
    """``out[r] += multinomial(slots, q[r])`` for every row r of [rows, experts] in order, then,
    while some row has an expert above T, that row is reset (T where the expert takes every token,
    0 elsewhere) and drawn again, rows in order, at most max_redraws rounds (``traces.portable``'s
    multinomial: the same draws on every machine). False when rows were still over T after
    max_redraws rounds."""
    R, E = q.shape
    for r in range(R):
        multinomial_row(rng, slots, q[r], out[r])
    for _ in range(max_redraws):
        clean = True
        for r in range(R):
            orow = out[r]
            bad = False
            for x in range(E):
                if orow[x] > T:
                    bad = True
                    break
            if not bad:
                continue
            clean = False
            qr = q[r]
            for x in range(E):
                if qr[x] != 0.0:  # q == 0: the expert takes every token (T) or none (0); no draw changes it
                    orow[x] = 0
            multinomial_row(rng, slots, qr, orow)
        if clean:
            return True
    return False


# Version of ExpertLoadGenerator's output (``expert_load-vN`` in records such as the zoo's): bump it
# whenever the same arguments and seed yield other counts.
EXPERT_LOAD_VERSION = 2  # v2: traces.portable's samplers (v1: numpy's, which differ between machines)


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
            if not is_integer(v) or v < lo:
                raise TraceError(f"ExpertLoadGenerator: {name} must be an integer >= {lo}, got {v!r}")
        if int(tokens_per_step) * int(top_k) > np.iinfo(np.int64).max:
            raise TraceError(f"ExpertLoadGenerator: tokens_per_step * top_k = {int(tokens_per_step) * int(top_k)} exceeds int64's "
                             f"{np.iinfo(np.int64).max} (the counts are int64)")
        for name, v in (("zipf_s", zipf_s), ("drift", drift), ("layer_corr", layer_corr)):
            if not is_real(v):
                raise TraceError(f"ExpertLoadGenerator: {name} must be a real number, got {v!r}")
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
        eps = np.empty((self.n_layers, self.n_experts))
        fill_standard_normal(self._rng, eps)
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

    def _draw_noise(self, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The draws that move the latent scores over the next ``steps`` steps, in the one-step
        generator's order (per step: ``_layer_noise``'s normals when drift > 0; a permutation at
        each phase shift), advancing the step count: the normals of the steps between two phase
        shifts in one call (the same stream in the same order). Returns the normals
        [steps, layers, experts] ([0, ...] when drift = 0), the steps after which a phase shift
        falls, and their permutations [shifts, experts]."""
        L, E, d, every = self.n_layers, self.n_experts, self.drift, self.phase_shift_every
        noise = np.empty((steps if d > 0 else 0, L, E))
        shift_at: list[int] = []
        perms: list[np.ndarray] = []
        s = 0
        while s < steps:
            n = steps - s if not every else min(steps - s, every - self._step % every)
            if d > 0:
                fill_standard_normal(self._rng, noise[s:s + n])
            self._step += n
            s += n
            if every and self._step % every == 0:
                shift_at.append(s - 1)
                perms.append(permutation(self._rng, E))
        return (noise, np.array(shift_at, np.int64),
                np.array(perms, np.int64).reshape(len(perms), E))

    def generate(self, steps: int) -> np.ndarray:
        """The next `steps` batch steps of expert counts, int64 [steps, layers, experts].

        Equal, bit for bit and draw for draw, to stepping one step at a time (each step's
        popularity(), then the latent scores' advance) and then drawing every step's counts
        (tests keep that generator as the reference): the draws of the latent scores come first
        (``_draw_noise``), one numba pass computes every step's popularity, and the multinomials
        are drawn in numba from the same bit generator (``_draw_counts``). Every draw is
        ``traces.portable``'s, so a seed gives the same counts on every machine and numpy version.

        Raises:
            TraceError: ``steps`` is not an integer >= 0, or a row kept an expert above
                tokens_per_step after 1000 redraws (lower zipf_s).
        """
        if not is_integer(steps) or steps < 0:
            raise TraceError(f"steps must be an integer >= 0, got {steps!r}")
        steps = int(steps)
        T, k, L, E = self.tokens_per_step, self.top_k, self.n_layers, self.n_experts
        slots = T * (k - int((self._pi_rank >= 1.0).sum()))
        d, rho = self.drift, self.layer_corr
        noise, shift_at, perms = self._draw_noise(steps)
        out = np.zeros((steps, L, E), dtype=np.int64)
        q = np.empty((steps, L, E))
        draw = slots > 0 and steps > 0
        z = self._z.copy()
        _popularity_rows(z, noise, shift_at, perms, np.sqrt(1 - d * d), d, rho, np.sqrt(1 - rho * rho),
                         self._pi_rank, T, draw, q, out)
        self._z = z
        if not draw:
            return out
        ok = _draw_counts(self._rng, slots, T, q.reshape(-1, E), out.reshape(-1, E), _MAX_REDRAWS)
        if not ok:
            raise TraceError("ExpertLoadGenerator: could not draw counts within tokens_per_step; lower zipf_s")
        return out


COUNTS_FORMAT = ("expert-load counts are an .npz archive with key 'counts' [steps, layers, experts] (tokens "
                 "routed to each expert per batch step; `python -m traces.moe_counts` writes one)")


def load_expert_counts(path: str | Path) -> np.ndarray:
    """Measured routing counts from an .npz with key 'counts' [steps, layers, experts], validated.

    Integer dtypes are required (float arrays whose values are all whole numbers are accepted and
    converted; anything else is an error naming the first offending index). A file that is neither
    an .npz nor an .npy is a ``TraceError`` saying what it is where it is a request trace (a format
    of ``traces.readers``: ``FILE: a request trace (mooncake format), not expert-load counts``; numpy
    called it pickled data), else that it is not a readable .npz file.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise TraceError(f"{path}: no such file") from None
    except OSError as e:
        raise TraceError(f"{path}: cannot open ({e.strerror or e})") from None
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):  # neither a zip (.npz) nor an .npy
        fmt = _request_trace_format(path)
        if fmt is not None:
            raise TraceError(f"{path}: a request trace ({fmt} format), not expert-load counts; {COUNTS_FORMAT}")
        raise TraceError(f"{path}: not a readable .npz file (not a zip archive); {COUNTS_FORMAT}")
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


def _request_trace_format(path: Path) -> str | None:
    """The request-trace format (``traces.readers``) ``path`` is written in, or None when it is none."""
    from traces.readers import sniff

    try:
        return sniff(path).format
    except TraceError:
        return None
