"""Numba kernels of ExpertPlacement-v0's decision sub-steps: one call applies every env's action,
prepares the next layer's options and writes observations and masks.

A rebalance visits the simulated layers in order. For each layer the first sub-step picks a mode:
KEEP the layer's placement, LPT-repack its current replicas, EPLB (DeepSeek's rebalance_experts on
the last interval's load), or CUSTOM (EPLB's replication, packed migration-aware). With
``replica_substeps`` CUSTOM then asks up to ``redundant_slots`` sub-steps, each giving
the next redundant replica to one of the K hottest experts by load per replica (candidate 0 is
EPLB's greedy choice) or FILL (every remaining replica by EPLB's greedy rule, ending the
layer), and packs the result with migration-aware sticky packing. Loads in the
observation are in units of the mean expert load, so one policy fits any expert and GPU count.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from envs.expert_placement import algos as A
from envs.expert_placement.sim import _buffers, moe_s_sum

KEEP, LPT, EPLB, CUSTOM = 0, 1, 2, 3  # mode sub-step actions
N_MODES = 4
FILL = 4  # replica sub-step: give every remaining redundant replica by EPLB's greedy rule
FIRST_CANDIDATE = 5  # replica sub-step: FIRST_CANDIDATE + k gives the next replica to candidate k
MODE, REPLICATE, READY = 0, 1, 2

# Observation version (agents.obs_version records it in checkpoints and refuses another at load): raise it,
# and describe the new version here, whenever a feature's meaning changes (same names or not).
OBS_VERSIONS = {
    1: (
        "GLOBAL_FEATURES with the time features (b8730e7) then CANDIDATE_FEATURES, as its zoo checkpoint "
        "(eba40be) was trained on"
    ),
}
OBS_VERSION = 1
GLOBAL_FEATURES = (
    "phase_mode",  # 1 on a mode sub-step
    "phase_replicate",  # 1 on a replica sub-step
    "layer",  # layer index / layers
    "replicas_left",  # redundant replicas still to give (CUSTOM) / redundant slots
    "interval",  # rebalances done / rebalances per episode
    "imb_keep",  # max/mean GPU load of the current placement on the last interval's load
    "imb_lpt",  # ... after LPT repacking
    "imb_eplb",  # ... after EPLB
    "imb_custom",  # ... after CUSTOM with candidate 0 every time (EPLB's replicas, sticky packing)
    "mig_lpt",  # experts moved by LPT / slots
    "mig_eplb",  # experts moved by EPLB / slots
    "mig_custom",  # experts moved by CUSTOM / slots
    "imb_keep_slow",  # current placement on the slow (4-interval EMA) load
    "load_change",  # sum |last interval - slow EMA| / sum slow EMA: how fast the load moves
    "migration_cost",  # seconds to fetch one GPU's slots over the NIC / an interval's all-to-all time
    "gpu_max",  # current placement's GPU loads on the last interval's load / mean: max
    "gpu_median",  # ... median
    "gpu_min",  # ... min
    "redundancy",  # redundant slots / slots
    "gpus_inv",  # 1 / GPUs
    # In time, as fractions of the last interval's MoE time (all layers and steps, the placement it was played on):
    # what moving this layer would have saved on the interval just observed against what it costs in migration
    # blocking, which is the slowest GPU's fetch summed over ALL layers of the rebalance (issue 21).
    "moe_keep",  # this layer's MoE time on the last interval, current placement (KEEP)
    "dmoe_lpt",  # this layer's MoE time on the last interval's counts after LPT, minus KEEP's
    "dmoe_eplb",  # ... after EPLB, minus KEEP's
    "dmoe_custom",  # ... after CUSTOM (EPLB's replicas, sticky packing), minus KEEP's
    "mig_committed",  # migration blocking of the layers already decided in this rebalance
    "dmig_lpt",  # blocking added by LPT on this layer, on top of the committed layers' moves
    "dmig_eplb",  # ... by EPLB
    "dmig_custom",  # ... by CUSTOM
)
CANDIDATE_FEATURES = (
    "present",  # 1 if there is a k-th expert
    "load",  # last interval's mean load / mean expert load
    "load_last",  # last step's load / mean expert load
    "load_slow",  # slow EMA / mean expert load
    "trend",  # load - load_slow
    "replicas",  # replicas now
    "replicas_pending",  # replicas given so far in this CUSTOM rebuild (= replicas on a mode sub-step)
    "per_replica",  # load / replicas_pending
    "per_replica_added",  # load / (replicas_pending + 1)
    "next_layer",  # co-activation: the same-index expert's load at the next layer (the generator
    #                correlates experts of equal index in consecutive layers)
    "host_max",  # most loaded GPU holding it now / mean GPU load
)
N_GLOBAL = len(GLOBAL_FEATURES)
N_CAND = len(CANDIDATE_FEATURES)


@nb.njit(cache=True)
def _imbalance(w: np.ndarray, place: np.ndarray, G: int, buf: np.ndarray) -> float:
    A.gpu_loads(w, place, G, buf)
    m = buf.mean()
    return buf.max() / m if m > 0 else 1.0


@nb.njit(cache=True)
def _moved_frac(old: np.ndarray, new: np.ndarray, G: int, gpn: int, E: int, buf: np.ndarray) -> float:
    buf[:] = 0
    A.moved_experts(old, new, G, gpn, E, buf)
    return buf.sum() / old.shape[0]


@nb.njit(cache=True)
def _blocking(mv: np.ndarray, mig_in: np.ndarray, mig_out: np.ndarray) -> float:
    """Migration blocking seconds of ``mv[G, 2]`` received experts (own node, other node): the slowest
    GPU's fetch, ``CostModel.migration``'s time from its per-count tables."""
    t = 0.0
    for g in range(mv.shape[0]):
        t = max(t, mig_in[mv[g, 0]], mig_out[mv[g, 1]])
    return t


@nb.njit(cache=True)
def prepare_layer(e: int, layer: int, window: np.ndarray, slow: np.ndarray, place: np.ndarray, proj: np.ndarray,
                  feats: np.ndarray, G: int, gpn: int, groups: int, nodes: int, counts: np.ndarray, k0: int, T: int,
                  last_moe_s: np.ndarray, pending: np.ndarray, S: int, even: bool, ffn_table: np.ndarray,
                  latency: float, a2a2: np.ndarray, sent_rows: int, mig_in: np.ndarray, mig_out: np.ndarray,
                  opt_place: np.ndarray, opt_ffn: np.ndarray, opt_peak: np.ndarray, opt_ok: np.ndarray) -> None:
    """Options of env e's layer: proj[e, 0..2] = LPT, EPLB, CUSTOM-greedy placements; feats[e] =
    their imbalance and moved share (GLOBAL_FEATURES 5..17) and, in time (20..27), each option's MoE
    time on the last interval's counts ``counts[e, k0:k0 + T]`` (the last interval) and the migration blocking it adds to
    the layers already decided (``pending[e, :layer]``), over the last interval's MoE time ``last_moe_s[e]``.
    The EPLB option's placement and per-step FFN time and peak load on that interval are kept for
    ``PlacementSim.reference_cost`` in ``opt_place``, ``opt_ffn`` and ``opt_peak[e, k, layer]`` (k = k0 // T),
    and ``opt_ok[e, k, layer]`` is set."""
    w = window[e, layer]
    cur = place[e, layer]
    E = w.shape[0]
    P = cur.shape[0]
    buf = np.zeros(G)
    mv = np.zeros((G, 2), np.int64)
    A.lpt_repack(w, cur, G, proj[e, 0])
    A.eplb(w, P, groups, nodes, G, proj[e, 1])
    phy = np.empty(P, np.int64)
    cnt = np.empty(E, np.int64)
    A.replicate(w, P, phy, cnt)
    A.sticky_pack(w, cnt, cur, G, proj[e, 2])
    f = feats[e]
    f[5] = _imbalance(w, cur, G, buf)
    f[6] = _imbalance(w, proj[e, 0], G, buf)
    f[7] = _imbalance(w, proj[e, 1], G, buf)
    f[8] = _imbalance(w, proj[e, 2], G, buf)
    f[9] = _moved_frac(cur, proj[e, 0], G, gpn, E, mv)
    f[10] = _moved_frac(cur, proj[e, 1], G, gpn, E, mv)
    f[11] = _moved_frac(cur, proj[e, 2], G, gpn, E, mv)
    f[12] = _imbalance(slow[e, layer], cur, G, buf)
    s = slow[e, layer].sum()
    f[13] = np.abs(w - slow[e, layer]).sum() / s if s > 0 else 0.0
    A.gpu_loads(w, cur, G, buf)
    m = buf.mean()
    srt = np.sort(buf)
    if m > 0:
        f[15] = srt[-1] / m
        f[16] = srt[G // 2] / m
        f[17] = srt[0] / m
    # In time: the options on the last interval's counts, and the migration each adds to the committed layers'.
    total = last_moe_s[e].sum()
    b = _buffers(E, P, G)
    sbuf = np.empty(S)
    k = k0 // T
    opt_place[e, k, layer] = proj[e, 1]
    opt_ok[e, k, layer] = True
    tmp_ffn = np.empty(T)
    tmp_peak = np.empty(T, np.int64)
    committed = np.zeros((G, 2), np.int64)
    for l in range(layer):
        A.moved_experts(place[e, l], pending[e, l], G, gpn, E, committed)
    base = _blocking(committed, mig_in, mig_out)
    keep = last_moe_s[e, layer]
    f[20] = keep / total if total > 0 else 0.0
    f[24] = base / total if total > 0 else 0.0
    for j in range(3):
        t_j = moe_s_sum(counts, e, k0, T, layer, proj[e, j], S, G, even, ffn_table, latency, a2a2, sent_rows, sbuf, b,
                        opt_ffn[e, k, layer] if j == 1 else tmp_ffn, opt_peak[e, k, layer] if j == 1 else tmp_peak)
        mv[:] = committed
        A.moved_experts(cur, proj[e, j], G, gpn, E, mv)
        d_mig = _blocking(mv, mig_in, mig_out) - base
        f[21 + j] = (t_j - keep) / total if total > 0 else 0.0
        f[25 + j] = d_mig / total if total > 0 else 0.0


@nb.njit(cache=True)
def observe(e: int, layer: int, phase: np.ndarray, rep_done: np.ndarray, cnt_pend: np.ndarray, window: np.ndarray,
            last: np.ndarray, slow: np.ndarray, next_share: np.ndarray, place: np.ndarray, feats: np.ndarray,
            cand: np.ndarray, obs: np.ndarray, mask: np.ndarray, R: int, interval_frac: float, G: int) -> None:
    """Observation and mask of env e (candidates ranked by load per pending replica)."""
    w = window[e, layer]
    E = w.shape[0]
    K = cand.shape[1]
    cur = place[e, layer]
    cnt_now = np.zeros(E, np.int64)
    A.replica_counts(cur, E, cnt_now)
    if phase[e] == MODE:
        cnt_pend[e, :] = cnt_now
    key = np.empty(E)
    for x in range(E):
        key[x] = -w[x] / cnt_pend[e, x]
    order = np.argsort(key, kind="mergesort")
    gl = np.zeros(G)
    A.gpu_loads(w, cur, G, gl)
    gm = gl.mean()
    per = cur.shape[0] // G
    hostmax = np.zeros(E)
    for p in range(cur.shape[0]):
        v = gl[p // per] / gm if gm > 0 else 0.0
        hostmax[cur[p]] = max(hostmax[cur[p]], v)
    o = obs[e]
    o[:] = 0.0
    f = feats[e]
    for i in range(5, N_GLOBAL):
        o[i] = f[i]
    o[0] = 1.0 if phase[e] == MODE else 0.0
    o[1] = 1.0 if phase[e] == REPLICATE else 0.0
    o[2] = layer / window.shape[1]
    o[3] = (R - rep_done[e]) / R if R > 0 else 0.0
    o[4] = interval_frac
    mask[e, :] = False
    for k in range(K):
        b = N_GLOBAL + k * N_CAND
        if k >= E:
            cand[e, k] = -1
            continue
        x = order[k]
        cand[e, k] = x
        o[b + 0] = 1.0
        o[b + 1] = w[x]
        o[b + 2] = last[e, layer, x]
        o[b + 3] = slow[e, layer, x]
        o[b + 4] = w[x] - slow[e, layer, x]
        o[b + 5] = cnt_now[x]
        o[b + 6] = cnt_pend[e, x]
        o[b + 7] = w[x] / cnt_pend[e, x]
        o[b + 8] = w[x] / (cnt_pend[e, x] + 1)
        o[b + 9] = next_share[e, layer, x]
        o[b + 10] = hostmax[x]
        if phase[e] == REPLICATE:
            mask[e, FIRST_CANDIDATE + k] = True
    if phase[e] == MODE:
        mask[e, :N_MODES] = True
    else:
        mask[e, FILL] = True


@nb.njit(cache=True)
def _fill(w: np.ndarray, cnt: np.ndarray, n: int) -> None:
    """Give n more replicas, each to the expert with the largest load per replica (EPLB's rule)."""
    A.add_replicas(w, cnt, n, np.empty(0, np.int64), 0)


@nb.njit(cache=True)
def apply_actions(envs: np.ndarray, actions: np.ndarray, phase: np.ndarray, layer: np.ndarray, rep_done: np.ndarray,
                  cnt_pend: np.ndarray, cand: np.ndarray, place: np.ndarray, pending: np.ndarray, proj: np.ndarray,
                  window: np.ndarray, R: int, G: int, replica_substeps: bool) -> None:
    """Apply each env's sub-step action; an env whose last layer is decided becomes READY.
    Without replica_substeps, CUSTOM fills every redundant replica at once (EPLB's greedy rule)."""
    L = place.shape[1]
    for i in range(envs.shape[0]):
        e = envs[i]
        a = actions[e]
        l = layer[e]
        finish = False
        if phase[e] == MODE:
            if a == KEEP:
                pending[e, l] = place[e, l]
                finish = True
            elif a == LPT:
                pending[e, l] = proj[e, 0]
                finish = True
            elif a == EPLB:
                pending[e, l] = proj[e, 1]
                finish = True
            else:  # CUSTOM: every expert starts with one replica
                cnt_pend[e, :] = 1
                rep_done[e] = 0
                phase[e] = REPLICATE
                if R == 0 or not replica_substeps:
                    _fill(window[e, l], cnt_pend[e], R)
                    A.sticky_pack(window[e, l], cnt_pend[e], place[e, l], G, pending[e, l])
                    finish = True
        elif a == FILL:
            _fill(window[e, l], cnt_pend[e], R - rep_done[e])
            A.sticky_pack(window[e, l], cnt_pend[e], place[e, l], G, pending[e, l])
            finish = True
        else:
            x = cand[e, a - FIRST_CANDIDATE]
            cnt_pend[e, x] += 1
            rep_done[e] += 1
            if rep_done[e] >= R:
                A.sticky_pack(window[e, l], cnt_pend[e], place[e, l], G, pending[e, l])
                finish = True
        if finish:
            phase[e] = MODE
            rep_done[e] = 0
            layer[e] = l + 1
            if l + 1 >= L:
                phase[e] = READY


@nb.njit(cache=True)
def refresh(envs: np.ndarray, phase: np.ndarray, layer: np.ndarray, rep_done: np.ndarray, cnt_pend: np.ndarray,
            window: np.ndarray, last: np.ndarray, slow: np.ndarray, next_share: np.ndarray, place: np.ndarray,
            proj: np.ndarray, feats: np.ndarray, cand: np.ndarray, obs: np.ndarray, mask: np.ndarray, R: int,
            interval_frac: np.ndarray, G: int, gpn: int, groups: int, nodes: int, counts: np.ndarray,
            interval: np.ndarray, T: int, last_moe_s: np.ndarray, pending: np.ndarray, S: int, even: bool,
            ffn_table: np.ndarray, latency: float, a2a2: np.ndarray, sent_rows: int, mig_in: np.ndarray,
            mig_out: np.ndarray, opt_place: np.ndarray, opt_ffn: np.ndarray, opt_peak: np.ndarray,
            opt_ok: np.ndarray) -> None:
    """Prepare the options of envs entering a layer (mode sub-step) and observe every env in ``envs``;
    ``interval[e]`` is the interval just played (its counts are ``counts[e, interval[e] * T:][:T]``)."""
    for i in range(envs.shape[0]):
        e = envs[i]
        if phase[e] == MODE:
            prepare_layer(e, layer[e], window, slow, place, proj, feats, G, gpn, groups, nodes, counts,
                          interval[e] * T, T, last_moe_s, pending, S, even, ffn_table, latency, a2a2, sent_rows,
                          mig_in, mig_out, opt_place, opt_ffn, opt_peak, opt_ok)
        observe(e, layer[e], phase, rep_done, cnt_pend, window, last, slow, next_share, place, feats, cand, obs,
                mask, R, interval_frac[e], G)
