"""One SB3 VecEnv over several batches of one environment with different configurations.

An environment's config is fixed per batch (Disaggregation-v0: model, parallelism, SLOs), so an
agent that must serve several such families (the leaderboard's scenarios of one environment) trains
on a concatenation: envs ``lo .. hi - 1`` of the whole batch are part k's envs, each part a native
batch (``envs.make_vec``) or a ``envs.subproc_vec.SubprocNativeVecEnv``. Every part must have the
same observation and action spaces. Seeding follows one batch: ``seed(s)`` seeds part k with
``s + lo_k`` (env e's generator from ``s + e``, as ``NativeVecEnv.seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env import VecEnv


class FamilyVecEnv(VecEnv):
    """Concatenation of ``parts`` (VecEnvs of one environment id, identical spaces).

    ``ValueError`` when ``parts`` is empty or their spaces differ (naming the part)."""

    def __init__(self, parts: Sequence[VecEnv], names: Sequence[str] | None = None):
        if not parts:
            raise ValueError("FamilyVecEnv: no parts")
        self.parts = list(parts)
        self.names = list(names) if names is not None else [f"part{k}" for k in range(len(parts))]
        if len(self.names) != len(self.parts):
            raise ValueError(f"FamilyVecEnv: {len(self.names)} names for {len(self.parts)} parts")
        first = self.parts[0]
        for k, p in enumerate(self.parts[1:], 1):
            if p.observation_space != first.observation_space or p.action_space != first.action_space:
                raise ValueError(f"FamilyVecEnv: part {self.names[k]} has spaces {p.observation_space}, "
                                 f"{p.action_space}; part {self.names[0]} has {first.observation_space}, "
                                 f"{first.action_space}")
        bounds = np.cumsum([0] + [p.num_envs for p in self.parts])
        self.slices = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.render_mode = None
        super().__init__(int(bounds[-1]), first.observation_space, first.action_space)
        self.table_metrics = getattr(first, "table_metrics", ())

    def part_of(self, e: int) -> tuple[int, int]:
        """(part index, env index inside that part) of env ``e``; ``IndexError`` out of range."""
        for k, (lo, hi) in enumerate(self.slices):
            if lo <= e < hi:
                return k, e - lo
        raise IndexError(f"FamilyVecEnv: env {e} out of range [0, {self.num_envs})")

    def config_of(self, e: int) -> Any:
        """The config of env ``e``'s part (a native part's ``config``, or asked of a worker)."""
        k, i = self.part_of(e)
        part = self.parts[k]
        return part.config if hasattr(part, "config") else part.get_attr("config", [i])[0]

    def episode_of(self, e: int) -> dict[str, Any]:
        """Reset options replaying env ``e``'s current episode (the part's ``episode_of``; a
        ``SubprocNativeVecEnv`` part's worker answers for its own batch)."""
        k, i = self.part_of(e)
        part = self.parts[k]
        if hasattr(part, "episode_of"):
            return part.episode_of(i)
        lo = next(lo for lo, hi in part.slices if lo <= i < hi)
        return part.env_method("episode_of", i - lo, indices=[i])[0]

    # --- SB3 VecEnv
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        if seed is None:
            return [None] * self.num_envs
        for (lo, _), p in zip(self.slices, self.parts):
            p.seed(seed + lo)
        return [seed + e for e in range(self.num_envs)]

    def reset(self) -> np.ndarray:
        for (lo, hi), p in zip(self.slices, self.parts):
            if any(o for o in self._options[lo:hi]):
                p.set_options(list(self._options[lo:hi]))
        self._reset_options()
        obs = np.concatenate([p.reset() for p in self.parts])
        self.reset_infos = [i for p in self.parts for i in getattr(p, "reset_infos", [{}] * p.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions)
        for (lo, hi), p in zip(self.slices, self.parts):
            p.step_async(a[lo:hi])

    def step_wait(self):
        obs, rew, done, infos = zip(*(p.step_wait() for p in self.parts))
        return np.concatenate(obs), np.concatenate(rew), np.concatenate(done), [i for part in infos for i in part]

    def action_masks(self) -> np.ndarray:
        return np.concatenate([p.action_masks() for p in self.parts])

    def teacher_actions(self) -> np.ndarray:
        """The parts' privileged ``teacher_actions()`` one after another [num_envs] (DAgger's labels,
        agents/imitation.py); ``ValueError`` naming the first part that has none in this process (a
        subprocess part's envs live in its workers)."""
        for name, p in zip(self.names, self.parts):
            if not hasattr(p, "teacher_actions"):
                raise ValueError(f"FamilyVecEnv: part {name} ({type(p).__name__}) has no teacher_actions() "
                                 "in this process")
        return np.concatenate([np.asarray(p.teacher_actions()) for p in self.parts])

    def close(self) -> None:
        for p in self.parts:
            p.close()

    def _each(self, indices) -> list[tuple[int, list[int]]]:
        out: dict[int, list[int]] = {}
        for e in self._get_indices(indices):
            k, i = self.part_of(int(e))
            out.setdefault(k, []).append(i)
        return sorted(out.items())

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [v for k, idx in self._each(indices) for v in self.parts[k].get_attr(attr_name, idx)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        for k, idx in self._each(indices):
            self.parts[k].set_attr(attr_name, value, idx)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks":
            return list(self.action_masks()[list(self._get_indices(indices))])
        return [v for k, idx in self._each(indices)
                for v in self.parts[k].env_method(method_name, *method_args, indices=idx, **method_kwargs)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


@dataclass(frozen=True)
class FamilySpec:
    """One part of a family batch: a name (the scenario id), its trace and env kwargs."""

    name: str
    trace: str
    env_kwargs: dict[str, Any]


def family_specs(env_id: str, globs: Sequence[str], overrides: dict[str, Any] | None = None) -> list[FamilySpec]:
    """The main-track leaderboard scenarios of ``env_id`` (``agents.scenarios.SCENARIOS``) whose id
    matches one of ``globs`` (fnmatch), each as a family with its env kwargs (the full scenario's,
    not ``--quick``'s) and ``overrides`` on top. Raises ``ValueError`` when nothing matches."""
    import fnmatch

    from agents.scenarios import SCENARIOS

    own = [s for s in SCENARIOS if s.env_id == env_id and s.track == "main"]
    hit = [s for s in own if any(fnmatch.fnmatch(s.id, g) for g in globs)]
    if not hit:
        raise ValueError(f"--scenarios {' '.join(globs)}: no main-track scenario of {env_id} matches; its ids: "
                         + ", ".join(s.id for s in own))
    return [FamilySpec(s.id, s.trace, {**s.env_kwargs, **(overrides or {})}) for s in hit]


def training_family_specs(env_id: str, names: Sequence[str],
                          overrides: dict[str, Any] | None = None) -> list[FamilySpec]:
    """The named training families of ``env_id`` (``agents.scenarios.TRAINING_FAMILIES``; ``all``: every
    one), each with its env kwargs and ``overrides`` on top. ``ValueError`` (one line) naming an unknown
    name or one given twice, or an ``env_id`` that has no training families."""
    from agents.scenarios import TRAINING_FAMILIES

    own = TRAINING_FAMILIES.get(env_id)
    if not own:
        have = ", ".join(TRAINING_FAMILIES) or "none"
        raise ValueError(f"--families: {env_id} has no training families in agents.scenarios.TRAINING_FAMILIES "
                         f"(environments that have: {have})")
    if not names:
        raise ValueError("--families: no family given")
    if "all" in names and len(names) > 1:  # was "--families all: not a training family ... (or all)"
        raise ValueError(f"--families {' '.join(names)}: 'all' (every family) stands alone")
    picked = list(own) if list(names) == ["all"] else list(names)
    out, seen = [], set()
    for name in picked:
        if name not in own:
            raise ValueError(f"--families {name}: not a training family of {env_id}; its families: "
                             f"{', '.join(own)} (or all)")
        if name in seen:
            raise ValueError(f"--families {name}: given twice")
        seen.add(name)
        trace, kw = own[name]
        out.append(FamilySpec(name, trace, {**kw, **(overrides or {})}))
    return out


SLO_FIELDS = ("slo_metric", "slo_ttft_s", "slo_tpot_s")


def slo_tier_specs(trace: str, tiers: Sequence[str], overrides: dict[str, Any] | None = None) -> list[FamilySpec]:
    """One family per SLO tier over the same trace or workload mixture (``overrides``: the
    ``--env-kwargs``), so that a training batch crosses the mixture with the tiers. Each entry of
    ``tiers`` is ``TIER`` or ``TIER:LOAD,LOAD,...``: an SLO id as the scenario ids spell it
    (``agents.scenarios.slo_tier_kwargs``: ``mlperf_server``, ``mlperf_interactive``,
    ``distserve_chatbot``, ``..._p99tbt``), optionally with the load levels of that family (tighter
    tiers saturate at lower loads); without them the family plays ``overrides``' loads. The SLO is
    that of ``overrides``' ``model`` (default Llama-3.1-8B, KVAdmission-v0's). The family's
    name is the entry. ``ValueError`` naming the entry for an unknown tier, a bad load list, a tier
    given twice, or ``overrides`` that set the SLO themselves (``slo_metric`` / ``slo_ttft_s`` / ``slo_tpot_s``)."""
    from traces.checks import positive_levels

    from agents.scenarios import slo_tier_kwargs

    model = (overrides or {}).get("model", "Llama-3.1-8B")
    clash = [k for k in SLO_FIELDS if k in (overrides or {})]
    if clash:
        raise ValueError(f"--slo-tiers: each tier sets the SLO; drop {', '.join(clash)} from --env-kwargs")
    if not tiers:
        raise ValueError("--slo-tiers: no tier given")
    out, seen = [], set()
    for entry in tiers:
        tier, sep, loads = entry.partition(":")
        if tier in seen:
            raise ValueError(f"--slo-tiers {entry}: tier {tier} given twice")
        seen.add(tier)
        try:
            kw = {**(overrides or {}), **slo_tier_kwargs(tier, model)}
        except ValueError as err:
            raise ValueError(f"--slo-tiers {entry}: {err}") from None
        if sep:
            try:
                levels = tuple(float(x) for x in loads.split(","))
            except ValueError:
                raise ValueError(f"--slo-tiers {entry}: loads must be numbers separated by commas, "
                                 f"e.g. {tier}:0.9,1.1") from None
            kw["load"] = positive_levels(levels, f"--slo-tiers {entry}: load")  # the environments' wording
        out.append(FamilySpec(entry, trace, kw))
    return out


HARDWARE_FIELDS = ("model", "gpu", "tp", "capacity_blocks")


def hardware_specs(trace: str, spec: str, overrides: dict[str, Any] | None = None) -> list[FamilySpec]:
    """One family per engine drawn by ``--hardware spec`` (``NAME[:DRAWS[:SEED]]``,
    ``envs.kv_admission.hardware``: a seeded draw of GPU x model x KV capacity fraction) over the same trace
    or workload mixture (``overrides``: the ``--env-kwargs``), each with the engine's ``model``, ``gpu``,
    ``tp`` and ``capacity_blocks``; the family's name is the engine's (``HardwareDraw.name``). The draw is at
    ``overrides``' ``mem_frac`` (default 0.9). ``ValueError`` (one line) for a bad spec
    (``envs.kv_admission.hardware.parse_hardware``) or ``overrides`` that set an engine field themselves."""
    from envs.kv_admission.hardware import draw_hardware, parse_hardware

    clash = [k for k in HARDWARE_FIELDS if k in (overrides or {})]
    if clash:
        raise ValueError(f"--hardware: each drawn engine sets {', '.join(HARDWARE_FIELDS)}; drop {', '.join(clash)} "
                         "from --env-kwargs")
    name, draws, seed = parse_hardware(spec)
    engines = draw_hardware(name, draws, seed, float((overrides or {}).get("mem_frac", 0.9)))
    return [FamilySpec(d.name, trace, {**(overrides or {}), **d.env_kwargs()}) for d in engines]


def envs_per_family(n_envs: int, n_families: int) -> int:
    """How many of ``n_envs`` envs each of ``n_families`` families gets; ``ValueError`` (naming ``--n-envs``)
    unless ``n_envs`` is a positive multiple of ``n_families``. ``train.py`` calls it before building any
    family's scenario, ``make_family_vec`` before building the envs."""
    if n_envs < n_families or n_envs % n_families:
        raise ValueError(f"--n-envs {n_envs}: must be a multiple of the {n_families} families")
    return n_envs // n_families


def make_family_vec(env_id: str, n_envs: int, seed: int | None, specs: Sequence[FamilySpec], split: str,
                    vec_procs: int = 1) -> FamilyVecEnv:
    """``n_envs`` envs split evenly among ``specs`` (``split`` part of each trace), each part a
    native batch, or with ``vec_procs`` > 1 a ``SubprocNativeVecEnv`` of ``vec_procs // len(specs)``
    (at least 1) workers. ``ValueError`` when ``n_envs`` is not a multiple of the families."""
    import envs
    from envs.subproc_vec import SubprocNativeVecEnv

    each = envs_per_family(n_envs, len(specs))
    procs = max(1, vec_procs // len(specs))
    parts = []
    try:
        for k, s in enumerate(specs):
            lo = k * each
            kw = {**s.env_kwargs, "trace": s.trace, "split": split}
            if procs > 1:
                parts.append(SubprocNativeVecEnv(env_id, each, min(procs, each),
                                                 seed=None if seed is None else seed + lo, **kw))
            else:
                parts.append(envs.make_vec(env_id, each, seed=None if seed is None else seed + lo, **kw))
    except BaseException:
        for p in parts:
            p.close()
        raise
    return FamilyVecEnv(parts, [s.name for s in specs])
