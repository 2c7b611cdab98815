"""Teams on the multi-agent cluster (``servegym/MultiCluster-v0``, ``envs.multi``), scored like
every other environment by ``agents.evaluate`` and the leaderboard.

A team gives each role (``router``, ``admission``, ``autoscaler``) one policy that acts for all
agents of the role (parameter sharing, one batched call per role and step). ``--policy`` names a
team:

- ``team``: the heuristic team of ``agents.heuristics.multi.team()`` (``jsq`` routers,
  ``vllm_fcfs`` admission controllers, ``hpa`` autoscaler);
- ``zoo``: the trained team (``agents.zoo.MULTI_TEAM``): the router trained in the cluster
  (``agents.train_multi``, the zoo checkpoint of ``servegym/MultiCluster-v0``) in every router seat,
  the other seats as ``MULTI_TEAM`` names them;
- ``random``: every role uniform over its legal actions;
- ``ROLE=P[,ROLE=P ...]``: those roles played by ``P``, the others by the heuristic team's member.
  ``P`` is a role heuristic (``agents.heuristics.multi.ROLE_HEURISTICS``), ``random``, or for
  ``router`` and ``admission`` (which see exactly Routing-v0's and KVAdmission-v0's observations)
  ``zoo`` (that environment's reference agent) or an SB3 checkpoint / ONNX file trained there.

Example: ``router=zoo`` is Routing-v0's learned router in every router seat, with vLLM admission
and HPA autoscaling.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

ENV_ID = "servegym/MultiCluster-v0"
ROLES = ("router", "admission", "autoscaler")
# The single-agent environment whose observation and actions a role sees (its zoo agent, its
# checkpoints and ONNX exports act there unchanged).
SAME_AS = {"router": "servegym/Routing-v0", "admission": "servegym/KVAdmission-v0"}
# What the printed table shows, the main metric first.
TABLE_METRICS = ("slo_attainment", "goodput_rps", "ttft_p50_s", "ttft_p99_s", "cost_usd",
                 "replica_hours", "token_hit_ratio", "rerouted", "return_mean")


def role_choices(role: str) -> list[str]:
    """Policy names a role takes (besides checkpoint and ONNX paths for router/admission)."""
    from agents.heuristics.multi import ROLE_HEURISTICS
    from agents.zoo import ZOO

    names = ["random", *ROLE_HEURISTICS[role]]
    if role in SAME_AS and SAME_AS[role] in ZOO:
        names.append("zoo")
    return names


def parse_team(spec: str) -> dict[str, str]:
    """Role -> policy name of the team ``spec`` (see the module docstring).

    Raises ``ValueError`` naming the part of ``spec`` that is wrong and what is allowed.
    """
    from agents.heuristics.multi import ROLE_HEURISTICS, team

    base = {role: next(n for n, f in ROLE_HEURISTICS[role].items() if f is factory)
            for role, factory in team().items()}
    if spec == "team":
        return base
    if spec == "zoo":
        from agents.zoo import MULTI_TEAM, ZOO

        if ENV_ID not in ZOO:
            raise ValueError(f"'zoo': {ENV_ID} has no zoo checkpoint yet (agents/zoo/__init__.py RECIPES)")
        return {**base, **MULTI_TEAM, "router": str(ZOO[ENV_ID])}
    if spec == "random":
        return {role: "random" for role in ROLES}
    out = dict(base)
    seen = set()
    for part in spec.split(","):
        if "=" not in part:
            raise ValueError(f"{spec!r}: expected 'team', 'zoo', 'random' or ROLE=POLICY[,ROLE=POLICY ...] "
                             f"with ROLE one of {', '.join(ROLES)}")
        role, name = (x.strip() for x in part.split("=", 1))
        if role not in ROLES:
            raise ValueError(f"{spec!r}: no role {role!r}; roles: {', '.join(ROLES)}")
        if role in seen:
            raise ValueError(f"{spec!r}: role {role} given twice")
        seen.add(role)
        path = Path(name)
        if name not in role_choices(role) and not (
                role in SAME_AS and path.suffix in (".zip", ".onnx") and path.is_file()):
            files = " or an SB3 checkpoint (.zip) / ONNX file of " + SAME_AS[role] if role in SAME_AS else ""
            raise ValueError(f"{spec!r}: {role} takes one of {', '.join(role_choices(role))}{files}")
        out[role] = name
    return out


def default_teams() -> list[str]:
    """The teams evaluated when none is named: ``random``, the heuristic team, each other router
    heuristic and each other admission heuristic in the team (so the best heuristic team is searched
    over both seats), the learned router and admission agents where a zoo agent exists, and the
    trained team (``zoo``) with its control: Routing-v0's zoo router seated unchanged in the trained
    team's other seats (what training in the cluster adds)."""
    from agents.heuristics.multi import ROLE_HEURISTICS
    from agents.zoo import MULTI_TEAM, ZOO

    base = parse_team("team")
    specs = ["random", "team"]
    specs += [f"router={h}" for h in ROLE_HEURISTICS["router"] if h != base["router"]]
    specs += [f"admission={h}" for h in ROLE_HEURISTICS["admission"] if h != base["admission"]]
    specs += [f"{role}=zoo" for role in ("router", "admission") if "zoo" in role_choices(role)]
    if ENV_ID in ZOO:
        seated = ",".join(["router=zoo", *(f"{r}={p}" for r, p in MULTI_TEAM.items() if p != base[r])])
        specs += [s for s in (seated, "zoo") if s not in specs]
    return specs


def make_team(spec: str, core: Any, seed: int = 0) -> dict[str, Any]:
    """Role -> batched policy of ``spec`` for ``core`` (an ``envs.multi.env.MultiCluster``)."""
    from agents.heuristics.multi import ROLE_HEURISTICS
    from agents.policy import make_policy
    from envs.multi.env import RoleView

    out = {}
    for role, name in parse_team(spec).items():
        view = RoleView(core, role)
        if name in ROLE_HEURISTICS[role]:
            out[role] = ROLE_HEURISTICS[role][name](view, seed)
        elif name == "random":
            from agents.policy_base import RandomPolicy

            out[role] = RandomPolicy(view, seed)
        else:
            out[role] = make_policy(name, view, SAME_AS[role], seed)
    return out


def sweep(kwargs: dict[str, Any]) -> tuple[str, tuple[float, ...]]:
    """The evaluation sweep of the multi-agent cluster: its routers' load levels."""
    from envs.multi.env import make_config

    return "load", make_config(**kwargs).routing.loads()


def run_episodes(spec: str, num_envs: int, seed: int, kwargs: dict[str, Any]
                 ) -> tuple[list[dict[str, float]], np.ndarray]:
    """Each of ``num_envs`` clusters through its first episode under team ``spec``: the episodes'
    metrics (``MultiCluster.episode_metrics`` plus ``return_mean``, the shared return) and the
    wall time per step of the whole team (seconds; one call per role decides for the batch)."""
    from envs.multi.env import MultiCluster

    core = MultiCluster(num_envs, seed=seed, **kwargs)
    team = make_team(spec, core, seed)
    core.reset()
    E = num_envs
    out: list[dict[str, float] | None] = [None] * E
    lat = []
    while any(m is None for m in out):
        t = time.perf_counter_ns()
        for role, pol in team.items():
            n = core.n_agents[role]
            a = pol.act(core.obs(role).reshape(E * n, -1), core.masks(role).reshape(E * n, -1))
            core.set_actions(role, np.asarray(a).reshape(E, n).astype(np.int64))
        lat.append(time.perf_counter_ns() - t)
        core.step()
        done = core.done()
        for e in np.flatnonzero(done):
            if out[e] is None:
                m = core.episode_metrics(e)
                m["return_mean"] = m.pop("return")
                out[e] = m
        if done.any():
            core.reset(np.flatnonzero(done))
    return [m for m in out if m is not None], np.asarray(lat, np.float64) * 1e-9
