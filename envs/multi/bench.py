"""MultiCluster-v0 throughput: joint steps per second, the batched ``RoleVecEnv`` vs the PettingZoo
parallel env stepped per agent in Python.

    python -m envs.bench --env servegym/MultiCluster-v0 [--sizes 1 16 256] [--repeats 3] [--json FILE]

One joint step is every agent acting once: each of the ``n_routers`` routers routes one request,
every replica runs its engine iterations until the next arrival under its admission controller's
knobs, and the autoscaler acts at its control instants. Native: ``RoleVecEnv`` (the SB3 VecEnv
that trains the routers) over E clusters, one kernel call per step. Baseline (the counterpart of
SB3's DummyVecEnv for a PettingZoo env): E ``MultiClusterEnv`` instances stepped one after the
other with a dict of actions per agent built in Python from each agent's ``action_mask``.

Both sides play the same episodes (cluster e seeded e) with the same actions: routers round-robin
over the replicas their mask allows (computed in numpy), admission controllers vLLM's defaults
(admit all, vLLM's chunked-prefill budget, FCFS; the cluster's initial knobs), the autoscaler holds.
The scenario is the default one (8 replicas of Llama-3.1-8B on H100, the built-in Mooncake-like
conversation trace, 2 routers) at load 0.9. One core; steady state: ``--warmup`` untimed joint
steps per cluster first (the replicas' batches fill), then medians over ``--repeats`` timed runs;
ratios compare figures of this run. Each row also gives, from one more untimed native run, routed
and finished requests per wall second, simulated seconds per wall second and the mean running
batch (all replicas of a cluster).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from envs.bench import (
    bench_parser,
    cluster_probe,
    machine,
    row_steps,
    start,
    steady_rate,
    steady_state,
    steps_timed,
    write_json,
)
from envs.multi import env as M
from envs.options import Parser

ENV_ID = "servegym/MultiCluster-v0"
LOAD = 0.9
WARMUP = 150  # joint steps (300 routed requests at 2 routers) per cluster before timing
# The PettingZoo side runs 1/DUMMY_DIV of the native steps per timed run (it is slower).
DUMMY_DIV = 4


class _Policies:
    """The fixed non-router actions of both sides: admission defaults and autoscaler hold."""

    def __init__(self, core: M.MultiCluster):
        self.adm = int(core.adm[0, 0])
        self.hold = int(core.config.max_step)


def _round_robin(masks: np.ndarray, k: int) -> np.ndarray:
    """Router actions [E, J] from their masks [E, J, R]: router j of step k takes the first
    allowed replica at or after (k * J + j) mod R."""
    E, J, R = masks.shape
    start_at = (k * J + np.arange(J)) % R
    order = (np.arange(R)[None, :] - start_at[:, None]) % R  # [J, R]: distance from the start
    keys = np.where(masks, order[None], R)
    return keys.argmin(2).astype(np.int64)


class NativeClusters:
    """``RoleVecEnv`` (router role) seen per cluster: ``num_envs`` clusters, ``step`` takes router
    actions [E, J] and returns done per cluster; ``state`` for ``envs.bench.cluster_probe``."""

    def __init__(self, E: int, **kw: Any):
        probe = M.MultiCluster(1, **kw)
        pol = _Policies(probe)

        class Fixed:
            def __init__(self, value: int):
                self.value = value

            def act(self, obs, mask):
                return np.full(len(mask), self.value, np.int64)

        self.vec = M.RoleVecEnv(E, role="router", seed=0, others={"admission": lambda v: Fixed(pol.adm),
                                                                  "autoscaler": lambda v: Fixed(pol.hold)}, **kw)
        self.num_envs, self.J = E, probe.J
        self.state = self.vec.core.state

    def router_masks(self) -> np.ndarray:
        return self.vec.action_masks().reshape(self.num_envs, self.J, -1)

    def reset(self):
        self.vec.reset()

    def step(self, actions: np.ndarray):
        _, rew, dones, infos = self.vec.step(actions.reshape(-1))
        return None, rew, dones.reshape(self.num_envs, self.J)[:, 0], infos


class PettingZooClusters:
    """E ``MultiClusterEnv`` (PettingZoo parallel env) stepped one after the other, every agent's
    action put in a dict in Python, an ended episode reset at once."""

    def __init__(self, E: int, **kw: Any):
        self.envs = [M.MultiClusterEnv(**kw) for _ in range(E)]
        pol = _Policies(self.envs[0].core)
        self.num_envs = E
        names = self.envs[0].possible_agents
        self.routers = [n for n in names if n.startswith("router_")]
        self.fixed = {n: pol.adm for n in names if n.startswith("admission_")}
        self.fixed["autoscaler"] = pol.hold
        self.infos: list[dict] = []

    def router_masks(self) -> np.ndarray:
        return np.array([[info[n]["action_mask"].astype(bool) for n in self.routers] for info in self.infos])

    def reset(self):
        self.infos = [env.reset(seed=e)[1] for e, env in enumerate(self.envs)]

    def step(self, actions: np.ndarray):
        dones = np.zeros(self.num_envs, bool)
        for e, env in enumerate(self.envs):
            acts = dict(self.fixed)
            for j, n in enumerate(self.routers):
                acts[n] = int(actions[e, j])
            _, _, terms, truncs, infos = env.step(acts)
            if any(terms.values()) or any(truncs.values()):
                dones[e] = True
                infos = env.reset()[1]
            self.infos[e] = infos
        return None, None, dones, None


def _act(vec, k: int) -> np.ndarray:
    return _round_robin(vec.router_masks(), k)


def build_parser() -> Parser:
    return bench_parser(f"python -m envs.bench --env {ENV_ID}", __doc__, [1, 16, 256], 3, 8_000,
                        "native joint cluster steps per timed run", WARMUP,
                        "untimed joint steps per cluster before timing")


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)
    kw = {"load": LOAD}
    rows = []
    for E in a.sizes:
        steps, dummy_steps = row_steps(E, a.steps, DUMMY_DIV)
        native = steady_rate(NativeClusters(E, **kw), _act, a.warmup, steps, a.repeats, cluster_probe)
        dummy = steady_rate(PettingZooClusters(E, **kw), _act, a.warmup, dummy_steps, a.repeats)
        n = native["steps_per_s"]
        row = {"n_envs": E, "native_steps_per_s": n, "dummy_steps_per_s": dummy["steps_per_s"],
               "ratio": n / dummy["steps_per_s"], "mean_batch": native["batch_mean"],
               "routed_per_step": native["arrived_per_step"], "finished_per_step": native["finished_per_step"],
               "simulated_s_per_step": native["simulated_s_per_step"],
               "routed_requests_per_s": n * native["arrived_per_step"],
               "finished_requests_per_s": n * native["finished_per_step"],
               "simulated_s_per_wall_s": n * native["simulated_s_per_step"],
               "native_steps_per_s_runs": native["steps_per_s_runs"],
               "dummy_steps_per_s_runs": dummy["steps_per_s_runs"]}
        rows.append(row)
        print(f"E={E:4d}  native {n:9,.0f} joint steps/s   PettingZoo {row['dummy_steps_per_s']:9,.0f}   ratio "
              f"{row['ratio']:5.2f}x   {row['routed_requests_per_s']:9,.0f} routed req/s   mean batch "
              f"{row['mean_batch']:6.1f}   {row['simulated_s_per_wall_s']:7,.1f} simulated s/s", flush=True)
    report = {"env": ENV_ID, "rows": rows, "repeats": a.repeats, "clock": a.clock,
              "unit": "joint steps/s (every agent acts once: n_routers routed requests)",
              "native": "envs.multi.env.RoleVecEnv (role router), E clusters, one kernel call per step",
              "dummy": "E envs.multi.env.MultiClusterEnv (PettingZoo parallel env) stepped one after the other, "
                       "a dict of actions per agent built in Python (the DummyVecEnv counterpart)",
              "steady_state": steady_state(
                  "timed joint steps after a warm-up that fills the replicas' batches", a.warmup,
                  steps_timed(a.sizes, a.steps, DUMMY_DIV), a.repeats,
                  steps_timed_is="per row: [native, PettingZoo] joint steps of each cluster per timed run",
                  action="routers round-robin over allowed replicas, admission vLLM defaults, autoscaler holds",
                  load=LOAD),
              "machine": machine()}
    write_json(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
