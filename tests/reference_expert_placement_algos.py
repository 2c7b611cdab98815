"""ExpertPlacement-v0 placement algorithms as they were before issue 16's speed work (commit 089590b's
``envs/expert_placement/algos.py`` verbatim, and ``kernels._fill``), kept as the reference that
tests/test_expert_placement_algos.py compares the fast versions with, bit for bit."""
from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def replicate(weight: np.ndarray, num_phy: int, phy2log: np.ndarray, logcnt: np.ndarray) -> None:
    """EPLB replicate_experts for one row: slot i < len(weight) holds expert i, each further slot
    the expert with the largest weight / replica count (first index on ties)."""
    n = weight.shape[0]
    for i in range(n):
        phy2log[i] = i
        logcnt[i] = 1
    for i in range(n, num_phy):
        best, best_v = 0, -1.0
        for e in range(n):
            v = weight[e] / logcnt[e]
            if v > best_v:
                best, best_v = e, v
        phy2log[i] = best
        logcnt[best] += 1


@nb.njit(cache=True)
def balanced_packing(weight: np.ndarray, num_packs: int, pack_index: np.ndarray, rank_in_pack: np.ndarray) -> None:
    """EPLB balanced_packing for one row: n items to num_packs packs of exactly n/num_packs items."""
    n = weight.shape[0]
    per = n // num_packs
    if per == 1:
        for i in range(n):
            pack_index[i] = i
            rank_in_pack[i] = 0
        return
    order = np.argsort(-weight, kind="mergesort")  # descending, stable
    load = np.zeros(num_packs)
    items = np.zeros(num_packs, np.int64)
    for j in range(n):
        item = order[j]
        best = -1
        for p in range(num_packs):
            if items[p] < per and (best < 0 or load[p] < load[best]):
                best = p
        pack_index[item] = best
        rank_in_pack[item] = items[best]
        load[best] += weight[item]
        items[best] += 1


@nb.njit(cache=True)
def _eplb_hierarchical(weight: np.ndarray, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int,
                       out: np.ndarray) -> None:
    n_log = weight.shape[0]
    group_size = n_log // num_groups
    groups_per_node = num_groups // num_nodes
    per_gpu = num_phy // num_gpus
    # Step 1: pack expert groups to nodes; mlog = the expert's index in node-major order.
    gw = np.zeros(num_groups)
    for g in range(num_groups):
        for j in range(group_size):
            gw[g] += weight[g * group_size + j]
    gpack = np.empty(num_groups, np.int64)
    grank = np.empty(num_groups, np.int64)
    balanced_packing(gw, num_nodes, gpack, grank)
    mlog2log = np.empty(n_log, np.int64)
    for g in range(num_groups):
        base = (gpack[g] * groups_per_node + grank[g]) * group_size
        for j in range(group_size):
            mlog2log[base + j] = g * group_size + j
    # Step 2: replicate within each node; Step 3: pack the node's replicas to its GPUs.
    log_per_node = n_log // num_nodes
    phy_per_node = num_phy // num_nodes
    gpus_per_node = num_gpus // num_nodes
    w = np.empty(log_per_node)
    phy2mlog = np.empty(phy_per_node, np.int64)
    cnt = np.empty(log_per_node, np.int64)
    wphy = np.empty(phy_per_node)
    pidx = np.empty(phy_per_node, np.int64)
    prank = np.empty(phy_per_node, np.int64)
    for node in range(num_nodes):
        for j in range(log_per_node):
            w[j] = weight[mlog2log[node * log_per_node + j]]
        replicate(w, phy_per_node, phy2mlog, cnt)
        for i in range(phy_per_node):
            wphy[i] = w[phy2mlog[i]] / cnt[phy2mlog[i]]
        balanced_packing(wphy, gpus_per_node, pidx, prank)
        for i in range(phy_per_node):
            slot = node * phy_per_node + pidx[i] * per_gpu + prank[i]
            out[slot] = mlog2log[node * log_per_node + phy2mlog[i]]


@nb.njit(cache=True)
def eplb(weight: np.ndarray, num_phy: int, num_groups: int, num_nodes: int, num_gpus: int, out: np.ndarray) -> None:
    """EPLB rebalance_experts for one layer: ``out[num_phy]`` = logical expert of each slot."""
    if num_groups % num_nodes == 0:
        _eplb_hierarchical(weight, num_phy, num_groups, num_nodes, num_gpus, out)
    else:
        _eplb_hierarchical(weight, num_phy, 1, 1, num_gpus, out)


@nb.njit(cache=True)
def replica_counts(phy2log: np.ndarray, n_log: int, cnt: np.ndarray) -> None:
    cnt[:] = 0
    for p in range(phy2log.shape[0]):
        cnt[phy2log[p]] += 1


@nb.njit(cache=True)
def lpt_repack(weight: np.ndarray, current: np.ndarray, num_gpus: int, out: np.ndarray) -> None:
    """Greedy longest-processing-time repacking of the current replicas (no replication change):
    each replica weighs its expert's load / replica count; replicas in decreasing weight go to the
    least-loaded GPU that has a free slot (Graham's LPT with the slot capacity, i.e. EPLB's
    balanced_packing over the existing replicas)."""
    P = current.shape[0]
    per = P // num_gpus
    cnt = np.zeros(weight.shape[0], np.int64)
    replica_counts(current, weight.shape[0], cnt)
    w = np.empty(P)
    for p in range(P):
        w[p] = weight[current[p]] / cnt[current[p]]
    pidx = np.empty(P, np.int64)
    prank = np.empty(P, np.int64)
    balanced_packing(w, num_gpus, pidx, prank)
    for p in range(P):
        out[pidx[p] * per + prank[p]] = current[p]


@nb.njit(cache=True)
def sticky_pack(weight: np.ndarray, logcnt: np.ndarray, current: np.ndarray, num_gpus: int, out: np.ndarray) -> None:
    """Migration-aware packing of ``logcnt[e]`` replicas per expert.

    Replicas in decreasing weight (load / count); each stays on a GPU that hosts its expert now
    (the least-loaded such GPU not yet used by this expert) when that GPU has a free slot and its
    load after adding stays within max(mean GPU load, what LPT's choice would reach); otherwise it
    goes where LPT puts it (the least-loaded GPU with a free slot). Balance close to LPT, few moves.
    """
    n = weight.shape[0]
    P = current.shape[0]
    per = P // num_gpus
    total = 0.0
    for e in range(n):
        total += weight[e]
    avg = total / num_gpus
    # home[g, e] = 1 while GPU g hosts e now and has not yet been given a replica of e
    home = np.zeros((num_gpus, n), np.bool_)
    for p in range(P):
        home[p // per, current[p]] = True
    items = np.empty(P, np.int64)
    iw = np.empty(P)
    k = 0
    for e in range(n):
        for _ in range(logcnt[e]):
            items[k] = e
            iw[k] = weight[e] / logcnt[e]
            k += 1
    order = np.argsort(-iw[:k], kind="mergesort")
    load = np.zeros(num_gpus)
    fill = np.zeros(num_gpus, np.int64)
    for j in range(k):
        e = items[order[j]]
        w = iw[order[j]]
        lpt = -1
        for g in range(num_gpus):
            if fill[g] < per and (lpt < 0 or load[g] < load[lpt]):
                lpt = g
        h = -1
        for g in range(num_gpus):
            if home[g, e] and fill[g] < per and (h < 0 or load[g] < load[h]):
                h = g
        g = lpt
        if h >= 0 and load[h] + w <= max(avg, load[lpt] + w):
            g = h
        home[g, e] = False
        out[g * per + fill[g]] = e
        load[g] += w
        fill[g] += 1


@nb.njit(cache=True)
def gpu_loads(weight: np.ndarray, phy2log: np.ndarray, num_gpus: int, out: np.ndarray) -> None:
    """Expected per-GPU load when each expert's load splits evenly over its replicas."""
    cnt = np.zeros(weight.shape[0], np.int64)
    replica_counts(phy2log, weight.shape[0], cnt)
    per = phy2log.shape[0] // num_gpus
    out[:] = 0.0
    for p in range(phy2log.shape[0]):
        out[p // per] += weight[phy2log[p]] / cnt[phy2log[p]]


@nb.njit(cache=True)
def moved_experts(old: np.ndarray, new: np.ndarray, num_gpus: int, gpus_per_node: int, n_log: int,
                  out: np.ndarray) -> None:
    """Experts each GPU must receive to go from ``old`` to ``new``: ``out[g, 0]`` += copies that a
    GPU of its own node already holds (NVLink), ``out[g, 1]`` += copies fetched from another node.
    An expert already on the GPU (in any slot) or already received costs nothing."""
    P = old.shape[0]
    per = P // num_gpus
    n_nodes = max(1, num_gpus // gpus_per_node)
    on_node = np.zeros((n_nodes, n_log), np.bool_)
    had = np.zeros((num_gpus, n_log), np.bool_)
    for p in range(P):
        g = p // per
        had[g, old[p]] = True
        on_node[min(g // gpus_per_node, n_nodes - 1), old[p]] = True
    for p in range(P):
        g = p // per
        e = new[p]
        if not had[g, e]:
            had[g, e] = True
            if on_node[min(g // gpus_per_node, n_nodes - 1), e]:
                out[g, 0] += 1
            else:
                out[g, 1] += 1


@nb.njit(cache=True)
def _fill(w: np.ndarray, cnt: np.ndarray, n: int) -> None:
    """Give n more replicas, each to the expert with the largest load per replica (EPLB's rule)."""
    for _ in range(n):
        best, best_v = 0, -1.0
        for x in range(w.shape[0]):
            v = w[x] / cnt[x]
            if v > best_v:
                best, best_v = x, v
        cnt[best] += 1
