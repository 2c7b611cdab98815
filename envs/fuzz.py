"""Fuzzing every environment: random masked actions over random scenarios, invariants after every batch.

    python -m envs.fuzz [--env ID ...] [--steps 1000000] [--seed S] [--scenario-steps 20000]

For each environment (default: every one in ``FUZZ_ENVS``: ``envs.VEC_ENVS`` and the multi-agent
``servegym/MultiCluster-v0``) it plays ``--steps`` env-steps in total, drawing a new random
scenario every ``--scenario-steps`` env-steps: a batch size E in [1, 8], a seed, and the
environment's random knobs (:func:`draw_scenario`). The cluster environments (KVAdmission, Routing,
Disaggregation, MultiCluster) play random traces (Poisson arrivals at a random rate, random prompt
and output lengths, some requests marked failed, some too long for the KV pool so that the engine
rejects them) on random KV capacities, queue sizes and loads; ExpertPlacement and Autoscale play
random non-default configurations (:func:`draw_expert_placement`, :func:`draw_autoscale`);
PrefixEviction its default trace at random capacities. Each step takes a uniformly random legal
action (``action_masks``). After every batch it checks:

- no NaN or infinity in observations or rewards, and at least one legal action per env;
- for ``envs.core`` clusters (``vec.state``): request conservation, KV blocks used + free =
  capacity with free >= 0 (KV <= capacity), no KV beyond a request's tokens, the slot lists
  (``envs.core.invariants.violations``), and clocks (env and replica) that never run backward within an episode; a replica clock may lead
  the env clock in Routing-v0, where the iteration in flight at a decision ends after it;
- Disaggregation-v0: the same rules across the KV handover between instances
  (``envs.disaggregation.invariants.violations``) and an env clock that never runs backward;
- PrefixEviction-v0: cached blocks within 0 and the env's capacity, hits <= references;
- ExpertPlacement-v0 (``envs.expert_placement.invariants``): every placement a valid map (each
  expert on >= 1 slot, the config's slots per GPU), tokens conserved through dispatch on each
  interval played, the interval counter and accumulated costs monotone, migration bytes >= 0 and
  0 when the placement is unchanged;
- Autoscale-v0 (``envs.autoscale.invariants``): fleet sizes within bounds, requests conserved by the
  fluid model (arrivals = the trace's, 0 <= arrived - backlog <= capacity integral, missed <=
  arrived), cost and the other accumulators monotone, the clock one interval on per step;
- MultiCluster-v0 (``envs.multi.invariants``), stepped through ``RoleVecEnv`` with a random role as
  the VecEnv's and the others played by :class:`RandomLegal` (so every seat acts randomly from its
  mask): every role's observations finite and every agent with a legal action, the cluster rules
  above per replica, arrivals counted once across routers, no request on an OFF or starting
  replica, the autoscaler's fleet within bounds, monotone env, replica, billing clocks. An
  env-step of MultiCluster-v0 is one joint step of one cluster (every agent acts once).

Prints progress and the first violations; exits 1 if any invariant broke, 0 otherwise. The
slow test ``tests/test_fuzz.py`` runs it at full size; CI runs a short variant;
``envs/fuzz_parallel.sh`` runs one environment as many processes side by side.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

import envs
from envs.options import env_arg
from traces.trace import Trace, TraceMeta

CLUSTER_ENVS = ("servegym/KVAdmission-v0", "servegym/Routing-v0")
DISAGGREGATION = "servegym/Disaggregation-v0"
PREFIX_EVICTION = "servegym/PrefixEviction-v0"
EXPERT_PLACEMENT = "servegym/ExpertPlacement-v0"
AUTOSCALE = "servegym/Autoscale-v0"
# Decisions come while replicas are busy: the iteration in flight ends after the env clock.
IN_FLIGHT_ENVS = ("servegym/Routing-v0",)
# The multi-agent cluster (PettingZoo parallel env; fuzzed through its batched core and RoleVecEnv).
MULTI = "servegym/MultiCluster-v0"
# Every environment envs.fuzz knows: the single-agent VecEnvs, then the multi-agent cluster.
FUZZ_ENVS = (*envs.VEC_ENVS, MULTI)


def random_trace(rng: np.random.Generator, n: int) -> Trace:
    """``n`` requests, Poisson arrivals at a log-uniform rate in [0.5, 200] req/s, prompts of 1 to
    4000 tokens (some longer than a small KV pool), outputs of 1 to 400, 3% marked failed."""
    rate = float(np.exp(rng.uniform(np.log(0.5), np.log(200.0))))
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    t -= t[0]
    prompt = np.where(rng.random(n) < 0.05, rng.integers(1000, 4000, n), rng.integers(1, 800, n))
    return Trace(t.astype(np.float64), prompt.astype(np.int64), rng.integers(1, 400, n).astype(np.int64),
                 TraceMeta(f"fuzz-{rate:.3g}rps", "envs.fuzz", "n/a"), failed=rng.random(n) < 0.03)


def draw_scenario(env_id: str, rng: np.random.Generator) -> tuple[int, dict[str, Any]]:
    """Batch size and constructor kwargs of a random scenario of ``env_id``."""
    E = int(rng.integers(1, 9))
    if env_id in CLUSTER_ENVS:
        kw: dict[str, Any] = {
            "trace": random_trace(rng, int(rng.integers(96, 400))), "split": "all",
            "window_requests": int(rng.integers(8, 64)), "capacity_blocks": int(rng.integers(80, 600)),
            "queue_slots": int(rng.integers(4, 64)), "drain_s": 30.0,
            "load": tuple(float(x) for x in rng.uniform(0.2, 2.5, 2)),
        }
        if env_id == "servegym/KVAdmission-v0":
            kw["candidates"] = int(rng.integers(1, 9))
            kw["max_seqs"] = int(rng.integers(4, 256))
        else:
            kw["replicas"] = int(rng.integers(1, 5))
            kw["stale_s"] = float(rng.choice([0.0, 0.5]))
        return E, kw
    if env_id == MULTI:
        return E, draw_multi(rng)
    if env_id == EXPERT_PLACEMENT:
        return E, draw_expert_placement(rng)
    if env_id == AUTOSCALE:
        return E, draw_autoscale(rng)
    if env_id == "servegym/PrefixEviction-v0":
        return E, {"capacity_frac": tuple(float(x) for x in rng.uniform(0.01, 0.3, 2))}
    if env_id == "servegym/Disaggregation-v0":
        # Random traces for both phase kinds (or one), cluster sizes, node layouts, KV pools that
        # reject long prompts, queue and dispatch sizes, decision intervals, warm-ups, first-token
        # and transfer modes, SLOs and loads; episodes of 1-3 phases of 20-60 s.
        tp = int(rng.choice([1, 2]))
        return E, {
            "trace": random_trace(rng, int(rng.integers(96, 400))),
            "shift_trace": None if rng.random() < 0.3 else random_trace(rng, int(rng.integers(96, 400))),
            "split": "all", "instances": int(rng.integers(2, 9)), "tp": tp, "gpus_per_node": tp * int(rng.choice([1, 2, 4])),
            "capacity_blocks": int(rng.integers(120, 3000)), "queue_slots": int(rng.integers(8, 128)),
            "dispatch_queue": int(rng.integers(1, 33)), "phases": int(rng.integers(1, 4)),
            "phase_s": float(rng.choice([20.0, 40.0, 60.0])), "interval_s": float(rng.choice([2.0, 5.0, 10.0])),
            "switch_s": float(rng.uniform(0.0, 8.0)), "drain_s": float(rng.choice([0.0, 30.0])),
            "first_token": str(rng.choice(["decode", "prefill"])), "layerwise_transfer": bool(rng.random() < 0.5),
            "slo_ttft_s": float(rng.uniform(0.2, 4.0)), "slo_tpot_s": float(rng.uniform(0.02, 0.3)),
            "episodes_per_load": 2, "load": tuple(float(x) for x in rng.uniform(0.2, 2.0, 2)),
        }
    return E, {}


def draw_autoscale(rng: np.random.Generator) -> dict[str, Any]:
    """Autoscale-v0 kwargs of a random scenario on the GPU types whose replica curves the default
    builds (H100, L40S; one or both, either order): per-type replica limits, step sizes, control
    intervals and fluid bins, episode lengths (4 h or a day: episodes end inside a long fuzz run;
    each end computes the oracle reference, about 1.4 s for 4 h), loads (``rate_scale``), SLO penalties, cold starts and the static_peak attainment target. The
    engine start stays below the interval minus 10 s, so that the cold start (plus about 2.3 s of
    weights from NVMe) is shorter than the interval, as the oracle reference needs
    (``kernels.oracle_plan``)."""
    types = [("H100",), ("L40S",), ("H100", "L40S"), ("L40S", "H100")][int(rng.integers(4))]
    interval = float(rng.choice([16.0, 30.0, 60.0]))
    return {
        "gpu_types": types, "max_replicas": tuple(int(x) for x in rng.integers(40, 64, len(types))),
        "max_step": int(rng.integers(1, 5 if len(types) == 1 else 3)), "interval_s": interval,
        "bin_s": float(rng.choice([1.0, 2.0])), "episode_s": float(rng.choice([4 * 3600.0, 86400.0])),
        "rate_scale": float(rng.uniform(0.3, 1.5)), "slo_penalty": float(np.exp(rng.uniform(np.log(1e-4), 0.0))),
        "engine_init_s": float(rng.uniform(0.0, interval - 10.0)), "attain_target": float(rng.uniform(0.9, 0.999)),
        "split": str(rng.choice(["train", "test"])),
    }


def draw_expert_placement(rng: np.random.Generator) -> dict[str, Any]:
    """ExpertPlacement-v0 kwargs of a random scenario: an MoE model (8, 128 or 256 experts), 2-32
    GPUs on nodes of 4 or 8, 0-2 extra redundant slots per GPU beyond the fewest that fill them,
    1-4 layers, batch sizes, generator drift, skew, layer correlation and phase shifts, interval
    lengths and counts, candidates, per-replica sub-steps and both dispatch rules."""
    model = str(rng.choice(["Mixtral-8x7B", "Qwen3-30B-A3B", "DeepSeek-V3"]))
    import hwmodels

    experts = hwmodels.get_model(model).experts
    G = int(rng.choice([2, 4, 8])) if experts <= 8 else int(rng.choice([8, 16, 32]))
    return {
        "model": model, "gpus": G, "gpus_per_node": min(G, int(rng.choice([4, 8]))),
        "redundant_slots": (-experts) % G + G * int(rng.integers(0, 3)), "layers": int(rng.integers(1, 5)),
        "tokens_per_gpu": int(rng.choice([16, 64, 256])), "drift": float(rng.uniform(0.0, 1.0)),
        "zipf_s": float(rng.uniform(0.2, 1.2)), "layer_corr": float(rng.uniform(0.0, 1.0)),
        "phase_shift_every": None if rng.random() < 0.5 else int(rng.integers(8, 65)),
        "interval_steps": int(rng.choice([4, 8, 16])), "intervals": int(rng.integers(2, 7)),
        "candidates": int(rng.integers(1, 13)), "replica_substeps": bool(rng.random() < 0.5),
        "dispatch": str(rng.choice(["least_loaded", "even"])), "split": str(rng.choice(["train", "test"])),
    }


def draw_multi(rng: np.random.Generator) -> dict[str, Any]:
    """``RoleVecEnv`` kwargs of a random MultiCluster-v0 scenario: the role a policy plays through
    the VecEnv (the others by :class:`RandomLegal`) and its reward, a random trace, 1-5 replica
    slots, 1-4 routers, the autoscaler's floor, initial fleet, period, step size and cold start,
    report staleness, KV pools that reject long prompts, queue sizes, admission candidates, loads."""
    R = int(rng.integers(1, 6))
    lo = int(rng.integers(1, R + 1))
    role = str(rng.choice(["router", "admission", "autoscaler"]))
    return {
        "role": role, "reward": "replica_slo" if role == "admission" and rng.random() < 0.5 else "shared",
        "trace": random_trace(rng, int(rng.integers(96, 400))), "split": "all",
        "window_requests": int(rng.integers(8, 64)), "capacity_blocks": int(rng.integers(80, 600)),
        "queue_slots": int(rng.integers(4, 64)), "drain_s": float(rng.choice([0.0, 30.0])),
        "load": tuple(float(x) for x in rng.uniform(0.2, 2.5, 2)), "replicas": R,
        "stale_s": float(rng.choice([0.0, 0.5, 2.0])), "n_routers": int(rng.integers(1, 5)),
        "min_replicas": lo, "initial_replicas": None if rng.random() < 0.3 else int(rng.integers(lo, R + 1)),
        "interval_s": float(rng.choice([0.5, 2.0, 15.0])), "max_step": int(rng.integers(1, 4)),
        "cold_start_s": None if rng.random() < 0.3 else float(rng.uniform(0.0, 20.0)),
        "candidates": int(rng.integers(1, 9)), "cost_weight": float(rng.uniform(0.0, 60.0)),
    }


class RandomLegal:
    """A batched policy of one role of MultiCluster-v0 (``RoleVecEnv``'s ``others``): a uniformly
    random legal action per agent from its mask, drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def act(self, obs: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
        keys = self.rng.random(action_mask.shape)
        keys[~np.asarray(action_mask, bool)] = -1.0
        return keys.argmax(1)


def make_multi(E: int, seed: int, kw: dict[str, Any], rng: np.random.Generator):
    """A ``RoleVecEnv`` of ``E`` clusters for :func:`draw_multi`'s ``kw``, the other roles random."""
    from envs.multi.env import ROLES, RoleVecEnv

    role = kw["role"]
    others = {r: (lambda view: RandomLegal(rng)) for r in ROLES if r != role}
    return RoleVecEnv(E, seed=seed, others=others, **kw)


def multi_violations(vec, before: dict[str, np.ndarray], dones: np.ndarray) -> list[str]:
    """MultiCluster-v0 after a step of ``vec`` (a ``RoleVecEnv``): every role's observations finite
    and every agent with a legal action, ``envs.multi.invariants``' state rules, and its rules
    across the step for clusters whose episode did not end (``before``: its snapshot)."""
    from envs.multi import invariants as MI
    from envs.multi.env import ROLES

    core = vec.core
    out: list[str] = []
    for role in ROLES:
        o, m = core.obs(role), core.masks(role)
        if not np.isfinite(o).all():
            e, i = (int(x) for x in np.argwhere(~np.isfinite(o).all(2))[0])
            out.append(f"env {e} {role} {i}: non-finite observation entries {np.flatnonzero(~np.isfinite(o[e, i])).tolist()}")
        if not m.any(2).all():
            e, i = (int(x) for x in np.argwhere(~m.any(2))[0])
            out.append(f"env {e} {role} {i}: no legal action")
    out += MI.violations(core)
    live = ~np.asarray(dones, bool).reshape(core.num_envs, -1)[:, 0]
    return out + MI.step_violations(core, before, live)


def _components(vec, width: int) -> list[tuple[int, int]]:
    """Column ranges of the action mask: one for a Discrete space, one per component of a
    MultiDiscrete one (``vec.nvec``; masks side by side)."""
    nvec = getattr(vec, "nvec", None)
    bounds = [0, width] if nvec is None else [0, *np.cumsum(nvec).tolist()]
    return list(zip(bounds[:-1], bounds[1:]))


def random_legal_actions(vec, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random legal action per env: [E] for a Discrete action space, [E, D] for a
    MultiDiscrete one (``vec.nvec``; its masks are the components' masks side by side)."""
    mask = vec.action_masks()
    keys = rng.random(mask.shape)
    keys[~mask] = -1.0
    parts = [keys[:, lo:hi].argmax(1) for lo, hi in _components(vec, mask.shape[1])]
    return parts[0] if getattr(vec, "nvec", None) is None else np.stack(parts, axis=1)


def _cache_violations(vec) -> list[str]:
    """PrefixEviction-v0: each env's cached blocks within [0, its capacity], hits <= references."""
    from envs.prefix_eviction import kernels as PK

    iv = vec.state.iv
    out = []
    bad = (iv[:, PK.I_CNT] < 0) | (iv[:, PK.I_CNT] > iv[:, PK.I_CAP])
    if bad.any():
        e = int(np.argmax(bad))
        out.append(f"env {e}: {int(iv[e, PK.I_CNT])} cached blocks outside 0..capacity {int(iv[e, PK.I_CAP])}")
    over = iv[:, PK.I_HIT_BLOCKS] > iv[:, PK.I_REF_BLOCKS]
    if over.any():
        e = int(np.argmax(over))
        out.append(f"env {e}: {int(iv[e, PK.I_HIT_BLOCKS])} block hits > {int(iv[e, PK.I_REF_BLOCKS])} references")
    return out


def check_batch(vec, obs: np.ndarray, rew: np.ndarray, dones: np.ndarray, clock: np.ndarray | None,
                r_clock: np.ndarray | None = None, env_id: str = "servegym/KVAdmission-v0") -> list[str]:
    """Violations after one batch step (see the module docstring); ``clock``/``r_clock``: the env
    and replica clocks before the step (None: not a cluster env)."""
    out: list[str] = []
    if not np.isfinite(obs).all():
        e = int(np.argmax(~np.isfinite(obs).all(1)))
        out.append(f"env {e}: non-finite observation entries {np.flatnonzero(~np.isfinite(obs[e])).tolist()}")
    if not np.isfinite(rew).all():
        out.append(f"non-finite rewards {rew.tolist()}")
    mask = vec.action_masks()
    multi = getattr(vec, "nvec", None) is not None
    for d, (lo, hi) in enumerate(_components(vec, mask.shape[1])):
        legal = mask[:, lo:hi].any(1)
        if not legal.all():
            out.append(f"env {int(np.argmin(legal))}: no legal action" + (f" in component {d}" if multi else ""))
    if env_id == PREFIX_EVICTION:
        out += _cache_violations(vec)
    if env_id == DISAGGREGATION:
        from envs.disaggregation.invariants import violations as handover_violations

        out += handover_violations(vec)
        if clock is not None:
            back = ~dones & (vec.state.clock < clock)
            if back.any():
                e = int(np.argmax(back))
                out.append(f"env {e}: clock ran backward from {clock[e]!r} to {vec.state.clock[e]!r}")
        return out
    if clock is not None:
        from envs.core.invariants import violations

        eng = vec.scenario.engine
        out += violations(vec.state, eng.capacity_blocks, eng.block_size,
                          in_flight_iterations=env_id in IN_FLIGHT_ENVS)
        live = ~dones
        back = live & (vec.state.clock < clock)
        if back.any():
            e = int(np.argmax(back))
            out.append(f"env {e}: clock ran backward from {clock[e]!r} to {vec.state.clock[e]!r}")
        if r_clock is not None:
            r_back = live[:, None] & (vec.state.r_clock < r_clock)
            if r_back.any():
                e, r = (int(i) for i in np.argwhere(r_back)[0])
                out.append(f"env {e} replica {r}: clock ran backward from {r_clock[e, r]!r} to "
                           f"{vec.state.r_clock[e, r]!r}")
    return out


class _Watcher:
    """An environment's invariants module, imported when first used: ``snapshot(vec)``,
    ``violations(vec)`` and ``step_violations(vec, before, live)``."""

    def __init__(self, module: str):
        self.module = module

    def __getattr__(self, name: str):
        import importlib

        return getattr(importlib.import_module(self.module), name)


# Environments whose state and step rules live in their own invariants module.
_WATCHERS = {EXPERT_PLACEMENT: _Watcher("envs.expert_placement.invariants"),
             AUTOSCALE: _Watcher("envs.autoscale.invariants")}


def fuzz(env_id: str, steps: int, seed: int, scenario_steps: int, log=print) -> tuple[int, list[str]]:
    """Play ``steps`` env-steps of ``env_id`` (see the module docstring); returns (env-steps
    played, violations, each prefixed with the scenario that broke)."""
    if steps < 1 or scenario_steps < 1:
        raise ValueError(f"fuzz: steps and scenario_steps must be >= 1, got {steps}, {scenario_steps}")
    rng = np.random.default_rng(seed)
    done_steps = 0
    bad: list[str] = []
    t0 = time.perf_counter()
    next_log = 0
    while done_steps < steps and not bad:
        E, kw = draw_scenario(env_id, rng)
        s_seed = int(rng.integers(2**31))
        multi = env_id == MULTI
        vec = make_multi(E, s_seed, kw, rng) if multi else envs.make_vec(env_id, E, seed=s_seed, **kw)
        is_cluster = env_id in CLUSTER_ENVS
        clocked = is_cluster or env_id == DISAGGREGATION
        obs = vec.reset()
        clock = vec.state.clock.copy() if clocked else None
        r_clock = vec.state.r_clock.copy() if is_cluster else None
        watcher = _WATCHERS.get(env_id)
        if multi:
            from envs.multi.invariants import snapshot
            before = snapshot(vec.core)
        elif watcher is not None:
            before = watcher.snapshot(vec)
        where = f"{env_id} E={E} seed={s_seed} {({k: v for k, v in kw.items() if k != 'trace'})}"
        n = 0
        while n < min(scenario_steps, steps - done_steps):
            obs, rew, dones, _ = vec.step(random_legal_actions(vec, rng))
            errs = check_batch(vec, obs, rew, dones, clock, r_clock, env_id)
            if multi:
                errs += multi_violations(vec, before, dones)
                before = snapshot(vec.core)
            elif watcher is not None:
                errs += watcher.violations(vec) + watcher.step_violations(vec, before, ~np.asarray(dones, bool))
                before = watcher.snapshot(vec)
            if errs:
                bad = [f"{where} step {n // E}: {m}" for m in errs[:10]]
                break
            if clocked:
                clock = vec.state.clock.copy()
            if is_cluster:
                r_clock = vec.state.r_clock.copy()
            n += E
        done_steps += n
        if done_steps >= next_log or bad:
            log(f"{env_id}: {done_steps:,} env-steps, {time.perf_counter() - t0:,.0f} s, "
                f"{'VIOLATION' if bad else 'no violation'}")
            next_log = done_steps + max(steps // 20, 1)
    return done_steps, bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m envs.fuzz", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", nargs="+", type=env_arg, default=list(FUZZ_ENVS),
                   help="environment ids, short or package names (default: all)")
    p.add_argument("--steps", type=int, default=1_000_000, help="env-steps per environment")
    p.add_argument("--scenario-steps", type=int, default=20_000, help="env-steps per random scenario")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    unknown = [e for e in a.env if e not in FUZZ_ENVS]
    if unknown:
        p.error(f"--env: unknown {unknown}; known: {', '.join(FUZZ_ENVS)}")
    for flag, v in (("--steps", a.steps), ("--scenario-steps", a.scenario_steps)):
        if v < 1:
            p.error(f"{flag} {v}: must be >= 1")
    if a.seed < 0:
        p.error(f"--seed {a.seed}: must be >= 0 (numpy seeds are non-negative)")
    failed = False
    for env_id in a.env:
        n, bad = fuzz(env_id, a.steps, a.seed, a.scenario_steps, log=lambda m: print(m, flush=True))
        for m in bad:
            print(f"VIOLATION {m}", flush=True)
        print(f"{env_id}: {n:,} env-steps, {len(bad)} violations", flush=True)
        failed |= bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
