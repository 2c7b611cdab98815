"""ExpertPlacement-v0's privileged teacher: the rebalance that costs least over the coming interval,
in hindsight.

At a rebalance every layer may take one of the four modes the policy can take (KEEP, LPT, EPLB,
CUSTOM: ``envs.expert_placement.kernels``), each a placement computed from the *last* interval's
load, exactly as the env applies it. The teacher reads the *next* interval's true counts (the env
holds the whole episode's load: the generator is deterministic per seed, recorded counts are a
file; ``eplb_clairvoyant`` reads them the same way, ``PlacementSim.clairvoyant_placement``) and
scores every combination of modes over the layers still to decide:

    cost = sum over layers and steps of the MoE layer time (dispatch + FFN + all-to-all,
           ``CostModel.dispatch_costs``) + the migration blocking time of the whole rebalance
           (``CostModel.migration``: the slowest GPU's fetch of every expert it gains, summed
           over layers),

i.e. exactly the cost ``PlacementSim.run_interval`` charges for the interval. The MoE time is a sum
of per-layer terms, the migration time is not (a max over GPUs of bytes summed over layers), so the
teacher enumerates the 4^(layers left) combinations rather than choosing layer by layer; the layers
already decided in this rebalance keep the placement the policy gave them (DAgger's student may
have chosen otherwise than the teacher). The result is the exact optimum of one interval, a
one-step lookahead: it does not weigh what a placement costs or saves in later intervals, so over
a whole episode it need not beat every fixed mode (tests measure it; envs/expert_placement/README.md
reports how often it does).

Privileged like PrefixEviction-v0's Belady and Routing-v0's replay teacher: labels for
``train.py --imitate N``; no policy ever sees what it reads.
"""

from __future__ import annotations

import itertools

import numpy as np

from envs.expert_placement import algos as A
from envs.expert_placement import kernels as K
from envs.expert_placement.sim import PlacementSim

MAX_FREE_LAYERS = 6  # 4^6 = 4,096 combinations per decision


def mode_placements(sim: PlacementSim, e: int) -> np.ndarray:
    """The placement each mode gives every layer of env ``e`` at this rebalance: ``[4, L, P]``
    int64 in the order KEEP, LPT, EPLB, CUSTOM, from the last interval's load (``sim.window``) and
    the current placement, as ``kernels.prepare_layer`` / ``apply_actions`` compute them (CUSTOM
    without replica sub-steps: EPLB's greedy replicas, sticky packing)."""
    sh = sim.sh
    out = np.empty((K.N_MODES, sh.L, sh.P), np.int64)
    phy = np.empty(sh.P, np.int64)
    cnt = np.empty(sh.E, np.int64)
    for l in range(sh.L):
        w, cur = sim.window[e, l], sim.place[e, l]
        out[K.KEEP, l] = cur
        A.lpt_repack(w, cur, sh.G, out[K.LPT, l])
        A.eplb(w, sh.P, sh.groups, sh.nodes, sh.G, out[K.EPLB, l])
        A.replicate(w, sh.P, phy, cnt)
        A.sticky_pack(w, cnt, cur, sh.G, out[K.CUSTOM, l])
    return out


def _window(sim: PlacementSim, e: int, k: int) -> np.ndarray:
    """The load history the env's placements read after interval k is played: its mean counts in
    units of the mean expert load ``[L, E]`` (``PlacementSim._observe_interval``'s operations)."""
    c = sim.interval_counts(np.array([e]), np.array([k])).astype(np.float64) / sim.mean_expert_load
    return c.mean(1)[0]


def _chain(sim: PlacementSim, e: int, start: np.ndarray, rollout: int) -> tuple[np.ndarray, np.ndarray]:
    """Each start placement ``start[n, L, P]`` played on the next interval, then ``rollout``
    intervals of sticky_eplb (CUSTOM: EPLB's replicas on the last interval's load, sticky packing),
    layer by layer (a layer's placements depend on its own load and placement only): MoE seconds
    ``[n, L]`` summed over those intervals and experts each GPU receives ``[1 + rollout, L, n, G, 2]``
    at each of their rebalances (the first from the current placement)."""
    sh = sim.sh
    n = start.shape[0]
    k = int(sim.interval[e])
    moved = np.zeros((1 + rollout, sh.L, n, sh.G, 2), np.int64)
    moe = np.zeros((n, sh.L))
    envs = np.array([e])
    phy = np.empty(sh.P, np.int64)
    cnt = np.empty(sh.E, np.int64)
    prev = np.broadcast_to(sim.place[e], start.shape)
    cur = start
    for h in range(1 + rollout):
        if h:
            w = _window(sim, e, k + h)
            nxt = np.empty_like(cur)
            for l in range(sh.L):
                A.replicate(w[l], sh.P, phy, cnt)
                for m in range(n):
                    A.sticky_pack(w[l], cnt, cur[m, l], sh.G, nxt[m, l])
            prev, cur = cur, nxt
        for l in range(sh.L):
            for m in range(n):
                A.moved_experts(prev[m, l], cur[m, l], sh.G, sh.gpn, sh.E, moved[h, l, m])
        counts = sim.interval_counts(envs, np.array([k + 1 + h]))  # [1, T, L, E]: that interval's true load
        moe += sim.cost.dispatch_costs(np.repeat(counts, n, 0), np.ascontiguousarray(cur))["moe_s"].sum(1)
    return moe, moved


def interval_table(sim: PlacementSim, e: int, rollout: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What every mode costs env ``e`` per layer, from the true counts: played on the next interval,
    then ``rollout`` intervals (those left in the episode) of sticky_eplb from the placement it
    leaves (:func:`_chain`): MoE seconds ``[4, L]``, the experts each GPU receives at each rebalance
    ``[1 + rollout, L, 4, G, 2]`` (own node, other node), and the mode placements ``[4, L, P]``
    (:func:`mode_placements`). Depends only on the state at the rebalance's start (one table serves
    all its layers)."""
    opts = mode_placements(sim, e)
    rollout = max(0, min(int(rollout), sim.cfg.intervals - int(sim.interval[e]) - 1))
    moe, moved = _chain(sim, e, opts, rollout)
    return moe, moved, opts


def mode_costs(sim: PlacementSim, e: int, layer: int, pending: np.ndarray,
               table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, rollout: int = 0) -> np.ndarray:
    """Cost in seconds of each mode for env ``e``'s ``layer`` [4] (float64), each with the best
    choice for the layers after it: the MoE time of layers ``layer..L-1`` over the next interval +
    the whole rebalance's migration blocking (with ``rollout`` > 0: + the MoE time and migration of
    the next ``rollout`` intervals played by sticky_eplb from there), where layers before ``layer``
    keep ``pending[:layer]`` (``[L, P]``, the placements already chosen in this rebalance; their MoE
    time, the same for every choice left, is not included). ``table``: :func:`interval_table` of
    this rebalance with the same ``rollout`` (computed when None). Raises ``ValueError`` when more
    than ``MAX_FREE_LAYERS`` layers remain (the enumeration would be too large)."""
    sh = sim.sh
    free = sh.L - layer
    if free > MAX_FREE_LAYERS:
        raise ValueError(f"ExpertPlacement teacher: {free} layers left to decide at layer {layer}; the exact "
                         f"enumeration handles at most {MAX_FREE_LAYERS} (layers <= {MAX_FREE_LAYERS})")
    moe, moved, opts = interval_table(sim, e, rollout) if table is None else table
    H = moved.shape[0]
    fixed = np.zeros((H, sh.G, 2), np.int64)  # the decided layers' moves at each rebalance
    for l in range(layer):
        same = np.flatnonzero((opts[:, l] == pending[l]).all(1))
        if same.size:  # a mode's placement (always, without replica sub-steps): from the table
            fixed += moved[:, l, same[0]]
        else:
            start = np.broadcast_to(sim.place[e], (1, sh.L, sh.P)).copy()
            start[0, l] = pending[l]
            fixed += _chain(sim, e, start, H - 1)[1][:, l, 0]
    combos = _combos(free)  # [C, free]
    layers = np.arange(layer, sh.L)
    total = moe[combos, layers].sum(1)  # [C]
    for h in range(H):
        _, mig_s = sim.cost.migration(fixed[h] + moved[h][layers, combos].sum(1))  # [C, G, 2] -> [C]
        total = total + mig_s
    best = np.full(K.N_MODES, np.inf)
    np.minimum.at(best, combos[:, 0], total)
    return best


_COMBOS: dict[int, np.ndarray] = {}


def _combos(free: int) -> np.ndarray:
    """Every mode per layer for ``free`` layers: [4^free, free] int64 (cached)."""
    if free not in _COMBOS:
        _COMBOS[free] = np.array(list(itertools.product(range(K.N_MODES), repeat=free)), np.int64).reshape(-1, free)
    return _COMBOS[free]
