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


def interval_table(sim: PlacementSim, e: int) -> tuple[np.ndarray, np.ndarray]:
    """What every mode costs env ``e`` per layer over the next interval, from its true counts:
    MoE seconds ``[4, L]`` (summed over the interval's steps) and the experts each GPU receives
    ``[L, 4, G, 2]`` (own node, other node), for the placements of :func:`mode_placements`. Depends
    only on the state at the rebalance's start (one table serves all its layers)."""
    sh = sim.sh
    opts = mode_placements(sim, e)
    envs = np.array([e])
    counts = sim.interval_counts(envs, sim.interval[envs] + 1)  # [1, T, L, E]: the next interval's true load
    moe = sim.cost.dispatch_costs(np.repeat(counts, K.N_MODES, 0), opts)["moe_s"].sum(1)  # [4, L]
    moved = np.zeros((sh.L, K.N_MODES, sh.G, 2), np.int64)
    for l in range(sh.L):
        for m in range(K.N_MODES):
            A.moved_experts(sim.place[e, l], opts[m, l], sh.G, sh.gpn, sh.E, moved[l, m])
    return moe, moved


def mode_costs(sim: PlacementSim, e: int, layer: int, pending: np.ndarray,
               table: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Cost in seconds of each mode for env ``e``'s ``layer`` [4] (float64), each with the best
    choice for the layers after it: the MoE time of layers ``layer..L-1`` over the next interval +
    the whole rebalance's migration blocking, where layers before ``layer`` keep ``pending[:layer]``
    (``[L, P]``, the placements already chosen in this rebalance; their MoE time, the same for every
    choice left, is not included). ``table``: :func:`interval_table` of this rebalance (computed when
    None). Raises ``ValueError`` when more than ``MAX_FREE_LAYERS`` layers remain (the enumeration
    would be too large)."""
    sh = sim.sh
    free = sh.L - layer
    if free > MAX_FREE_LAYERS:
        raise ValueError(f"ExpertPlacement teacher: {free} layers left to decide at layer {layer}; the exact "
                         f"enumeration handles at most {MAX_FREE_LAYERS} (layers <= {MAX_FREE_LAYERS})")
    moe, moved = interval_table(sim, e) if table is None else table
    fixed_moved = np.zeros((sh.G, 2), np.int64)
    for l in range(layer):
        A.moved_experts(sim.place[e, l], pending[l], sh.G, sh.gpn, sh.E, fixed_moved)
    combos = _combos(free)  # [C, free]
    layers = np.arange(layer, sh.L)
    tot_moved = fixed_moved + moved[layers, combos].sum(1)  # [C, G, 2]
    _, mig_s = sim.cost.migration(tot_moved)
    total = moe[combos, layers].sum(1) + mig_s  # [C]
    best = np.full(K.N_MODES, np.inf)
    np.minimum.at(best, combos[:, 0], total)
    return best


_COMBOS: dict[int, np.ndarray] = {}


def _combos(free: int) -> np.ndarray:
    """Every mode per layer for ``free`` layers: [4^free, free] int64 (cached)."""
    if free not in _COMBOS:
        _COMBOS[free] = np.array(list(itertools.product(range(K.N_MODES), repeat=free)), np.int64).reshape(-1, free)
    return _COMBOS[free]
