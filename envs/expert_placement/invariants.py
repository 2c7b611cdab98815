"""Invariants of ExpertPlacement-v0's batch, checked by ``envs.fuzz`` after every sub-step and by tests.

Plain numpy over the batch, not on the hot path; only reads the state (``dispatch_batch`` writes a
scratch array of its own), so episodes are unchanged. The rules (``envs.expert_placement.sim``):

* every placement is a valid map: the placement each env serves with (``sim.place`` [E, L, P])
  and the layers of the one being built this rebalance (``pending[e, :layer]``) hold logical
  expert ids in [0, experts), each expert on at least one physical slot; the shape gives every
  GPU the config's number of slots (P = experts + redundant_slots = gpus x slots per GPU);
* tokens are conserved through dispatch: on the interval an env last played, the tokens
  ``dispatch_batch`` sends to the slots of each expert sum to that expert's count, per step and
  layer, none negative (:func:`step_violations`, for envs that played an interval);
* across a sub-step (:func:`step_violations`, envs whose episode did not end): the interval
  counter never decreases and advances by at most one; the accumulated costs (MoE seconds,
  layer-steps, migration bytes and seconds) never decrease; an interval adds
  ``interval_steps x layers`` layer-steps, and migration bytes >= 0, exactly 0 when the placement
  did not change.
"""

from __future__ import annotations

import hwmodels
import numpy as np

from envs.expert_placement import kernels as K
from envs.expert_placement.sim import dispatch_batch

ACC_NAMES = ("MoE seconds", "FFN seconds", "all-to-all seconds", "imbalance", "all-to-all bytes", "layer-steps",
             "migration bytes", "migration seconds")
ACC_LAYER_STEPS, ACC_MIG_BYTES = 5, 6


def snapshot(vec) -> dict[str, np.ndarray]:
    """What :func:`step_violations` compares across a sub-step (copies): ``place`` [E, L, P],
    ``interval`` [E], ``acc`` [E, 8] (``PlacementSim.acc``)."""
    sim = vec.sim
    return {"place": sim.place.copy(), "interval": sim.interval.copy(), "acc": sim.acc.copy()}


def _map_violations(place: np.ndarray, n_experts: int, where: str) -> list[str]:
    """``place`` [P] of one layer: ids in [0, n_experts), every expert on >= 1 slot."""
    if place.min() < 0 or place.max() >= n_experts:
        return [f"{where}: expert ids outside [0, {n_experts}): {sorted(set(place[(place < 0) | (place >= n_experts)].tolist()))[:5]}"]
    missing = np.flatnonzero(np.bincount(place, minlength=n_experts) == 0)
    return [f"{where}: experts {missing[:5].tolist()} on no slot"] if missing.size else []


def violations(vec) -> list[str]:
    """Every broken rule of ``vec``'s state (an ``ExpertPlacementVecEnv``) as one line naming the
    env and layer; empty when all hold."""
    sim, sh, cfg = vec.sim, vec.sh, vec.config
    out: list[str] = []
    experts = hwmodels.get_model(cfg.model).experts
    P = experts + int(cfg.redundant_slots)
    if sh.E != experts or sh.P != P or sh.G != cfg.gpus or sh.S * sh.G != P or sim.place.shape[1:] != (sh.L, P):
        out.append(f"shape: {sh.E} experts, {sh.P} slots, {sh.G} GPUs x {sh.S} slots, placements {sim.place.shape[1:]}"
                   f" != the config's {experts} experts + {cfg.redundant_slots} redundant on {cfg.gpus} GPUs")
    for e in range(vec.num_envs):
        for l in range(sh.L):
            out += _map_violations(sim.place[e, l], sh.E, f"env {e} layer {l}")
        if vec.phase[e] != K.READY:
            for l in range(int(vec.layer[e])):
                out += _map_violations(vec.pending[e, l], sh.E, f"env {e} layer {l} (rebalance in progress)")
        if not 0 <= sim.interval[e] <= cfg.intervals:
            out.append(f"env {e}: interval {int(sim.interval[e])} outside [0, {cfg.intervals}]")
    return out


def dispatch_violations(vec, envs: np.ndarray) -> list[str]:
    """Token conservation through dispatch for ``envs`` on the interval each last played with the
    placement it now serves with (the placement changes only when an interval is played)."""
    sim, sh = vec.sim, vec.sh
    if envs.size == 0:
        return []
    counts = sim.interval_counts(envs, sim.interval[envs]).astype(np.int64)  # [n, T, L, E]
    place = sim.place[envs]
    slots = np.zeros((*counts.shape[:3], sh.P), np.int64)
    dispatch_batch(counts, place, sh.S, sh.G, vec.config.dispatch == "even", slots)
    out: list[str] = []
    for i, e in enumerate(envs.tolist()):
        if (slots[i] < 0).any():
            out.append(f"env {e}: negative tokens on a slot")
        for l in range(sh.L):
            if place[i, l].min() < 0 or place[i, l].max() >= sh.E:
                continue  # ids out of range: :func:`violations` names them; dispatch cannot index them
            per_expert = np.zeros((counts.shape[1], sh.E), np.int64)
            np.add.at(per_expert.T, place[i, l], slots[i, :, l].T)
            bad = per_expert != counts[i, :, l]
            if bad.any():
                t, x = (int(v) for v in np.argwhere(bad)[0])
                out.append(f"env {e} layer {l} step {t}: expert {x}'s slots got {int(per_expert[t, x])} tokens of "
                           f"its {int(counts[i, t, l, x])}")
                break
    return out


def step_violations(vec, before: dict[str, np.ndarray], live: np.ndarray) -> list[str]:
    """Rules across one sub-step for the envs in ``live`` [E] bool (episode not ended in it);
    ``before``: :func:`snapshot` before the sub-step. Includes :func:`dispatch_violations` of the
    envs that played an interval."""
    sim, cfg = vec.sim, vec.config
    out: list[str] = []
    d_int = sim.interval - before["interval"]
    bad = live & ((d_int < 0) | (d_int > 1))
    if bad.any():
        e = int(np.argmax(bad))
        out.append(f"env {e}: interval went from {int(before['interval'][e])} to {int(sim.interval[e])}")
    d_acc = sim.acc - before["acc"]
    back = live[:, None] & (d_acc < 0)
    if back.any():
        e, j = (int(v) for v in np.argwhere(back)[0])
        out.append(f"env {e}: accumulated {ACC_NAMES[j]} decreased from {before['acc'][e, j]!r} to {sim.acc[e, j]!r}")
    played = live & (d_int == 1)
    idle = live & (d_int == 0)
    if (idle[:, None] & (d_acc != 0)).any():
        out.append(f"env {int(np.argmax(idle & (d_acc != 0).any(1)))}: costs accrued without an interval played")
    steps = cfg.interval_steps * vec.sh.L
    wrong = played & (d_acc[:, ACC_LAYER_STEPS] != steps)
    if wrong.any():
        e = int(np.argmax(wrong))
        out.append(f"env {e}: an interval added {d_acc[e, ACC_LAYER_STEPS]:g} layer-steps, not {steps}")
    same = played & (sim.place == before["place"]).all((1, 2)) & (d_acc[:, ACC_MIG_BYTES] != 0)
    if same.any():
        e = int(np.argmax(same))
        out.append(f"env {e}: {d_acc[e, ACC_MIG_BYTES]:g} migration bytes with the placement unchanged")
    return out + dispatch_violations(vec, np.flatnonzero(played))
