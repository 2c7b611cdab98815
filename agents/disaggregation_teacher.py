"""The privileged teacher of Disaggregation-v0 for DAgger (agents/imitation.py), and its precompute.

The teacher plays, for every training episode, a per-interval plan of instance roles found by
replaying the episode's own requests in the simulator (privileged: it reads the future workload):

1. Every static candidate of ``agents.heuristics.disaggregation.candidate_plans`` (43 for 8
   instances) is replayed through the episode: per-interval rewards v [K, T] and goodput per GPU.
2. The start: the student's first observation shows the SLO setting (``ttft_headroom``,
   ``tpot_headroom``: the scenario's SLOs against the model's step times) but nothing of the
   episode's requests (none has arrived), so its first decision can depend on the setting only.
   The teacher therefore starts every episode of a setting at one configuration, the candidate with
   the highest mean goodput per GPU relative to each of the setting's training episodes' best
   candidate (the best static choice under that ignorance, as DistServe's offline search).
3. The observation then shows the load (``arrival_rate``, relative to the cluster's capacity), and
   a move that is right at one load can collapse another; the teacher makes one move per setting
   and load level, at the second decision (the first whose observation has seen the episode):
   each of the group's ``switch_to`` best candidates by mean share of each episode's best is
   replayed exactly from the start on every training episode of the group, and the one with the
   best mean share is every such episode's plan if it beats staying at the start.
4. In states off the plan (the student's own choices led there; DAgger labels them too) the
   teacher weighs moving to the plan's configuration against staying with ``oracle_dp``'s
   dynamic program (value-to-go per candidate, same switching-cost model, ``value_to_go``).

The student sees only its observation; the teacher's label at decision t of an episode is row t of
the episode's plan (dispatch rule ``balance``, as the oracles); imitating a per-episode clairvoyant
plan instead taught moves the student then made in the wrong family (one held-out 8B episode at
3.2 goodput per GPU instead of 13). Replays dominate the cost (about
0.3 s per candidate episode for Llama-3.1-8B at load 0.8 on one core), so ``compute`` runs them in
``procs`` processes, and ``python -m agents.disaggregation_teacher`` writes them once to a file
that several training seeds share (``train.py --teacher-data FILE``).

    python -m agents.disaggregation_teacher --scenarios 'disaggregation/*' --procs 16 --out teacher.pkl
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.heuristics import disaggregation as H
from envs.disaggregation import ENV_ID, DisaggregationConfig, DisaggregationVecEnv
from envs.disaggregation import kernels as K

FORMAT = 3  # version of the file ``save`` writes (2: value-to-go tables for states off the plan; 3: a start per SLO setting)


@dataclass
class TeacherData:
    """Plans of every training episode: ``plans[(config, window, load)]`` = roles [T, R] (int64);
    ``starts[(ttft_headroom, tpot_headroom)]`` = the first configuration, roles [R], of the episodes
    whose observation shows that setting; ``stats`` = one row per episode
    (family, window, load, goodput per GPU of the common start, of the teacher's plan and of the
    best static candidate, role changes of the plan)."""

    starts: dict[tuple, np.ndarray]
    plans: dict[tuple, np.ndarray]
    stats: list[dict[str, Any]] = field(default_factory=list)
    # Per episode (same keys): value-to-go [K, T] of each candidate from each decision on (the DP of
    # ``value_to_go``) and the switching cost per changed instance, for states off the plan.
    to_go: dict[tuple, np.ndarray] = field(default_factory=dict)
    unit: dict[tuple, float] = field(default_factory=dict)

    def plan_of(self, config: DisaggregationConfig, episode: dict) -> np.ndarray:
        key = H._replay_key(config, episode)
        if key not in self.plans:
            raise KeyError(f"disaggregation teacher: no plan for window {key[1]} at load {key[2]} of config "
                           f"(model={config.model}, tp={config.tp}, split={config.split}, slo_ttft_s={config.slo_ttft_s}, "
                           f"slo_tpot_s={config.slo_tpot_s}); compute the teacher data over this config")
        return self.plans[key]


def value_to_go(v: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """W [K, T]: the best sum of ``v[k_s, s] - cost[k_s-1, k_s]`` over s >= t when interval t is
    played with candidate k (the backward form of ``viterbi``'s dynamic program)."""
    W = np.empty_like(v)
    W[:, -1] = v[:, -1]
    for t in range(v.shape[1] - 2, -1, -1):
        W[:, t] = v[:, t] + (W[None, :, t + 1] - cost).max(axis=1)
    return W


def training_episodes(config: DisaggregationConfig) -> list[dict]:
    """Every episode a batch of ``config`` draws (``NativeVecEnv.draw_episode``: a window among
    ``episodes_per_load`` at each load level), as reset options."""
    return [{"window": w, "load": v} for v in config.loads() for w in range(config.episodes_per_load)]


def _replay_job(config: DisaggregationConfig, episode: dict, plans: list[np.ndarray]) -> tuple[np.ndarray, list[dict]]:
    return H.replay(config, [episode], plans)


def _map(procs: int, jobs: list[tuple]) -> list[tuple[np.ndarray, list[dict]]]:
    if procs <= 1:
        return [_replay_job(*j) for j in jobs]
    import multiprocessing as mp

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        return list(pool.map(_replay_job, *zip(*jobs)))


def compute(configs: Sequence[DisaggregationConfig], procs: int = 1, names: Sequence[str] | None = None,
            log: Any = print, switch_to: int = 3) -> TeacherData:
    """The teacher's plans for every training episode of every config (module docstring).

    ``configs``: the configs of the training batches (``DisaggregationVecEnv.config``, so the keys
    match what the envs report); ``procs``: worker processes for the replays; ``switch_to``: how
    many of a load level's best static candidates are tried as its move at the second decision. Raises
    ``ValueError`` when the configs have different instance counts or no episode has a positive
    goodput in any candidate."""
    if not configs:
        raise ValueError("disaggregation teacher: no configs")
    R = configs[0].instances
    if any(c.instances != R for c in configs):
        raise ValueError(f"disaggregation teacher: configs with different instance counts "
                         f"{sorted({c.instances for c in configs})}; one student has one action layout")
    names = list(names) if names is not None else [f"config{i}" for i in range(len(configs))]
    cands = H.candidate_plans(R)
    slices = H._shard_slices(len(cands))
    episodes = [(i, c, ep) for i, c in enumerate(configs) for ep in training_episodes(c)]
    t0 = time.perf_counter()
    jobs = [(c, ep, [cands[k] for k in sl]) for _, c, ep in episodes for sl in slices]
    out = _map(procs, jobs)
    n = len(slices)
    values, metrics = [], []
    for j in range(len(episodes)):
        parts = out[j * n:(j + 1) * n]
        values.append(np.concatenate([v for v, _ in parts]))
        metrics.append([m for _, ms in parts for m in ms])
    good = np.array([[m["goodput_per_gpu"] for m in ms] for ms in metrics])  # [episodes, K]
    best = good.max(axis=1)
    ok = best > 0
    if not ok.any():
        raise ValueError("disaggregation teacher: no candidate serves any request within the SLOs in any episode")
    params = {i: DisaggregationVecEnv(1, config=c).params for i, c in enumerate(configs)}
    rel = np.where(ok[:, None], good / np.where(ok, best, 1.0)[:, None], 0.0)
    # The observation tells configs apart by their SLO headroom features (not by name): one common
    # start per distinct (ttft_headroom, tpot_headroom), the best mean share over its episodes.
    setting = {i: (round(p.ttft_headroom, 9), round(p.tpot_headroom, 9)) for i, p in params.items()}
    by_setting: dict[tuple, list[int]] = {}
    for j, (i, _, _) in enumerate(episodes):
        by_setting.setdefault(setting[i], []).append(j)
    starts: dict[tuple, int] = {}
    for key, js in by_setting.items():
        js_ok = [j for j in js if ok[j]] or js
        starts[key] = int(np.argmax(rel[js_ok].mean(axis=0)))
        log(f"teacher setting {key}: {len(js)} episodes, start {role_counts(cands[starts[key]])} (mean "
            f"{100 * rel[js_ok, starts[key]].mean():.1f}% of each episode's best static candidate)")
    log(f"teacher: {len(episodes)} episodes x {len(cands)} candidates replayed in {time.perf_counter() - t0:.0f} s")
    to_go, units = [], []
    for (i, c, ep), v in zip(episodes, values):
        to_go.append(value_to_go(v, H.switch_costs(v, cands, params[i])))
        units.append(float(np.abs(v).mean() / R * (params[i].switch_s / params[i].interval_s)))
    # One move per group of episodes the observation cannot tell apart (same setting and load level),
    # at the second decision: each of the group's ``switch_to`` best candidates by mean share of
    # each episode's best, replayed exactly on every episode of the group; the best mean share wins
    # if it beats staying at the group's start.
    groups: dict[tuple, list[int]] = {}
    for j, (i, _, ep) in enumerate(episodes):
        groups.setdefault((setting[i], float(ep["load"])), []).append(j)
    alts = []
    for g, js in groups.items():
        start = starts[g[0]]
        for k in [k for k in np.argsort(-rel[js].mean(axis=0), kind="stable") if k != start][:switch_to]:
            for j in js:
                alts.append((g, int(k), j))
    checked = _map(procs, [(episodes[j][1], episodes[j][2],
                            [_move_plan(cands, starts[g[0]], k, episodes[j][1].decisions)]) for g, k, j in alts])
    moved = {(g, k, j): m[0]["goodput_per_gpu"] for (g, k, j), (_, m) in zip(alts, checked)}
    move: dict[tuple, int | None] = {}
    for g, js in groups.items():
        start = starts[g[0]]
        share = {k: np.mean([moved[(gg, kk, j)] / best[j] if ok[j] else 0.0 for (gg, kk, j) in moved
                             if gg == g and kk == k]) for k in {k for gg, k, _ in moved if gg == g}}
        k_best = max(share, key=share.get) if share else None
        stay = float(rel[js, start].mean())
        move[g] = k_best if k_best is not None and share[k_best] > stay else None
        log(f"teacher setting {g[0]} load {g[1]:g}: {len(js)} episodes, start {role_counts(cands[start])} "
            f"{100 * stay:.2f}% of each episode's best, "
            + ", ".join(f"move to {role_counts(cands[k])} {100 * v:.2f}%" for k, v in sorted(share.items(), key=lambda x: -x[1]))
            + f" -> {'stay' if move[g] is None else role_counts(cands[move[g]])}")
    chosen: dict[int, tuple[float, np.ndarray]] = {}
    for j, (i, c, ep) in enumerate(episodes):
        g = (setting[i], float(ep["load"]))
        if move[g] is not None:
            chosen[j] = (moved[(g, move[g], j)], _move_plan(cands, starts[setting[i]], move[g], c.decisions))
    data = TeacherData(starts={key: cands[k].copy() for key, k in starts.items()}, plans={})
    for j, (i, c, ep) in enumerate(episodes):
        start = starts[setting[i]]
        g, plan = chosen.get(j, (float(good[j, start]), np.tile(cands[start], (c.decisions, 1))))
        key = H._replay_key(c, ep)
        data.plans[key] = plan
        data.to_go[key] = to_go[j]
        data.unit[key] = units[j]
        data.stats.append({"family": names[i], "window": ep["window"], "load": ep["load"],
                           "start_goodput_per_gpu": float(good[j, start]),
                           "plan_goodput_per_gpu": float(g),
                           "best_static_goodput_per_gpu": float(best[j]),
                           "best_static": role_counts(cands[int(good[j].argmax())]),
                           "plan_role_changes": int((plan[1:] != plan[:-1]).sum())})
    for name in names:
        rows = [s for s in data.stats if s["family"] == name]
        if rows:
            log(f"teacher {name}: {len(rows)} episodes, plan/best static goodput per GPU "
                f"{np.mean([r['plan_goodput_per_gpu'] for r in rows]):.4g}/"
                f"{np.mean([r['best_static_goodput_per_gpu'] for r in rows]):.4g}, "
                f"{sum(r['plan_role_changes'] > 0 for r in rows)} plans change roles")
    return data


def _move_plan(cands: list[np.ndarray], start: int, k: int, T: int) -> np.ndarray:
    """Roles [T, R]: candidate ``start`` at the first decision, candidate ``k`` from the second on."""
    plan = np.tile(cands[k], (T, 1))
    plan[0] = cands[start]
    return plan


def role_counts(roles: np.ndarray) -> str:
    """``"4p4c0d"``: prefill, colocated and decode instances of a role vector."""
    return f"{int((roles == K.ROLE_PREFILL).sum())}p{int((roles == K.ROLE_COLOCATED).sum())}c" \
           f"{int((roles == K.ROLE_DECODE).sum())}d"


def save(data: TeacherData, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(pickle.dumps({"format": FORMAT, "starts": data.starts, "plans": data.plans, "stats": data.stats,
                                  "to_go": data.to_go, "unit": data.unit}))
    tmp.replace(path)


def load(path: Path) -> TeacherData:
    """``TeacherData`` from a file ``save`` wrote; ``ValueError`` naming the file when it is not
    one (or of another format version)."""
    try:
        raw = pickle.loads(Path(path).read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ModuleNotFoundError) as err:
        raise ValueError(f"teacher data {path}: {err}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"teacher data {path}: not a format-{FORMAT} file of agents.disaggregation_teacher")
    missing = [k for k in ("starts", "plans", "stats", "to_go", "unit") if k not in raw]
    if missing:
        raise ValueError(f"teacher data {path}: format-{FORMAT} file without the key(s) {missing}")
    return TeacherData(raw["starts"], raw["plans"], raw["stats"], raw["to_go"], raw["unit"])


class DisaggregationTeacher:
    """``teacher(obs, masks) -> actions [E, R + 1]`` for DAgger, dispatch rule ``balance`` (as the
    oracles). At decision t (from the observation's ``elapsed``) of an episode with plan P:

    - t = 0: P[0], the common start;
    - the instances' current roles (a switching instance counted at its target, the one role its
      mask allows) equal P[t - 1], i.e. the student has followed the plan: P[t];
    - otherwise (a state the student's own choices led to): P[t] unless staying is worth more by
      the value-to-go table: W[P[t], t] - changed instances x the switching cost against W of the
      candidate with the current prefill / colocated / decode counts (a role vector with no such
      candidate, i.e. one that cannot serve, always moves).

    ``vec``: a ``DisaggregationVecEnv`` or an ``agents.family_vec.FamilyVecEnv`` of them (it asks
    each env which episode it plays)."""

    def __init__(self, vec: Any, data: TeacherData):
        self.vec, self.data = vec, data
        self._elapsed = K.GLOBAL_FEATURES.index("elapsed")
        self.R = len(next(iter(data.plans.values()))[0])
        self.cands = np.array(H.candidate_plans(self.R))  # [K, R]
        self._counts = {tuple(np.bincount(c, minlength=3)): k for k, c in enumerate(self.cands)}

    def _config(self, e: int) -> DisaggregationConfig:
        return self.vec.config_of(e) if hasattr(self.vec, "config_of") else self.vec.config

    def current_roles(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Roles [R] an env's instances serve or are switching to, from its observation [n_obs] and
        mask [3R + rules]: a switching instance's mask allows only its target."""
        R = self.R
        onehot = obs[K.G:K.G + R * K.F].reshape(R, K.F)[:, :3]
        m = mask[: 3 * R].reshape(R, 3)
        return np.where(m.sum(axis=1) == 1, m.argmax(axis=1), onehot.argmax(axis=1)).astype(np.int64)

    def decide(self, key: tuple, plan: np.ndarray, t: int, roles: np.ndarray) -> np.ndarray:
        """Roles [R] the teacher names at decision ``t`` with the instances at ``roles`` (class docstring)."""
        if t == 0:
            return plan[0]
        if np.array_equal(roles, plan[t - 1]) or np.array_equal(roles, plan[t]):
            return plan[t]
        W = self.data.to_go[key][:, t]
        target = self._counts[tuple(np.bincount(plan[t], minlength=3))]
        gain = W[target] - (plan[t] != roles).sum() * self.data.unit[key]
        same = self._counts.get(tuple(np.bincount(roles, minlength=3)))
        if same is not None and W[same] >= gain:
            return roles
        return plan[t]

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        E = obs.shape[0]
        out = np.full((E, self.R + 1), K.RULE_BALANCE, np.int64)
        for e in range(E):
            cfg = self._config(e)
            episode = self.vec.episode_of(e)
            plan = self.data.plan_of(cfg, episode)
            t = min(int(round(float(obs[e, self._elapsed]) * cfg.decisions)), len(plan) - 1)
            out[e, : self.R] = self.decide(H._replay_key(cfg, episode), plan, t, self.current_roles(obs[e], masks[e]))
        return out


def configs_of(vec: Any) -> tuple[list[DisaggregationConfig], list[str]]:
    """The configs (and names) of a ``DisaggregationVecEnv`` or a ``FamilyVecEnv`` of them."""
    if hasattr(vec, "parts"):
        return [vec.config_of(lo) for lo, _ in vec.slices], list(vec.names)
    return [vec.config], ["config0"]


def teacher_for(vec: Any, data_path: Path | None = None, procs: int = 1, log: Any = print) -> DisaggregationTeacher:
    """The teacher of ``vec``: plans from ``data_path`` (``save``'s file) or computed now with
    ``procs`` processes. ``ValueError`` when the file lacks an episode of ``vec``'s configs."""
    configs, names = configs_of(vec)
    if data_path is not None:
        data = load(data_path)
        for c in configs:
            for ep in training_episodes(c):
                try:
                    data.plan_of(c, ep)
                except KeyError as err:
                    raise ValueError(f"teacher data {data_path}: {err.args[0]}") from None
    else:
        data = compute(configs, procs, names, log)
    return DisaggregationTeacher(vec, data)


def main(argv: list[str] | None = None) -> int:
    from agents import cli
    from agents.family_vec import family_specs, make_family_vec

    p = argparse.ArgumentParser("python -m agents.disaggregation_teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", nargs="+", required=True, metavar="GLOB",
                   help="leaderboard scenario ids of Disaggregation-v0 (agents.scenarios) whose configs train")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE", help="override every family's config")
    p.add_argument("--procs", type=int, default=1, help="worker processes for the replays")
    p.add_argument("--out", type=Path, required=True, help="file to write (pickle)")
    a = p.parse_args(argv)
    if a.procs < 1:
        p.error(f"--procs {a.procs}: must be >= 1")
    try:
        specs = family_specs(ENV_ID, a.scenarios, cli.parse_env_kwargs(a.env_kwargs, ENV_ID))
        vec = make_family_vec(ENV_ID, len(specs), 0, specs, "train")
    except (ValueError, TypeError, cli.UsageError) as err:  # config.validate, unknown fields, scenario build
        p.error(f"--scenarios / --env-kwargs: {err}")
    configs, names = configs_of(vec)
    vec.close()
    data = compute(configs, a.procs, names)
    save(data, a.out)
    print(f"wrote {a.out}: {len(data.plans)} episode plans, starts "
          + ", ".join(f"{k}: {role_counts(v)}" for k, v in data.starts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
