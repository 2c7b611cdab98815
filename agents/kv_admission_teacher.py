"""The privileged teacher of KVAdmission-v0 for DAgger (agents/imitation.py): the per-episode best
schedule in hindsight.

For every training episode (a window of the config's trace or workload mixture at one load level)
every candidate is played once through the exact episode, in a separate batch that replays it
(``KVAdmissionVecEnv.episode_of`` names it, ``window_order="sequential"`` plays every episode of the
config once; the simulator has no randomness of its own, so a replay is the episode). The candidates
(``candidate_names``): every registered KVAdmission heuristic (``agents.heuristics.kv_admission``:
vLLM, Sarathi-Serve, reservation, Past-Future, SJF) and, with ``"static"``, every static schedule
besides them (admit what fits, one prefill budget, one shortage rule, one queue order:
Sarathi-Serve's budget with SJF's order, say), or with ``"transfer"`` (the default of
``teacher_for`` and of the command) those of them that win episodes (``TRANSFER_STATIC``). The teacher's label
in any state of that episode, on or off the path the winner would take, is the action the
episode's winner takes in that state: every candidate acts from the observation and mask only, so
it can act in states the student's own choices led to.

The winner is the candidate with the highest SLO attainment on the episode (the leaderboard's main
metric), ties going to the earlier candidate (the heuristics in registration order ``vllm_fcfs``,
``sarathi``, ``conservative``, ``past_future``, ``sjf``, then the static schedules). The mean over
episodes of the winner's attainment is at least that of the best single candidate, and above it
wherever the winner changes with window, load, family or SLO, so a student that can tell those
apart from its observation can beat every fixed heuristic. It is privileged: the student sees only
its observation.

Measured on the training distribution (agents.scenarios.TRAINING_WORKLOADS, load 1.3, MLPerf Server
SLO, 161 training windows): mean SLO attainment of the best heuristic (``sjf``) 0.732, of the best
static schedule (2048-token budget, SJF order) 0.793, of the per-episode best over the 5 heuristics
and 5 static schedules 0.800; with the heuristics alone (loads 1.1/1.3/1.5, 483 episodes) ``sjf``
0.733 and the per-episode best 0.753.

Replays cost one episode per candidate per training episode (a 1024-request Mooncake window is
about 10^5 engine iterations, an Azure one a few thousand), so ``compute`` runs one job per
(config, candidate), or with ``split`` per (config, candidate, range of episodes), in ``procs``
processes (``shard`` splits the jobs over several runs, ``merge`` joins them), and ``python -m agents.kv_admission_teacher`` writes
the result once to a file that several training seeds share (``train.py --teacher-data FILE``):

    python -m agents.kv_admission_teacher --env-kwargs workloads=... --split 32 --procs 16 --out teacher.pkl
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import pickle
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.policy import heuristic_names, make_policy
from agents.heuristics.kv_admission import _ALL, _Fixed
from envs.kv_admission import env as kva
from envs.kv_admission.env import ENV_ID, KVAdmissionConfig, KVAdmissionVecEnv
from envs.core.mixture import entry_name, entry_params

FORMAT = 1  # version of the file ``save`` writes
METRIC = "slo_attainment"


ORDERS = ("fcfs", "sjf", "edf")


def static_candidates() -> tuple[str, ...]:
    """Names of the static schedules beyond the heuristics: admit every request that fits, one
    prefill budget, one shortage rule and one queue order every iteration (``static_b2048_sjf_preempt``);
    the two that are heuristics already (vLLM: 8192 / FCFS / preempt; SJF: 8192 / SJF / preempt) left out."""
    out = []
    for b in kva.BUDGET_LEVELS:
        for order in ORDERS:
            for shortage in ("preempt", "defer"):
                if shortage == "preempt" and b == 8192 and order in ("fcfs", "sjf"):
                    continue
                out.append(f"static_b{b}_{order}_{shortage}")
    return tuple(out)


# The static schedules of the transfer recipe (``candidate_names("transfer")``), measured on a sample of the
# training distribution (agents.scenarios.TRAINING_WORKLOADS, MLPerf Server SLO, 1024-request windows): 4
# windows of each of azure_conv-v1, bursty-v1 and the Azure conversation trace at each of loads 1.1/1.3/1.5,
# and window 0 of each Mooncake family at 1.3 (38 episodes; `python -m agents.zoo.kv_admission_candidate_sample`). Winners (highest attainment, ties to the earlier candidate)
# among all 21: static_b2048_sjf_preempt 13, sarathi 6, static_b8192_edf_defer 5, static_b2048_edf_defer 4,
# static_b8192_sjf_defer 4, vllm_fcfs 2, static_b2048_edf_preempt 2, past_future 1, static_b2048_sjf_defer 1,
# the other 12 none (the 512-token schedules' `defer` variants tie their `preempt` twins exactly). Mean SLO
# attainment of the per-episode best: 0.8332 over all 21 and 0.8332 over the heuristics and these 4 (backward
# elimination: the two 2048-token `preempt` winners are near-ties of their `defer` twins; cutting a third
# static would cost 0.0006-0.006); best single candidate static_b2048_sjf_defer 0.8182, best heuristic sjf
# 0.7699. 9 candidates instead of 21 keep the full teacher within one 10-minute device call.
TRANSFER_STATIC: tuple[str, ...] = ("static_b2048_sjf_defer", "static_b2048_edf_defer", "static_b8192_sjf_defer",
                                    "static_b8192_edf_defer")


def candidate_names(kind: str) -> tuple[str, ...]:
    """The teacher's candidates in tie-break order: ``"heuristics"`` = every registered KVAdmission
    heuristic; ``"static"`` = those, then ``static_candidates()``; ``"transfer"`` = the heuristics,
    then ``TRANSFER_STATIC`` (the statics that win episodes). ``ValueError`` for another kind."""
    if kind == "heuristics":
        return tuple(heuristic_names(ENV_ID))
    if kind == "static":
        return tuple(heuristic_names(ENV_ID)) + static_candidates()
    if kind == "transfer":
        return tuple(heuristic_names(ENV_ID)) + TRANSFER_STATIC
    raise ValueError(f"kv_admission teacher: candidates must be 'heuristics', 'static' or 'transfer', got {kind!r}")


def make_candidate(name: str, vec: Any) -> Any:
    """The policy a candidate name stands for on ``vec`` (a heuristic, or a static schedule of
    ``static_candidates``); ``ValueError`` naming it when it is neither."""
    if name in heuristic_names(ENV_ID):
        return make_policy(name, vec, ENV_ID)
    if name in static_candidates():
        _, b, order, shortage = name.split("_")
        return _Fixed(name, _ALL, int(b[1:]), shortage == "defer", ORDERS.index(order))
    raise ValueError(f"kv_admission teacher: {name!r} is neither a KVAdmission heuristic "
                     f"({', '.join(heuristic_names(ENV_ID))}) nor a static candidate (static_b2048_sjf_preempt ...)")


def _entry(name: Any) -> Any:
    """A trace entry as a key: a file by its name and content digest (``../shared/traces/x.csv``
    from the repository root, its absolute path, or a copy of it in another checkout, such as
    the next device call's, name the same file); a built-in name or a ``Trace`` unchanged; a
    ``workloads`` entry with its own trace_params as (key of its name, its trace_params)."""
    if isinstance(name, tuple):  # (name or path, trace_params): envs.core.mixture.WorkloadEntry
        return (_entry(name[0]), name[1])
    if isinstance(name, str) and ("/" in name or Path(name).suffix):
        return _file_digest(str(Path(name).resolve()))
    return name


@functools.lru_cache(maxsize=64)
def _file_digest(path: str) -> str:
    try:
        return f"{Path(path).name}#sha256:{hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]}"
    except OSError:  # the config's own loader reports a missing file; the key still names it
        return path


def config_key(cfg: KVAdmissionConfig) -> str:
    """What identifies a config's episodes: every field that moves them, trace files by name and
    content digest (``window_order`` only chooses which episode plays next; ``trace`` is unused under
    ``workloads``)."""
    trace = "default" if cfg.workloads else _entry(cfg.trace)
    return repr(replace(cfg, window_order="random", trace=trace, workloads=tuple(_entry(w) for w in cfg.workloads)))


def episode_key(cfg: KVAdmissionConfig, episode: dict) -> tuple[str, int, float]:
    """``(config_key, window, load)`` of an episode (``KVAdmissionVecEnv.episode_of``'s dict)."""
    return config_key(cfg), int(episode["window"]), round(float(episode["load"]), 9)


@dataclass
class TeacherData:
    """``heuristics``: names in tie-break order; ``scores[key]`` = SLO attainment of each heuristic
    [H] on the episode ``key`` (``episode_key``), ``returns[key]`` their episode returns [H];
    ``labels[config_key]`` a readable name of each config (its SLO and load levels)."""

    heuristics: tuple[str, ...]
    scores: dict[tuple, np.ndarray] = field(default_factory=dict)
    returns: dict[tuple, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def best(self, key: tuple) -> int:
        """Index of the episode's winner (highest attainment, the first on ties); ``KeyError``
        naming the episode when it was not computed."""
        if key not in self.scores:
            raise KeyError(f"kv_admission teacher: no replays of window {key[1]} at load {key[2]} of config "
                           f"{self.labels.get(key[0], key[0])}; compute the teacher data over this config")
        return int(np.argmax(self.scores[key]))  # argmax returns the first maximum

    def summary(self) -> list[dict[str, Any]]:
        """Per config: episodes, mean attainment of each heuristic and of the per-episode best, and
        how often each heuristic wins."""
        out = []
        for ck, label in self.labels.items():
            keys = [k for k in self.scores if k[0] == ck]
            if not keys:
                continue
            s = np.array([self.scores[k] for k in keys])
            wins = np.bincount(s.argmax(axis=1), minlength=len(self.heuristics))
            out.append({"config": label, "episodes": len(keys),
                        "mean": {h: float(s[:, i].mean()) for i, h in enumerate(self.heuristics)},
                        "per_episode_best": float(s.max(axis=1).mean()),
                        "wins": {h: int(wins[i]) for i, h in enumerate(self.heuristics)}})
        return out


def config_label(cfg: KVAdmissionConfig) -> str:
    """A short readable name of a config: workloads or trace, SLO and loads."""
    src = ",".join(Path(entry_name(w)).name + (str(dict(entry_params(w))) if entry_params(w) else "")
                   for w in cfg.workloads) if cfg.workloads else str(cfg.trace)
    base = KVAdmissionConfig()
    engine = ("" if (cfg.model, cfg.gpu, cfg.tp, cfg.capacity_blocks) == (base.model, base.gpu, base.tp, base.capacity_blocks)
              else f" engine={cfg.model}/{cfg.gpu}/tp{cfg.tp}/kv={cfg.capacity_blocks}")  # another engine (--hardware)
    return (f"{src} split={cfg.split} slo={cfg.slo_metric} ttft={cfg.slo_ttft_s} tpot={cfg.slo_tpot_s} "
            f"loads={cfg.loads()}{engine}")


def training_episodes(cfg: KVAdmissionConfig) -> list[dict]:
    """Every episode a batch of ``cfg`` can draw: each window of its scenario at each load level,
    in the order ``window_order="sequential"`` plays them (episode k: window k % W, load k // W)."""
    W = KVAdmissionVecEnv(1, config=cfg).scenario.workload.arrival_s.shape[0]
    return [{"window": w, "load": v} for v in cfg.loads() for w in range(W)]


def replay(cfg: KVAdmissionConfig, heuristic: str, n_envs: int = 64,
           episodes: tuple[int, int] | None = None) -> dict[tuple, tuple[float, float]]:
    """``heuristic`` played through every episode of ``cfg`` once (``training_episodes``), or
    through episodes ``first <= k < stop`` of that list with ``episodes=(first, stop)``:
    ``{episode_key: (SLO attainment, return)}``. Without ``episodes``, ``n_envs`` envs step as one
    batch, each playing episodes k = e, e + n_envs, ... in turn (``window_order="sequential"``); a
    batch stops when every episode has ended once. With ``episodes``, a batch of ``stop - first``
    envs plays them, env e episode ``first + e`` (a slice of the sequential batch of one env per
    episode, ``batch_slice``), and stops when each has ended once (the simulator has no randomness
    of its own, so an episode's result does not depend on the batch it plays in).
    ``ValueError`` for a range outside ``[0, number of episodes]`` or an empty one."""
    seq = replace(cfg, window_order="sequential")
    probe = KVAdmissionVecEnv(1, config=seq)
    n_total = probe.scenario.workload.arrival_s.shape[0] * len(cfg.loads())
    if episodes is None:
        first, E = 0, max(1, min(int(n_envs), n_total))
        vec = KVAdmissionVecEnv(E, config=seq, seed=0)
    else:
        first, stop = int(episodes[0]), int(episodes[1])
        if not 0 <= first < stop <= n_total:
            raise ValueError(f"kv_admission teacher: episodes {episodes} must satisfy 0 <= first < stop <= {n_total}")
        E = stop - first
        vec = KVAdmissionVecEnv(E, config=seq, seed=0)
        vec.batch_slice(first, n_total)
    n_want = n_total if episodes is None else E
    step = E if episodes is None else n_total  # episode number k advances by this at each env's next episode
    policy = make_candidate(heuristic, vec)
    obs = vec.reset()
    playing = [vec.episode_of(e) for e in range(E)]
    index = [first + e for e in range(E)]  # episode number k of each env's current episode
    out: dict[tuple, tuple[float, float]] = {}
    while len(out) < n_want:
        obs, _, dones, infos = vec.step(policy.act(obs, vec.action_masks()))
        for e in np.flatnonzero(dones):
            if index[e] < n_total:
                info = infos[e]
                out[episode_key(cfg, playing[e])] = (float(info["metrics"][METRIC]), float(info["episode"]["r"]))
            playing[e] = vec.episode_of(int(e))
            index[e] += step
    return out


def _replay_job(cfg: KVAdmissionConfig, heuristic: str, n_envs: int,
                episodes: tuple[int, int] | None = None) -> dict[tuple, tuple[float, float]]:
    return replay(cfg, heuristic, n_envs, episodes)


def episode_jobs(cfg: KVAdmissionConfig, split: int, with_cost: bool = False) -> list[tuple[int, ...]]:
    """Ranges ``(first, stop)`` of ``training_episodes(cfg)`` that cover it once, each within one
    load level and one part of a workload mixture and each holding about ``1 / split`` of the
    episodes' cost or less (cost: a window's prompt and output tokens, a proxy of engine
    iterations; a range holds at least one episode), costliest first. A range plays as one batch,
    so larger ranges step more envs per call (0.04 s per 256-request Azure episode in ranges of 32
    against 0.12 s in ranges of 4 on the 2-core box) and ``split`` trades that for balance over
    processes. ``with_cost``: ``(first, stop, cost)`` instead. ``ValueError`` for ``split < 1``."""
    if split < 1:
        raise ValueError(f"kv_admission teacher: split must be >= 1, got {split}")
    sc = KVAdmissionVecEnv(1, config=cfg).scenario
    wl = sc.workload
    W = wl.arrival_s.shape[0]
    groups = [int(g) for g in sc.groups] if getattr(sc, "groups", None) is not None else [0, W]
    tokens = np.where(np.isfinite(wl.arrival_s), wl.prompt.astype(np.int64) + wl.output, 0).sum(axis=1)
    n_loads = len(cfg.loads())
    budget = tokens.sum() * n_loads / split
    out = []
    for li in range(n_loads):
        for lo, hi in zip(groups[:-1], groups[1:]):
            f = lo
            while f < hi:
                t, cost = f + 1, int(tokens[f])
                while t < hi and cost + tokens[t] <= budget:
                    cost += int(tokens[t])
                    t += 1
                out.append((li * W + f, li * W + t, cost))
                f = t
    out.sort(key=lambda r: (-r[2], r[0]))
    return out if with_cost else [(f, t) for f, t, _ in out]


def compute(configs: Sequence[KVAdmissionConfig], procs: int = 1, n_envs: int = 64,
            heuristics: Sequence[str] | None = None, log: Any = print, split: int | None = None,
            shard: tuple[int, int] = (0, 1)) -> TeacherData:
    """Every heuristic's replay of every episode of every config (configs with the same
    ``config_key`` are replayed once). ``procs`` worker processes run the jobs: one per (config,
    heuristic), or with ``split`` one per (config, heuristic, range of ``episode_jobs(config,
    split)``), costliest first, so that many processes stay busy. ``shard=(i, n)``
    runs jobs i, i + n, ... of that list only (``merge`` joins the n files; same result as one run).
    Raises ``ValueError`` for no configs, an unknown heuristic name or a bad shard."""
    if not configs:
        raise ValueError("kv_admission teacher: no configs")
    names = tuple(heuristics) if heuristics is not None else candidate_names("heuristics")
    known = candidate_names("static")
    unknown = [h for h in names if h not in known]
    if unknown or not names:
        raise ValueError(f"kv_admission teacher: candidates {unknown or list(names)} are neither KVAdmission "
                         f"heuristics ({', '.join(heuristic_names(ENV_ID))}) nor static candidates")
    i_shard, n_shard = shard
    if not 0 <= i_shard < n_shard:
        raise ValueError(f"kv_admission teacher: shard {i_shard}/{n_shard} must satisfy 0 <= i < n")
    unique = {config_key(c): c for c in configs}
    if split is None:
        jobs = [(c, h, n_envs, None) for c in unique.values() for h in names]
    else:
        # costliest first over every config (several configs, e.g. SLO tiers: one pool stays balanced)
        ranged = sorted(((-cost, k, (f, t)) for k, c in enumerate(unique.values())
                         for f, t, cost in episode_jobs(c, split, with_cost=True)), key=lambda r: r[:2])
        cfgs = list(unique.values())
        jobs = [(cfgs[k], h, n_envs, r) for _, k, r in ranged for h in names]
    jobs = jobs[i_shard::n_shard]
    t0 = time.perf_counter()
    labels = {k: config_label(c) for k, c in unique.items()}

    def done(i: int) -> None:  # progress: long work shows it
        c, h, _, r = jobs[i]
        log(f"kv_admission teacher: {h} replayed on {labels[config_key(c)]}" + (f" episodes {r[0]}-{r[1] - 1}" if r else "")
            + f" ({time.perf_counter() - t0:.0f} s, job {i + 1}/{len(jobs)})")

    results: list[dict] = [{} for _ in jobs]
    if procs <= 1:
        for i, j in enumerate(jobs):
            results[i] = _replay_job(*j)
            done(i)
    else:
        import multiprocessing as mp
        from concurrent.futures import as_completed

        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
            futures = {pool.submit(_replay_job, *j): i for i, j in enumerate(jobs)}
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                done(futures[f])
    data = TeacherData(names, labels=labels)
    for (c, h, _, _), res in zip(jobs, results):
        i = names.index(h)
        for key, (score, ret) in res.items():
            data.scores.setdefault(key, np.full(len(names), np.nan))[i] = score
            data.returns.setdefault(key, np.full(len(names), np.nan))[i] = ret
    log(f"kv_admission teacher: {len(data.scores)} episodes x {len(names)} heuristics replayed in "
        f"{time.perf_counter() - t0:.0f} s" + (f" (shard {i_shard}/{n_shard})" if n_shard > 1 else ""))
    if n_shard == 1:
        log_summary(data, log)
    return data


def log_summary(data: TeacherData, log: Any = print) -> None:
    for row in data.summary():
        log(f"  {row['config']}: {row['episodes']} episodes, mean SLO attainment "
            + ", ".join(f"{h} {v:.4f}" for h, v in row["mean"].items())
            + f"; per-episode best {row['per_episode_best']:.4f}; wins "
            + ", ".join(f"{h} {v}" for h, v in row["wins"].items()))


def merge(parts: Sequence[TeacherData]) -> TeacherData:
    """The shards of one teacher run (``compute(..., shard=(i, n))`` for i < n) as one
    ``TeacherData``. Files of different configs join as their union (each episode is keyed by its
    config). ``ValueError`` when they differ in candidates, when two files replay the same
    candidate on the same episode with different results (made by different code or settings:
    neither is dropped silently), or an episode lacks a candidate's replay in every shard (a shard
    missing)."""
    if not parts:
        raise ValueError("kv_admission teacher: merge of no shards")
    names = parts[0].heuristics
    out = TeacherData(names)
    for d in parts:
        if d.heuristics != names:
            raise ValueError(f"kv_admission teacher: shards replay different candidates: {names} vs {d.heuristics}")
        out.labels.update(d.labels)
        for key, s in d.scores.items():
            for table, src in ((out.scores, s), (out.returns, d.returns[key])):
                have = table.setdefault(key, np.full(len(names), np.nan))
                fill = ~np.isnan(src)
                clash = fill & ~np.isnan(have) & (have != src)
                if clash.any():
                    h = names[int(np.flatnonzero(clash)[0])]
                    raise ValueError(f"kv_admission teacher: two files disagree on {h}'s replay of window {key[1]} "
                                     f"at load {key[2]} of {d.labels.get(key[0], key[0])[:40]}: {have[clash][0]!r} vs "
                                     f"{src[clash][0]!r} (made by different code or settings?)")
                have[fill] = src[fill]
    missing = [(out.labels.get(k[0], k[0])[:40], k[1], k[2]) for k, s in out.scores.items() if np.isnan(s).any()]
    if missing:
        raise ValueError(f"kv_admission teacher: merged shards lack replays of {len(missing)} episode(s), "
                         f"e.g. window {missing[0][1]} at load {missing[0][2]}; is a shard missing?")
    return out


def save(data: TeacherData, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(pickle.dumps({"format": FORMAT, "env": ENV_ID, "heuristics": data.heuristics,
                                  "scores": data.scores, "returns": data.returns, "labels": data.labels}))
    tmp.replace(path)


def load(path: Path, complete: bool = True) -> TeacherData:
    """``TeacherData`` from a file ``save`` wrote; ``ValueError`` naming the file when it is not
    one (another environment's, or another format version) or, with ``complete``, when an episode
    lacks a candidate's replay (one shard of ``compute(..., shard=...)``: ``merge`` them first)."""
    try:
        raw = pickle.loads(Path(path).read_bytes())
    # a file that is not a pickle can fail in the unpickler with any of these (b'garbage': ValueError from int())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, IndexError,
            KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"teacher data {path}: not a teacher file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("env") != ENV_ID:
        raise ValueError(f"teacher data {path}: not a format-{FORMAT} file of agents.kv_admission_teacher")
    data = TeacherData(tuple(raw["heuristics"]), raw["scores"], raw["returns"], raw["labels"])
    if complete and any(np.isnan(s).any() for s in data.scores.values()):
        raise ValueError(f"teacher data {path}: some episodes lack a candidate's replay (one shard of a "
                         f"--shard run?); merge the shards with --merge")
    return data


class KVAdmissionTeacher:
    """``teacher(obs [E, n_obs], masks [E, 108]) -> actions [E]`` for DAgger: in env e, the action
    the winner of e's current episode (``TeacherData.best``) takes in this state.

    ``vec``: a ``KVAdmissionVecEnv`` or an ``agents.family_vec.FamilyVecEnv`` of them (one per SLO
    setting, say); each env is asked which config and episode it plays. The heuristics of each
    config are built on a batch of one of that config (Sarathi's budget depends on its SLO)."""

    def __init__(self, vec: Any, data: TeacherData):
        self.vec, self.data = vec, data
        self._policies: dict[str, list[Any]] = {}

    def _config(self, e: int) -> KVAdmissionConfig:
        return self.vec.config_of(e) if hasattr(self.vec, "config_of") else self.vec.config

    def policies(self, cfg: KVAdmissionConfig) -> list[Any]:
        key = config_key(cfg)
        if key not in self._policies:
            one = KVAdmissionVecEnv(1, config=cfg)
            self._policies[key] = [make_candidate(h, one) for h in self.data.heuristics]
        return self._policies[key]

    def winners(self) -> list[tuple[KVAdmissionConfig, int]]:
        """(config, winner index) of each env's current episode."""
        out = []
        for e in range(self.vec.num_envs):
            cfg = self._config(e)
            out.append((cfg, self.data.best(episode_key(cfg, self.vec.episode_of(e)))))
        return out

    def __call__(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        actions = np.empty(obs.shape[0], np.int64)
        groups: dict[tuple[str, int], tuple[KVAdmissionConfig, list[int]]] = {}
        for e, (cfg, h) in enumerate(self.winners()):
            groups.setdefault((config_key(cfg), h), (cfg, []))[1].append(e)
        for (_, h), (cfg, idx) in groups.items():
            actions[idx] = self.policies(cfg)[h].act(obs[idx], masks[idx])
        return actions


def configs_of(vec: Any) -> list[KVAdmissionConfig]:
    """The configs of a ``KVAdmissionVecEnv`` or of the parts of a ``FamilyVecEnv`` of them."""
    if hasattr(vec, "parts"):
        return [vec.config_of(lo) for lo, _ in vec.slices]
    return [vec.config]


def teacher_for(vec: Any, data_path: Path | None = None, procs: int = 1, log: Any = print) -> KVAdmissionTeacher:
    """The teacher of ``vec``: replays from ``data_path`` (``save``'s file) or, every candidate of
    ``candidate_names("transfer")`` (the zoo recipe's), computed now with ``procs`` processes. ``ValueError`` when the
    file lacks a config of ``vec``."""
    configs = configs_of(vec)
    if data_path is not None:
        data = load(data_path)
        missing = [config_label(c) for c in configs if config_key(c) not in data.labels]
        if missing:
            raise ValueError(f"teacher data {data_path}: no replays of config(s) {missing}; "
                             f"it holds {list(data.labels.values())}")
    else:
        data = compute(configs, procs, heuristics=candidate_names("transfer"), log=log)
    return KVAdmissionTeacher(vec, data)


def main(argv: list[str] | None = None) -> int:
    from agents import cli
    from agents.family_vec import family_specs, hardware_specs, slo_tier_specs

    p = argparse.ArgumentParser("python -m agents.kv_admission_teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenarios", nargs="*", default=None, metavar="GLOB",
                   help="main-track scenario ids of KVAdmission-v0 whose configs train (as train.py --scenarios); "
                        "default: one config from --env-kwargs")
    p.add_argument("--slo-tiers", nargs="+", default=None, metavar="TIER[:LOADS]",
                   help="one config per SLO tier over --env-kwargs' config, as train.py --slo-tiers "
                        "(agents.family_vec.slo_tier_specs; the same entries name the same configs)")
    p.add_argument("--hardware", default=None, metavar="NAME[:DRAWS[:SEED]]",
                   help="one config per engine drawn from a hardware distribution over --env-kwargs' config, as "
                        "train.py --hardware (agents.family_vec.hardware_specs; the same spec names the same configs)")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config fields (on top of each scenario's with --scenarios), as train.py's")
    p.add_argument("--trace", default=None, help="trace without --scenarios (as train.py's --trace)")
    p.add_argument("--procs", type=int, default=1, help="worker processes for the replays")
    p.add_argument("--n-envs", type=int, default=64, help="envs per replay batch")
    p.add_argument("--candidates", choices=("heuristics", "static", "transfer"), default="transfer",
                   help="the policies replayed: every KVAdmission heuristic; those and every static schedule "
                        "(admit all, one budget, shortage rule and queue order: 16 more); or those and the "
                        "static schedules that win episodes (TRANSFER_STATIC, the zoo recipe's)")
    p.add_argument("--split", type=int, default=None, metavar="N",
                   help="one job per (candidate, range of episodes of one load and workload part holding about 1/N "
                        "of the cost), costliest first, instead of one per candidate (keeps many --procs busy; "
                        "same result)")
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="run jobs I, I+N, ... only (with --split); --merge joins the N files (same result)")
    p.add_argument("--merge", nargs="+", type=Path, default=None, metavar="FILE",
                   help="join the shard files of one run into --out (replays nothing)")
    p.add_argument("--out", type=Path, required=True, help="file to write (pickle)")
    a = p.parse_args(argv)
    if a.procs < 1 or a.n_envs < 1:
        p.error(f"--procs {a.procs} --n-envs {a.n_envs}: both must be >= 1")
    if a.split is not None and a.split < 1:
        p.error(f"--split {a.split}: must be >= 1")
    if a.merge:
        ignored = [flag for flag, v in (("--scenarios", a.scenarios), ("--slo-tiers", a.slo_tiers),
                                        ("--hardware", a.hardware),
                                        ("--env-kwargs", a.env_kwargs), ("--shard", a.shard), ("--split", a.split))
                   if v]
        if ignored:  # merge replays nothing: these would be silently ignored
            p.error(f"--merge: not with {', '.join(ignored)} (merge joins the shard files as they are)")
        try:
            data = merge([load(f, complete=False) for f in a.merge])
        except ValueError as err:
            p.error(f"--merge: {err}")
        log_summary(data, lambda m: print(m, flush=True))
        save(data, a.out)
        print(f"wrote {a.out}: {len(data.scores)} episodes of {len(data.labels)} config(s) from {len(a.merge)} shard(s)")
        return 0
    shard = (0, 1)
    if a.shard is not None:
        try:
            i, n = (int(x) for x in a.shard.split("/"))
        except ValueError:
            p.error(f"--shard {a.shard!r}: must be I/N with integers, e.g. 0/2")
        if not 0 <= i < n:
            p.error(f"--shard {a.shard}: must satisfy 0 <= I < N")
        if a.split is None and n > 1:
            p.error("--shard needs --split (shards split the episode ranges)")
        shard = (i, n)
    try:
        kwargs = cli.parse_env_kwargs(a.env_kwargs, ENV_ID)
        a.trace = cli.take_env_kwarg(kwargs, "trace", "--trace", a.trace, "default")  # as train.py
        if a.scenarios and a.slo_tiers:
            p.error("--slo-tiers: not with --scenarios (each scenario has its own SLO)")
        if a.hardware is not None and (a.scenarios or a.slo_tiers):
            p.error("--hardware: not with --scenarios or --slo-tiers (one config per engine)")
        if a.scenarios or a.slo_tiers or a.hardware is not None:
            specs = (family_specs(ENV_ID, a.scenarios, kwargs) if a.scenarios
                     else slo_tier_specs(a.trace, a.slo_tiers, kwargs) if a.slo_tiers
                     else hardware_specs(a.trace, a.hardware, kwargs))
            configs = [KVAdmissionVecEnv(1, **{**s.env_kwargs, "trace": s.trace, "split": "train"}).config
                       for s in specs]
        else:
            configs = [KVAdmissionVecEnv(1, **{**kwargs, "trace": a.trace, "split": "train"}).config]
    except (ValueError, TypeError, cli.UsageError) as err:
        p.error(f"--scenarios / --slo-tiers / --hardware / --env-kwargs: {err}")
    data = compute(configs, a.procs, a.n_envs, candidate_names(a.candidates), log=lambda m: print(m, flush=True),
                   split=a.split, shard=shard)
    save(data, a.out)
    print(f"wrote {a.out}: {len(data.scores)} episodes of {len(data.labels)} config(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
