"""Numba kernels of Autoscale-v0: a fluid model of replica pools, plan replay, and the DP oracle.

Time advances in bins of ``bin_s`` seconds (default 2 s). In a bin, type ``g`` serves with
``s_g`` replica-equivalents (serving replicas, plus the share of the bin after a cold start
ended), total capacity ``C = sum_g s_g mu_g`` requests/s. The bin's ``a`` arrivals join a pooled
fluid queue ``Q`` that drains at ``C`` (``Q' = max(0, Q + a - C bin_s)``): a least-loaded router
keeps every serving replica equally busy, so each runs at utilisation ``rho = (Q + a) / (C bin_s)``
(the backlog is served first), and a request waits ``W = Q / C`` before it reaches a replica. The
share of the bin's arrivals that meet the SLO is ``sum_g (s_g mu_g / C) attain_g(rho, W)`` from
the curves measured on the full model (``envs.autoscale.model``); TTFT (``ttft_q + W``) and TBT
quantiles go into log-binned histograms for the episode's percentiles. Queue, running requests
and KV use per replica come from the same curves. With no capacity every arrival misses.

Billing: every replica from the moment it is requested (cold start included) until its drain
ends, at its GPU price; a removed replica stops taking requests at once and drains its running
ones for ``drain_s(rho)`` seconds (measured).
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

INF = np.inf
H_BINS = 120  # log-spaced latency histogram: 20 bins per decade from 1 ms to 1000 s
H_LO = -3.0
H_PER_DECADE = 20.0

# Episode accumulators (``AState.acc``).
ACC_COST = 0  # dollars
ACC_MISSED = 1  # arrivals that missed the SLO
ACC_ARRIVED = 2
ACC_GPU_S = 3  # replica-seconds billed (x tp for GPU-seconds)
ACC_COLD = 4  # cold starts begun
ACC_CAP_S = 5  # integral of serving capacity (requests/s x s)
ACC_REPLICA_S = 6  # integral of serving replicas
N_ACC = 7

# Interval accumulators (``AState.iv``), reset at every decision.
IV_ARRIVED = 0
IV_MISSED = 1
IV_WAIT = 2  # sum of a * W
IV_TTFT = 3  # sum of a * TTFT p97.5 estimate
IV_TBT = 4
IV_KV = 5  # sum over bins of mean KV use of serving replicas
IV_QUEUE = 6  # sum over bins of queued requests per serving replica (incl. the fluid backlog)
IV_BINS = 7
IV_COST = 8
IV_RHO = 9  # sum over bins of utilisation
N_IV = 10

CONC_BINS = 64  # ring of in-flight requests per bin (Knative's windows read it)


class Pools(NamedTuple):
    """Per-GPU-type constants and measured curves (read-only in kernels)."""

    mu: np.ndarray  # [G] capacity of one replica, requests/s
    price_s: np.ndarray  # [G] dollars per replica-second
    cold: np.ndarray  # [G] cold start seconds
    max_n: np.ndarray  # [G] int64 replica limit
    rho: np.ndarray  # [RHO] utilisation grid
    delay: np.ndarray  # [D] uniform delay grid, 0 .. TTFT SLO
    attain: np.ndarray  # [G, RHO, D]
    ttft_q: np.ndarray  # [G, RHO, Q]
    tbt_q: np.ndarray  # [G, RHO, Q]
    kv: np.ndarray  # [G, RHO]
    queued: np.ndarray  # [G, RHO]
    running: np.ndarray  # [G, RHO]
    drain: np.ndarray  # [G, RHO]
    bin_s: float
    interval_s: float
    bins_per_step: int
    max_step: int  # action range per type: -max_step .. +max_step


class AState(NamedTuple):
    """Mutable state of E autoscaled clusters (G types, M replica slots per type)."""

    window: np.ndarray  # int64 [E]
    step: np.ndarray  # int64 [E] decisions taken this episode
    Q: np.ndarray  # float64 [E] fluid backlog, requests
    serving: np.ndarray  # int64 [E, G]
    ready_at: np.ndarray  # float64 [E, G, M] cold start end of each starting replica, inf = none
    drain_end: np.ndarray  # float64 [E, G, 2M] drain end of each draining replica, -inf = none
    last_rho: np.ndarray  # float64 [E]
    acc: np.ndarray  # float64 [E, N_ACC]
    iv: np.ndarray  # float64 [E, N_IV]
    ttft_hist: np.ndarray  # float64 [E, H_BINS + 1] (last: unbounded wait)
    tbt_hist: np.ndarray  # float64 [E, H_BINS + 1]
    conc: np.ndarray  # float64 [E, CONC_BINS]


def allocate(E: int, G: int, M: int) -> AState:
    return AState(
        window=np.zeros(E, np.int64), step=np.zeros(E, np.int64), Q=np.zeros(E),
        serving=np.zeros((E, G), np.int64), ready_at=np.full((E, G, M), INF),
        drain_end=np.full((E, G, 2 * M), -INF), last_rho=np.zeros(E),
        acc=np.zeros((E, N_ACC)), iv=np.zeros((E, N_IV)),
        ttft_hist=np.zeros((E, H_BINS + 1)), tbt_hist=np.zeros((E, H_BINS + 1)),
        conc=np.zeros((E, CONC_BINS)),
    )


@nb.njit(cache=True, inline="always")
def _locate(grid, x):
    """Index i and weight f with x ~ grid[i] + f (grid[i+1] - grid[i]), clamped to the grid."""
    n = grid.shape[0]
    if x <= grid[0]:
        return 0, 0.0
    if x >= grid[n - 1]:
        return n - 2, 1.0
    i = 0
    while grid[i + 1] < x:
        i += 1
    return i, (x - grid[i]) / (grid[i + 1] - grid[i])


@nb.njit(cache=True, inline="always")
def _interp(row, i, f):
    return row[i] + f * (row[i + 1] - row[i])


@nb.njit(cache=True, inline="always")
def _hist_add(hist, x, w):
    if not x < INF:
        hist[H_BINS] += w
        return
    b = int((np.log10(max(x, 1e-3)) - H_LO) * H_PER_DECADE)
    hist[min(max(b, 0), H_BINS - 1)] += w


def hist_percentile(hist: np.ndarray, q: float) -> float:
    """Upper edge of the histogram bin holding the q-th percentile (inf in the overflow bin)."""
    total = hist.sum()
    if total <= 0:
        return float("nan")
    c = np.cumsum(hist)
    b = int(np.searchsorted(c, q / 100.0 * total * (1 - 1e-12)))
    if b >= H_BINS:
        return float("inf")
    return float(10 ** (H_LO + (b + 1) / H_PER_DECADE))


@nb.njit(cache=True)
def serve_bin(p, a, s_eff, Q, slo_ttft, hist_t, hist_b, iv, with_hist):
    """One bin of the fluid model. ``s_eff[g]``: serving replica-equivalents. Returns
    (new backlog, misses, utilisation, in-flight requests); adds to histograms and ``iv``."""
    G = s_eff.shape[0]
    C = 0.0
    n_rep = 0.0
    for g in range(G):
        C += s_eff[g] * p.mu[g]
        n_rep += s_eff[g]
    bs = p.bin_s
    if C <= 0.0:
        if a > 0.0:
            hist_t[H_BINS] += a
            hist_b[H_BINS] += a
        iv[IV_ARRIVED] += a
        iv[IV_MISSED] += a
        iv[IV_WAIT] += a * slo_ttft * 10.0
        iv[IV_TTFT] += a * slo_ttft * 10.0
        iv[IV_RHO] += 1.0
        iv[IV_BINS] += 1.0
        return Q + a, a, 1.0, Q + a
    Q1 = max(Q + a - C * bs, 0.0)
    W = 0.5 * (Q + Q1) / C
    rho = (Q + a) / (C * bs)  # share of the bin the replicas are busy (backlog first)
    ri, rf = _locate(p.rho, rho)
    # Delay grid is uniform from 0 to the TTFT SLO; past it nothing meets the SLO.
    D = p.delay.shape[0]
    dstep = p.delay[D - 1] / (D - 1)
    x = W / dstep
    di = min(int(x), D - 2)
    df = x - di
    beyond = W > p.delay[D - 1]
    met = 0.0
    kv = 0.0
    inflight = Q1
    queue = Q1
    nq = p.ttft_q.shape[2]
    t_est = 0.0
    b_est = 0.0
    for g in range(G):
        if s_eff[g] <= 0.0:
            continue
        share = s_eff[g] * p.mu[g] / C
        if not beyond:
            lo = _interp(p.attain[g, :, di], ri, rf)
            hi = _interp(p.attain[g, :, di + 1], ri, rf)
            met += share * (lo + df * (hi - lo))
        kv += s_eff[g] / n_rep * _interp(p.kv[g], ri, rf)
        qg = _interp(p.queued[g], ri, rf)
        queue += s_eff[g] * qg
        inflight += s_eff[g] * (qg + _interp(p.running[g], ri, rf))
        if a > 0.0 and with_hist:
            wq = a * share / nq
            for k in range(nq):
                tq = _interp(p.ttft_q[g, :, k], ri, rf)
                bq = _interp(p.tbt_q[g, :, k], ri, rf)
                _hist_add(hist_t, tq + W, wq)
                _hist_add(hist_b, bq, wq)
        if a > 0.0:
            t_est += share * (_interp(p.ttft_q[g, :, nq - 1], ri, rf) + W)
            b_est += share * _interp(p.tbt_q[g, :, nq - 1], ri, rf)
    miss = a * (1.0 - min(met, 1.0))
    iv[IV_ARRIVED] += a
    iv[IV_MISSED] += miss
    iv[IV_WAIT] += a * W
    iv[IV_TTFT] += a * t_est
    iv[IV_TBT] += a * b_est
    iv[IV_KV] += kv
    iv[IV_QUEUE] += queue / n_rep
    iv[IV_RHO] += min(rho, 1.0)
    iv[IV_BINS] += 1.0
    return Q1, miss, rho, inflight


@nb.njit(cache=True)
def run_interval(p, st, e, arrivals, t0, slo_ttft, s_eff):
    """Advance env ``e`` by one control interval starting at episode time ``t0``."""
    G = st.serving.shape[1]
    M = st.ready_at.shape[2]
    bs = p.bin_s
    b0 = st.step[e] * p.bins_per_step
    for b in range(p.bins_per_step):
        ta = t0 + b * bs
        tb = ta + bs
        billed = 0.0
        cost = 0.0
        cap = 0.0
        for g in range(G):
            s = float(st.serving[e, g])
            alive = s
            for j in range(M):
                r = st.ready_at[e, g, j]
                if r < INF:
                    alive += 1.0
                    if r < tb:
                        s += (tb - max(r, ta)) / bs
                        st.serving[e, g] += 1
                        st.ready_at[e, g, j] = INF
            for j in range(2 * M):
                d = st.drain_end[e, g, j]
                if d > ta:
                    alive += (min(d, tb) - ta) / bs
                if d > -INF and d <= tb:
                    st.drain_end[e, g, j] = -INF
            s_eff[g] = s
            cap += s * p.mu[g]
            billed += alive
            cost += alive * bs * p.price_s[g]
        a = arrivals[b0 + b]
        Q1, miss, _rho, inflight = serve_bin(p, a, s_eff, st.Q[e], slo_ttft, st.ttft_hist[e],
                                            st.tbt_hist[e], st.iv[e], True)
        st.Q[e] = Q1
        st.conc[e, (b0 + b) % CONC_BINS] = inflight
        st.acc[e, ACC_COST] += cost
        st.acc[e, ACC_MISSED] += miss
        st.acc[e, ACC_ARRIVED] += a
        st.acc[e, ACC_GPU_S] += billed * bs
        st.acc[e, ACC_CAP_S] += cap * bs
        ns = 0.0
        for g in range(G):
            ns += s_eff[g]
        st.acc[e, ACC_REPLICA_S] += ns * bs
        st.iv[e, IV_COST] += cost
    # Utilisation at the end of the interval (drain time of replicas removed next).
    C = 0.0
    for g in range(G):
        C += st.serving[e, g] * p.mu[g]
    rate = st.iv[e, IV_ARRIVED] / p.interval_s
    st.last_rho[e] = rate / C if C > 0.0 else 1.0


@nb.njit(cache=True)
def apply_deltas(p, st, e, deltas, t):
    """Replica changes decided at episode time ``t``: adds start cold; removals cancel the
    latest cold starts first, then drain serving replicas."""
    G = st.serving.shape[1]
    M = st.ready_at.shape[2]
    ri, rf = _locate(p.rho, st.last_rho[e])
    for g in range(G):
        n = st.serving[e, g] + n_starting(st, e, g)
        d = min(max(deltas[g], -n), p.max_n[g] - n)  # masked changes clip to the limits
        if d > 0:
            for j in range(M):
                if d == 0:
                    break
                if st.ready_at[e, g, j] == INF:
                    st.ready_at[e, g, j] = t + p.cold[g]
                    st.acc[e, ACC_COLD] += 1.0
                    d -= 1
            if d > 0:
                raise RuntimeError("apply_deltas: more replicas than slots (mask not respected)")
        while d < 0:
            latest = -1
            for j in range(M):
                if st.ready_at[e, g, j] < INF and (latest < 0 or st.ready_at[e, g, j] > st.ready_at[e, g, latest]):
                    latest = j
            if latest >= 0:
                st.ready_at[e, g, latest] = INF
            else:
                if st.serving[e, g] <= 0:
                    raise RuntimeError("apply_deltas: removing a replica that does not exist")
                st.serving[e, g] -= 1
                placed = False
                for j in range(2 * M):
                    if st.drain_end[e, g, j] == -INF:
                        st.drain_end[e, g, j] = t + _interp(p.drain[g], ri, rf)
                        placed = True
                        break
                if not placed:
                    raise RuntimeError("apply_deltas: too many draining replicas")
            d += 1


@nb.njit(cache=True, inline="always")
def n_starting(st, e, g):
    c = 0
    for j in range(st.ready_at.shape[2]):
        if st.ready_at[e, g, j] < INF:
            c += 1
    return c


@nb.njit(cache=True)
def decode_action(a, G, k, out):
    base = 2 * k + 1
    for g in range(G):
        out[g] = a % base - k
        a //= base


@nb.njit(cache=True)
def write_mask(p, st, e, mask):
    """Legal actions: every type stays within 0 .. max_n replicas (serving + starting)."""
    G = st.serving.shape[1]
    k = p.max_step
    base = 2 * k + 1
    lo = np.empty(G, np.int64)
    hi = np.empty(G, np.int64)
    for g in range(G):
        n = st.serving[e, g] + n_starting(st, e, g)
        lo[g] = -min(n, k)
        hi[g] = min(p.max_n[g] - n, k)
    for a in range(mask.shape[1]):
        x = a
        ok = True
        for g in range(G):
            d = x % base - k
            x //= base
            if d < lo[g] or d > hi[g]:
                ok = False
                break
        mask[e, a] = ok


@nb.njit(cache=True)
def reset_env(p, st, e, window, init):
    G = st.serving.shape[1]
    st.window[e] = window
    st.step[e] = 0
    st.Q[e] = 0.0
    st.last_rho[e] = 0.0
    for g in range(G):
        st.serving[e, g] = init[g]
    st.ready_at[e, :, :] = INF
    st.drain_end[e, :, :] = -INF
    st.acc[e, :] = 0.0
    st.iv[e, :] = 0.0
    st.ttft_hist[e, :] = 0.0
    st.tbt_hist[e, :] = 0.0
    st.conc[e, :] = 0.0


@nb.njit(cache=True)
def step_env(p, st, e, arrivals, deltas, slo_ttft, s_eff):
    """Apply ``deltas`` and run one interval; returns (dollars, misses) of the interval."""
    t0 = st.step[e] * p.interval_s
    apply_deltas(p, st, e, deltas, t0)
    st.iv[e, :] = 0.0
    run_interval(p, st, e, arrivals, t0, slo_ttft, s_eff)
    st.step[e] += 1
    return st.iv[e, IV_COST], st.iv[e, IV_MISSED]


@nb.njit(cache=True)
def step_all(p, st, arrivals, actions, slo_ttft, slo_penalty, reward_unit, rew, mask):
    """``slo_penalty``: [E] dollars per missed request."""
    E, G = st.serving.shape
    deltas = np.empty(G, np.int64)
    s_eff = np.empty(G)
    for e in range(E):
        decode_action(actions[e], G, p.max_step, deltas)
        cost, miss = step_env(p, st, e, arrivals[st.window[e]], deltas, slo_ttft, s_eff)
        rew[e] = -(cost + slo_penalty[e] * miss) / reward_unit
        write_mask(p, st, e, mask)


@nb.njit(cache=True)
def follow_plan(st, e, targets_k, k, deltas):
    """Deltas that move serving + starting toward ``targets_k`` within +-k per type."""
    for g in range(st.serving.shape[1]):
        n = st.serving[e, g] + n_starting(st, e, g)
        deltas[g] = min(max(targets_k[g] - n, -k), k)


@nb.njit(cache=True)
def run_plan(p, arrivals, init, targets, slo_ttft):
    """Replay a plan of replica targets [K, G] from ``init`` on one window's arrivals;
    returns (dollars, misses, arrivals)."""
    K, G = targets.shape
    st = AState(
        window=np.zeros(1, np.int64), step=np.zeros(1, np.int64), Q=np.zeros(1),
        serving=np.zeros((1, G), np.int64), ready_at=np.full((1, G, 1 + p.max_n.max()), INF),
        drain_end=np.full((1, G, 2 * (1 + p.max_n.max())), -INF), last_rho=np.zeros(1),
        acc=np.zeros((1, N_ACC)), iv=np.zeros((1, N_IV)),
        ttft_hist=np.zeros((1, H_BINS + 1)), tbt_hist=np.zeros((1, H_BINS + 1)),
        conc=np.zeros((1, CONC_BINS)),
    )
    reset_env(p, st, 0, 0, init)
    deltas = np.empty(G, np.int64)
    s_eff = np.empty(G)
    for k in range(K):
        follow_plan(st, 0, targets[k], p.max_step, deltas)
        step_env(p, st, 0, arrivals, deltas, slo_ttft, s_eff)
    return st.acc[0, ACC_COST], st.acc[0, ACC_MISSED], st.acc[0, ACC_ARRIVED]


# --- the oracle: dynamic programming over control intervals --------------------------------------


@nb.njit(cache=True)
def _config_of(c, max_n, out):
    for g in range(max_n.shape[0]):
        out[g] = c % (max_n[g] + 1)
        c //= max_n[g] + 1


@nb.njit(cache=True)
def _index_of(n, max_n):
    c = 0
    mul = 1
    for g in range(max_n.shape[0]):
        c += n[g] * mul
        mul *= max_n[g] + 1
    return c


@nb.njit(cache=True)
def _span_misses(p, arrivals, t_from, t_to, s_eff, slo_ttft):
    """Misses of arrivals in [t_from, t_to) with a constant fleet and an empty queue at t_from
    (partial bins contribute their share of the bin's arrivals and time)."""
    bs = p.bin_s
    hist_t = np.zeros(H_BINS + 1)
    hist_b = np.zeros(H_BINS + 1)
    iv = np.zeros(N_IV)
    Q = 0.0
    miss = 0.0
    G = s_eff.shape[0]
    scaled = np.empty(G)
    b = int(t_from // bs)
    while b * bs < t_to and b < arrivals.shape[0]:
        lo = max(b * bs, t_from)
        hi = min((b + 1) * bs, t_to)
        frac = (hi - lo) / bs
        if frac > 0.0:
            # A partial bin: the same rates over a shorter span = a full bin at scaled size.
            for g in range(G):
                scaled[g] = s_eff[g] * frac
            Q, m, _, _ = serve_bin(p, arrivals[b] * frac, scaled, Q, slo_ttft, hist_t, hist_b, iv, False)
            miss += m
        b += 1
    return miss


@nb.njit(cache=True)
def oracle_plan(p, arrivals, init, K, slo_ttft, slo_penalty):
    """Cheapest plan of replica targets [K, G] (dollars + slo_penalty x misses) by dynamic
    programming over every fleet (0..max_n per type) and every move of at most ``max_step`` per
    type and interval, knowing the future arrivals.

    Model (the fluid model above, with each interval's queue starting empty): a fleet ``n``
    chosen at interval ``k`` after ``m`` costs ``sum_g price_g (n_g interval + max(m_g - n_g, 0)
    drain_g)``; added replicas serve after the cold start ``L`` (the largest over types), so the
    first ``L`` seconds run with ``min(m, n)``. Requires ``L < interval_s``.
    """
    G = p.mu.shape[0]
    L = p.cold.max()
    if L >= p.interval_s:
        raise ValueError("oracle: cold start must be shorter than the control interval")
    nconf = 1
    for g in range(G):
        nconf *= p.max_n[g] + 1
    n = np.empty(G, np.int64)
    m = np.empty(G, np.int64)
    s = np.empty(G)
    lag = np.zeros((K, nconf))
    rest = np.zeros((K, nconf))
    rho_end = np.zeros((K, nconf))
    for k in range(K):
        t0 = k * p.interval_s
        b0 = k * p.bins_per_step
        rate = 0.0
        for b in range(p.bins_per_step):
            rate += arrivals[b0 + b]
        rate /= p.interval_s
        for c in range(nconf):
            _config_of(c, p.max_n, n)
            C = 0.0
            for g in range(G):
                s[g] = n[g]
                C += n[g] * p.mu[g]
            lag[k, c] = _span_misses(p, arrivals, t0, t0 + L, s, slo_ttft)
            rest[k, c] = _span_misses(p, arrivals, t0 + L, t0 + p.interval_s, s, slo_ttft)
            rho_end[k, c] = rate / C if C > 0.0 else 1.0
    kk = p.max_step
    base = 2 * kk + 1
    nmoves = base**G
    V = np.full(nconf, np.inf)
    V[_index_of(init, p.max_n)] = 0.0
    back = np.full((K, nconf), -1, np.int64)
    mn = np.empty(G, np.int64)
    for k in range(K):
        V2 = np.full(nconf, np.inf)
        for c in range(nconf):
            if V[c] == np.inf:
                continue
            _config_of(c, p.max_n, m)
            if k == 0:
                r0 = 0.0
            else:
                r0 = rho_end[k - 1, c]
            ri, rf = _locate(p.rho, r0)
            for a in range(nmoves):
                x = a
                ok = True
                bill = 0.0
                for g in range(G):
                    d = x % base - kk
                    x //= base
                    ng = m[g] + d
                    if ng < 0 or ng > p.max_n[g]:
                        ok = False
                        break
                    n[g] = ng
                    mn[g] = min(m[g], ng)
                    bill += p.price_s[g] * (ng * p.interval_s + max(m[g] - ng, 0) * _interp(p.drain[g], ri, rf))
                if not ok:
                    continue
                cn = _index_of(n, p.max_n)
                v = V[c] + bill + slo_penalty * (lag[k, _index_of(mn, p.max_n)] + rest[k, cn])
                if v < V2[cn]:
                    V2[cn] = v
                    back[k, cn] = c
        V = V2
    best = 0
    for c in range(nconf):
        if V[c] < V[best]:
            best = c
    targets = np.zeros((K, G), np.int64)
    c = best
    for k in range(K - 1, -1, -1):
        _config_of(c, p.max_n, n)
        targets[k, :] = n
        c = back[k, c]
    return targets, V[best]


# --- observation ---------------------------------------------------------------------------------

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "GLOBAL_FEATURES then TYPE_FEATURES per GPU type, as its zoo checkpoint (4a9fb40) was trained on"
    ),
}
OBS_VERSION = 1
GLOBAL_FEATURES = (
    "rate_30s",  # arrival rate over the last 30 s / safe capacity of one reference replica
    "rate_2m",
    "rate_10m",
    "rate_60m",
    "capacity",  # serving capacity (requests/s) / safe capacity of one reference replica
    "util",  # mean utilisation of serving replicas over the last interval
    "wait",  # fluid queue wait now / TTFT SLO (10 with no capacity)
    "backlog",  # log10(1 + queued requests in the fluid backlog)
    "kv_use",  # mean share of KV blocks in use on serving replicas
    "queue_per_replica",  # log10(1 + queued requests per serving replica)
    "inflight_60s",  # in-flight requests, mean over 60 s / target concurrency of one replica
    "inflight_6s",  # the same over the last 6 s (Knative's panic window)
    "ttft_recent",  # TTFT p97.5 estimate over the last interval / TTFT SLO
    "tbt_recent",  # per-request p99 TBT, p97.5 estimate over the last interval / TBT SLO
    "attain_recent",  # SLO attainment over the last interval (1 without arrivals)
    "missed_recent",  # missed requests in the last interval / (reference capacity x interval)
    "cost_recent",  # dollars of the last interval / reward unit
    "tod_sin",  # time of day
    "tod_cos",
    "elapsed",  # share of the episode done (0 right after a reset)
    "slo_penalty",  # log10(dollars per missed request) + 3
)
TYPE_FEATURES = (
    "serving",  # serving replicas / max_replicas of the type
    "starting",  # replicas in cold start / max_replicas
    "draining",  # draining replicas / max_replicas
    "cold_left",  # remaining cold start of the next replica to be ready / its cold start
    "cap_share",  # share of serving capacity on this type
)


@nb.njit(cache=True, inline="always")
def _rate(csum, now_b, nbins, bs):
    lo = max(now_b - nbins, 0)
    if now_b <= lo:
        return 0.0
    return (csum[now_b] - csum[lo]) / ((now_b - lo) * bs)


@nb.njit(cache=True)
def write_obs(p, st, e, csum, obs, ref_cap, conc_ref, slo_ttft, slo_tpot, reward_unit, tod0,
              n_steps, pen):
    G = st.serving.shape[1]
    bs = p.bin_s
    now_b = st.step[e] * p.bins_per_step
    now = st.step[e] * p.interval_s
    o = obs[e]
    o[0] = _rate(csum, now_b, int(30.0 / bs), bs) / ref_cap
    o[1] = _rate(csum, now_b, int(120.0 / bs), bs) / ref_cap
    o[2] = _rate(csum, now_b, int(600.0 / bs), bs) / ref_cap
    o[3] = _rate(csum, now_b, int(3600.0 / bs), bs) / ref_cap
    C = 0.0
    for g in range(G):
        C += st.serving[e, g] * p.mu[g]
    o[4] = C / ref_cap
    iv = st.iv[e]
    nb_ = max(iv[IV_BINS], 1.0)
    o[5] = iv[IV_RHO] / nb_
    o[6] = min(st.Q[e] / C / slo_ttft, 10.0) if C > 0.0 else (10.0 if st.Q[e] > 0.0 else 0.0)
    o[7] = np.log10(1.0 + st.Q[e])
    o[8] = iv[IV_KV] / nb_
    o[9] = np.log10(1.0 + iv[IV_QUEUE] / nb_)
    n60 = min(int(60.0 / bs), CONC_BINS)
    n6 = max(int(round(6.0 / bs)), 1)  # noqa: RUF046 (numba: round of a float is a float)
    c60 = 0.0
    c6 = 0.0
    have = min(now_b, n60)
    for j in range(have):
        v = st.conc[e, (now_b - 1 - j) % CONC_BINS]
        c60 += v
        if j < n6:
            c6 += v
    o[10] = c60 / max(have, 1) / conc_ref
    o[11] = c6 / max(min(have, n6), 1) / conc_ref
    arr = iv[IV_ARRIVED]
    o[12] = iv[IV_TTFT] / arr / slo_ttft if arr > 0.0 else 0.0
    o[13] = iv[IV_TBT] / arr / slo_tpot if arr > 0.0 else 0.0
    o[14] = 1.0 - iv[IV_MISSED] / arr if arr > 0.0 else 1.0
    o[15] = iv[IV_MISSED] / (ref_cap * p.interval_s)
    o[16] = iv[IV_COST] / reward_unit
    phase = 2.0 * np.pi * ((tod0 + now) % 86400.0) / 86400.0
    o[17] = np.sin(phase)
    o[18] = np.cos(phase)
    o[19] = st.step[e] / n_steps
    o[20] = np.log10(pen) + 3.0
    j0 = len(GLOBAL_FEATURES)
    NF = len(TYPE_FEATURES)
    M = st.ready_at.shape[2]
    for g in range(G):
        mx = float(p.max_n[g])
        start = 0
        soonest = INF
        for j in range(M):
            r = st.ready_at[e, g, j]
            if r < INF:
                start += 1
                soonest = min(soonest, r)
        drain = 0
        for j in range(2 * M):
            if st.drain_end[e, g, j] > now:
                drain += 1
        b = j0 + g * NF
        o[b] = st.serving[e, g] / mx
        o[b + 1] = start / mx
        o[b + 2] = drain / mx
        o[b + 3] = (soonest - now) / p.cold[g] if start > 0 else 0.0
        o[b + 4] = st.serving[e, g] * p.mu[g] / C if C > 0.0 else 0.0


@nb.njit(cache=True)
def write_all(p, st, csum, obs, ref_cap, conc_ref, slo_ttft, slo_tpot, reward_unit, tod0, n_steps,
              pen, mask):
    """Observation and mask of every env (``csum``/``tod0`` per window, ``pen`` per env)."""
    for e in range(st.serving.shape[0]):
        w = st.window[e]
        write_obs(p, st, e, csum[w], obs, ref_cap, conc_ref, slo_ttft, slo_tpot, reward_unit,
                  tod0[w], n_steps, pen[e])
        write_mask(p, st, e, mask)
