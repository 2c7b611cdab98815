"""ExpertPlacement-v0 kernels: each fast path against the code it replaced (kept here as the
reference), on random loads and placements, so that equality cannot silently go stale."""

from __future__ import annotations

import numba as nb
import numpy as np
import pytest

from envs.expert_placement import sim as S


# --- references: dispatch as it was before issue 16 (an argsort and an allocation per use)
@nb.njit(cache=True)
def _waterfill_ref(n: int, loads: np.ndarray, m: int, out: np.ndarray) -> None:
    """Split n tokens over m GPUs with ``loads`` so the lowest fill up first (integers; the
    remainder goes to the lowest-loaded GPUs, lowest index first on ties)."""
    order = np.argsort(loads[:m], kind="mergesort")
    s = loads[order]
    # find the level: raise the j lowest to s[j] while tokens last
    j = 1
    used = 0
    while j < m and used + j * (s[j] - s[j - 1]) <= n:
        used += j * (s[j] - s[j - 1])
        j += 1
    level = s[j - 1]
    rest = n - used
    add = rest // j
    rem = rest - add * j
    for i in range(m):
        out[i] = 0
    for i in range(j):
        out[order[i]] = level - s[i] + add + (1 if i < rem else 0)


@nb.njit(cache=True)
def dispatch_batch_ref(counts: np.ndarray, place: np.ndarray, S: int, G: int, even: bool, out: np.ndarray) -> None:
    """Tokens per physical slot ``out[n, T, L, P]`` for counts ``[n, T, L, E]`` and placements ``[n, L, P]``."""
    n, T, L, E = counts.shape
    P = place.shape[2]
    cnt = np.zeros(E, np.int64)
    gpu_load = np.zeros(G, np.int64)
    hosts = np.zeros(G, np.int64)
    hslots = np.zeros(G, np.int64)
    hload = np.zeros(G, np.int64)
    share = np.zeros(G, np.int64)
    onhost = np.full(G, -1, np.int64)
    first = np.zeros(E, np.int64)
    nxt = np.zeros(P, np.int64)
    order = np.zeros(E, np.int64)
    for e_ in range(n):
        for l in range(L):
            pl = place[e_, l]
            cnt[:] = 0
            first[:] = -1
            for p in range(P - 1, -1, -1):  # linked list of each expert's slots, in slot order
                x = pl[p]
                cnt[x] += 1
                nxt[p] = first[x]
                first[x] = p
            for t in range(T):
                row = counts[e_, t, l]
                o = out[e_, t, l]
                gpu_load[:] = 0
                for p in range(P):
                    o[p] = 0
                for x in range(E):
                    if cnt[x] == 1:
                        p = first[x]
                        o[p] = row[x]
                        gpu_load[p // S] += row[x]
                # replicated experts, most tokens first
                nr = 0
                for x in range(E):
                    if cnt[x] > 1:
                        order[nr] = x
                        nr += 1
                key = np.empty(nr, np.int64)
                for i in range(nr):
                    key[i] = -row[order[i]]
                srt = np.argsort(key, kind="mergesort")
                for i in range(nr):
                    x = order[srt[i]]
                    tok = row[x]
                    if even:
                        base = tok // cnt[x]
                        rem = tok - base * cnt[x]
                        p = first[x]
                        r = 0
                        while p >= 0:
                            v = base + (1 if r < rem else 0)
                            o[p] = v
                            gpu_load[p // S] += v
                            r += 1
                            p = nxt[p]
                        continue
                    m = 0  # distinct GPUs holding x
                    p = first[x]
                    while p >= 0:
                        g = p // S
                        if onhost[g] < 0:
                            onhost[g] = m
                            hosts[m] = g
                            hslots[m] = 0
                            hload[m] = gpu_load[g]
                            m += 1
                        hslots[onhost[g]] += 1
                        p = nxt[p]
                    _waterfill_ref(tok, hload, m, share)
                    for i2 in range(m):
                        gpu_load[hosts[i2]] += share[i2]
                    # split each GPU's share evenly over its slots of x
                    p = first[x]
                    while p >= 0:
                        h = onhost[p // S]
                        q = share[h] // hslots[h]
                        r = share[h] - q * hslots[h]
                        o[p] = q + r  # the first slot on that GPU takes the remainder
                        share[h] -= q + r
                        hslots[h] -= 1
                        p = nxt[p]
                    for i2 in range(m):
                        onhost[hosts[i2]] = -1




def _placements(rng, n, L, E, G, S_):
    """Random placements [n, L, P]: every expert at least once, the redundant slots anywhere
    (several replicas of one expert, sometimes on the same GPU)."""
    P = G * S_
    out = np.empty((n, L, P), np.int64)
    for i in range(n):
        for l in range(L):
            extra = rng.integers(0, max(1, E // 4), P - E) if rng.random() < 0.5 else rng.integers(0, E, P - E)
            out[i, l] = rng.permutation(np.concatenate([np.arange(E), extra]))
    return out


@pytest.mark.parametrize("even", [False, True])
@pytest.mark.parametrize("E,G,S_", [(16, 4, 5), (32, 8, 5), (8, 2, 8), (256, 32, 9)])
def test_dispatch_equals_the_reference(even, E, G, S_):
    rng = np.random.default_rng(E + G + even)
    n, T, L = 3, 6, 2
    counts = rng.integers(0, 400, (n, T, L, E)).astype(np.int32)
    counts[:, :, :, : E // 8] = rng.integers(0, 5, (n, T, L, E // 8))  # ties and near-empty rows
    counts[0, 0, 0] = 7  # every expert equal
    place = _placements(rng, n, L, E, G, S_)
    got = np.zeros((n, T, L, G * S_), np.int32)
    want = np.zeros_like(got)
    S.dispatch_batch(counts, place, S_, G, even, got)
    dispatch_batch_ref(counts, place, S_, G, even, want)
    assert np.array_equal(got, want)
    assert np.array_equal(got.sum(-1), counts.sum(-1))


def test_waterfill_equals_the_reference():
    """The two-GPU fast path and the general path against the replaced implementation (ties, zero
    tokens, tokens below and above the load gap)."""
    rng = np.random.default_rng(11)
    got, want, order = np.zeros(8, np.int64), np.zeros(8, np.int64), np.zeros(8, np.int64)
    for _ in range(4000):
        m = int(rng.integers(1, 7))
        loads = rng.integers(0, 4 if rng.random() < 0.3 else 60, 8)
        n = int(rng.integers(0, 120))
        got[:] = want[:] = -1
        S._waterfill(n, loads, m, got, order)
        _waterfill_ref(n, loads, m, want)
        assert got[:m].tolist() == want[:m].tolist(), (n, loads[:m])


def test_stable_order_is_mergesort_argsort():
    rng = np.random.default_rng(0)
    out = np.zeros(64, np.int64)
    for _ in range(300):
        m = int(rng.integers(1, 64))
        key = rng.integers(-5, 5, 64)
        S._stable_order(key, m, out)
        assert out[:m].tolist() == np.argsort(key[:m], kind="mergesort").tolist()


def layer_costs_ref(cm: S.CostModel, slot_tokens: np.ndarray) -> dict[str, np.ndarray]:
    """CostModel.layer_costs as numpy expressions, as it was before issue 16."""
    sh = cm.sh
    per_gpu = slot_tokens.reshape(*slot_tokens.shape[:-1], sh.G, sh.S)
    ffn = cm.group_time(per_gpu).max(-1)
    load = per_gpu.sum(-1)
    peak = load.max(-1).astype(np.float64)
    rows = np.maximum(peak, cm.sent_rows)
    a2a = cm.a2a(rows)
    return {"moe_s": ffn + 2.0 * a2a, "ffn_s": ffn, "a2a_s": 2.0 * a2a,
            "imbalance": peak / np.maximum(load.mean(-1), 1e-12), "a2a_bytes": 2.0 * rows * sh.row_bytes}


@pytest.mark.parametrize("kw", [{}, {"gpus": 16}, {"gpus": 8, "redundant_slots": 64}, {"gpus": 64}])
def test_layer_costs_equal_the_numpy_reference(kw):
    cfg = S.make_config(**kw)
    sh = S.shape_of(cfg)
    cm = S.CostModel(cfg, sh)
    rng = np.random.default_rng(sh.S)
    slots = rng.integers(0, 3 * cfg.tokens_per_gpu, (2, 5, 3, sh.P)).astype(np.int32)
    slots[0, 0, 0] = 0  # an idle layer
    slots[0, 1, 0, : sh.S] = 0  # an idle GPU
    slots[1, 0, 0, 0] = sh.tokens_per_step + 5  # beyond the table: it grows
    want = layer_costs_ref(cm, slots)
    got = cm.layer_costs(slots)
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        assert np.array_equal(got[k], want[k]), k


@pytest.mark.parametrize("dispatch", ["least_loaded", "even"])
@pytest.mark.parametrize("kw", [{}, {"gpus": 16}, {"gpus": 8, "redundant_slots": 64}, {"model": "Mixtral-8x7B", "gpus": 4,
                                                                                   "gpus_per_node": 4},
                                {"gpus": 2, "gpus_per_node": 2}])  # 9, 17, 40, 3 and 129 slots per GPU
def test_dispatch_costs_equal_dispatch_then_layer_costs(kw, dispatch):
    """The fused pass (used by the environment and its references) returns, bit for bit, the
    numpy reference costs of the replaced dispatch's slots, counts beyond the FFN table included."""
    cfg = S.make_config(dispatch=dispatch, **kw)
    sh = S.shape_of(cfg)
    rng = np.random.default_rng(sh.P)
    n, T, L = 3, 7, 2
    counts = rng.integers(0, 2 * cfg.tokens_per_gpu, (n, T, L, sh.E)).astype(np.int32)
    counts[0, 0, 0] = 0  # an idle layer
    counts[1, 2, 1, : sh.E // 4] = 0  # idle experts (and GPUs)
    counts[2, 3, 0, 1] = sh.tokens_per_step + 9  # beyond the table: it grows
    place = _placements(rng, n, L, sh.E, sh.G, sh.S)
    place[0] = S.initial_placement(sh)[:L]
    slots = np.zeros((n, T, L, sh.P), np.int32)
    dispatch_batch_ref(counts, place, sh.S, sh.G, dispatch == "even", slots)
    want = layer_costs_ref(S.CostModel(cfg, sh), slots)
    got = S.CostModel(cfg, sh).dispatch_costs(counts, place)
    assert want.keys() == got.keys()
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
        assert np.array_equal(got[k], want[k]), k


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8, 9, 16, 17, 100, 128, 129, 300, 2048])
def test_pairwise_sum_is_numpys(n):
    a = np.random.default_rng(n).random(n + 3) * 1e-3
    assert S.pairwise_sum(a, 3, n) == a[3:].sum()


def test_bench_cluster_model_row():
    """The benchmark's cluster-model row runs (it broke once when LoadSource.episode changed)."""
    from envs.expert_placement import bench

    row = bench.bench_sim(1, 1)
    assert row["batch_steps_per_s"] > 0 and row["generator_s_per_episode"] > 0
    assert row["references_s_per_episode"] > 0 and row["episode_batch_steps"] == 17 * 32


@pytest.mark.parametrize("kw", [{}, {"dispatch": "even", "gpus": 16},
                                {"gpus": 8, "redundant_slots": 64, "intervals": 3}])
def test_clairvoyant_reference_from_kept_rows_equals_dispatching_it(kw):
    """reference_cost('eplb_clairvoyant') reads the rows the kernels kept of each rebalance's EPLB
    option (where it is the reference's placement) and dispatches the rest: bit for bit the cost of
    dispatching every interval, whether all rows, some (a kept placement made wrong) or none are kept."""
    from envs.expert_placement import kernels as K
    from envs.expert_placement.env import ExpertPlacementVecEnv

    vec = ExpertPlacementVecEnv(2, seed=3, intervals=kw.pop("intervals", 4), **kw)
    vec.reset()
    sim = vec.sim
    rng = np.random.default_rng(0)
    while not (sim.interval >= sim.cfg.intervals - 1).all():  # into the last rebalance (its first layer prepared)
        vec.step(rng.integers(0, K.N_MODES, 2))
    I = sim.cfg.intervals
    assert sim.opt_ok[:, 1:I - 1].all() and sim.opt_ok[:, I - 1, 0].all() and not sim.opt_ok[:, I].any()
    from envs.expert_placement import algos as A

    sh = sim.sh
    for e in range(2):
        w = sim.interval_counts(np.full(I - 2, e), np.arange(1, I - 1)).sum(1).astype(np.float64)
        ref = np.empty((I - 2, sh.L, sh.P), np.int64)
        for i in range(I - 2):
            for l in range(sh.L):
                A.eplb(w[i, l], sh.P, sh.groups, sh.nodes, sh.G, ref[i, l])
        assert (sim.opt_place[e, 1:I - 1] == ref).all()  # the kept rows are the reference's: they are read
        with_rows = sim.reference_cost(e, "eplb_clairvoyant")
        sim.opt_place[e, 1, 0] = np.roll(sim.opt_place[e, 1, 0], 1)  # not the reference's placement: dispatched
        partly = sim.reference_cost(e, "eplb_clairvoyant")
        ok = sim.opt_ok[e].copy()
        sim.opt_ok[e] = False
        none = sim.reference_cost(e, "eplb_clairvoyant")
        sim.opt_ok[e] = ok
        assert with_rows == partly == none


def test_moe_s_sum_equals_dispatch_costs_summed():
    """kernels' per-option interval time (moe_s_sum, counts read in place) is the sum, in step order,
    of dispatch_costs' FFN time plus the all-to-all table at the peak load, with its ffn and peak."""
    cfg = S.make_config()
    sh = S.shape_of(cfg)
    rng = np.random.default_rng(1)
    T = 5
    counts = rng.integers(0, 600, (2, 3 * T, sh.L, sh.E)).astype(np.int32)
    place = _placements(rng, 1, 1, sh.E, sh.G, sh.S)
    cm = S.CostModel(cfg, sh)
    a2a2 = np.linspace(1e-5, 2e-5, sh.tokens_per_step * sh.k + 1)
    sent = int(cm.sent_rows)
    ffn, peak = np.empty(T), np.empty(T, np.int64)
    got = S.moe_s_sum(counts, 1, T, T, 2, place[0, 0], sh.S, sh.G, False, cm.ffn_table, cm.latency, a2a2, sent,
                      np.empty(sh.S), S._buffers(sh.E, sh.P, sh.G), ffn, peak)
    f, p, _ = S.dispatch_costs(np.ascontiguousarray(counts[1:2, T:2 * T, 2:3]), place, sh.S, sh.G, False, cm.ffn_table,
                               cm.latency)
    want = 0.0
    for t in range(T):
        want += f[0, t, 0] + a2a2[max(p[0, t, 0], sent)]
    assert got == want and np.array_equal(ffn, f[0, :, 0]) and np.array_equal(peak, p[0, :, 0])
