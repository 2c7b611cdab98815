"""The leaderboard's scenario registry: environment x trace x model/GPU x sweep value x seeds.

A scenario id never changes meaning. Changing anything that moves its numbers (trace, window
length, model, load, episodes, metric, references) means a new id with the version bumped
(``.../v2``), the old one left as it was or removed, never edited in place.

Each environment family states how it is scored: its main metric and direction, the naive
reference (normalized score 0) and the oracle or bound (100), and which data training may see.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from envs.slo import default_slo, tier_slo
from traces.fetch import SHARED_TRACES, locate, missing_hint, not_the_catalogued
from traces.moe_counts import FILE as EXPERT_COUNTS_FILE



@dataclass(frozen=True)
class Scoring:
    """How one environment is ranked and normalized.

    ``bound`` is a policy name, or ``None`` with ``bound_value`` a constant the metric cannot pass
    (for example SLO attainment 1.0 where no oracle is known). ``normalized_metric`` names a metric
    the environment already reports normalized per episode (0..100 against its own references);
    the leaderboard then uses it as is.
    """

    main_metric: str
    higher_is_better: bool
    naive: str
    bound: str | None = None
    bound_value: float | None = None
    normalized_metric: str | None = None
    training_may_see: str = ""
    trace_kind: str = "requests"  # what --trace PATH files feed: "requests" or "expert_load"
    oracles: tuple[str, ...] = ()  # policies that see the future (never "the best heuristic")
    beside: tuple[str, ...] = ()  # metrics the tables show first, next to the main one


@dataclass(frozen=True)
class Scenario:
    id: str
    env_id: str
    trace: str  # built-in name or a path under ../shared/traces
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    episodes: int = 8
    seed: int = 10_000
    quick_kwargs: dict[str, Any] = field(default_factory=dict)  # --quick overrides (shorter windows)
    quick_episodes: int = 2
    track: str = "main"  # "main" | "transfer" (a workload family held out of TRAINING_WORKLOADS entirely)
    in_quick: bool = True  # played by --quick (the transfer track keeps one quick scenario)
    held_out: str = ""  # transfer track: what is held out, where WORKLOAD_FAMILY cannot say (transfer_note)

    @property
    def family(self) -> str:
        return self.env_id.split("/")[-1]

    def trace_available(self) -> tuple[bool, str]:
        if "/" in self.trace or self.trace.endswith((".csv", ".jsonl", ".npz")):
            path = Path(self.trace)
            if not path.exists():
                return False, f"trace file {path} not found ({missing_hint(path)})"
            if path.is_dir():  # a ServeGen model folder: present but empty or another checkout is skipped too
                from traces.servegen import not_the_pinned

                wrong = not_the_pinned(path)
                return (False, f"ServeGen records {wrong}") if wrong else (True, "")
            wrong = not_the_catalogued(path)
            if wrong:
                return False, f"trace file {wrong} (reinstall: `python -m traces.fetch {path.name}`)"
        return True, ""

    def kwargs(self, quick: bool) -> dict[str, Any]:
        return {**self.env_kwargs, **(self.quick_kwargs if quick else {})}

    def n_episodes(self, quick: bool) -> int:
        return self.quick_episodes if quick else self.episodes

    def training_may_see(self) -> str:
        """What training may see of this scenario's trace: its environment's rule
        (``Scoring.training_may_see``, a train/held-out split of the trace), or, where the scenario
        plays its trace whole (``split=all``: a ``--trace`` file, a held-out family), none of it."""
        if self.env_kwargs.get("split") == "all":
            return ("none of this trace: the scenario plays it whole (split=all, every window held out); "
                    "training sees other traces only")
        return SCORING[self.env_id].training_may_see


SCORING: dict[str, Scoring] = {
    "servegym/KVAdmission-v0": Scoring(
        main_metric="slo_attainment", higher_is_better=True, naive="vllm_fcfs",
        bound=None, bound_value=1.0,
        training_may_see="the first 70% of the trace's windows (split=train); scored on the last 30%",
    ),
    "servegym/PrefixEviction-v0": Scoring(
        main_metric="block_hit_ratio", higher_is_better=True, naive="lru", bound="belady",
        oracles=("belady", "belady_candidates"),
        training_may_see="the mooncake_conv generator and the first 70% of a real trace (split=train); "
                         "scored on the last 30%",
    ),
    "servegym/ExpertPlacement-v0": Scoring(
        main_metric="moe_layer_time_s", higher_is_better=False, naive="round_robin",
        bound="eplb_clairvoyant", normalized_metric="normalized_score",
        oracles=("eplb_clairvoyant", "perfect_balance"),
        training_may_see="generator seeds and drift levels of split=train; scored on held-out seeds "
                         "and drifts (split=test)",
        trace_kind="expert_load",
    ),
    "servegym/Autoscale-v0": Scoring(
        main_metric="normalized_score", higher_is_better=True, naive="static_peak", bound="oracle",
        oracles=("oracle",),
        normalized_metric="normalized_score",
        training_may_see="the training days (generator seeds) or first 70% of a trace file "
                         "(split=train); scored on held-out days",
    ),
    "servegym/Disaggregation-v0": Scoring(
        main_metric="goodput_per_gpu", higher_is_better=True, naive="colocated", bound="oracle_dp",
        oracles=("oracle_dp", "static_best"),
        training_may_see="the first 70% of each trace (split=train); scored on the last 30%",
    ),
    # The rule (issue 21): SLO attainment counts only while the TTFT tail stays bounded. Each
    # episode scores slo_attainment_bounded = its SLO attainment if its TTFT p99 (a request never
    # served counted as infinitely late) is within the scenario's bound (ttft_bound_x x the TTFT
    # SLO, 5 x 2 s = 10 s here), else 0: a router that buys attainment by starving a few requests
    # loses. ttft_p99_s and ttft_over_bound are reported beside it (envs/routing/README.md).
    "servegym/Routing-v0": Scoring(
        main_metric="slo_attainment_bounded", higher_is_better=True, naive="round_robin",
        bound=None, bound_value=1.0,
        training_may_see="the first 70% of the trace (split=train); scored on the last 30%",
        beside=("slo_attainment", "ttft_p99_s", "ttft_over_bound"),
    ),
    # Teams (agents.team): every role's policy acts for all agents of the role; the naive team
    # is the heuristic team with round-robin routers.
    "servegym/MultiCluster-v0": Scoring(
        main_metric="slo_attainment", higher_is_better=True, naive="router=round_robin",
        bound=None, bound_value=1.0,
        training_may_see="the first 70% of the trace (split=train); scored on the last 30%",
    ),
}

_KV = "servegym/KVAdmission-v0"
_MOONCAKE = str(SHARED_TRACES / "mooncake_conversation.jsonl")


def _slo(tier: str, metric: str = "tpot", model: str = "Llama-3.1-8B") -> dict[str, Any]:
    """env_kwargs of a published SLO tier (envs/data/slo.toml, every figure with its source)."""
    ttft, tpot = default_slo(model) if tier == "mlperf_server" else tier_slo(tier, model)
    return {"slo_metric": metric, "slo_ttft_s": ttft, "slo_tpot_s": tpot}


def slo_tier_kwargs(tier_id: str, model: str = "Llama-3.1-8B") -> dict[str, Any]:
    """env_kwargs (``slo_metric``, ``slo_ttft_s``, ``slo_tpot_s``) of an SLO id as the scenario ids
    spell it: ``mlperf_server`` (the model's MLPerf Server SLO, envs/data/slo.toml ``[models]``), a
    published tier of that file (``mlperf_interactive``, ``distserve_chatbot`` ...), either with the
    suffix ``_p99tbt`` for the p99-gap check (``mlperf_server_p99tbt``); otherwise the TTFT + mean TPOT
    check (MLPerf Inference, DistServe). ``ValueError`` naming the id and the known tiers (an unknown
    tier, or a model the tier has no SLO for)."""
    base, metric = (tier_id[:-len("_p99tbt")], "p99_tbt") if tier_id.endswith("_p99tbt") else (tier_id, "tpot")
    try:
        return _slo(base, metric, model)
    except KeyError as err:
        raise ValueError(f"SLO tier {tier_id!r} (model {model}): {err.args[0]} (or mlperf_server; "
                         f"each optionally with _p99tbt)") from None


def _slo_pair(tier: str, model: str) -> dict[str, float]:
    """Disaggregation-v0 env_kwargs of a published SLO tier (it always checks TTFT + mean TPOT)."""
    ttft, tpot = tier_slo(tier, model)
    return {"slo_ttft_s": ttft, "slo_tpot_s": tpot}


DISAGG_70B = {"model": "Llama-3.1-70B", "tp": 4, "instances": 8}


# v2: the SLO check is MLPerf's / DistServe's TTFT + TPOT (v1 checked each request's p99 gap, now
# the p99_tbt family). Under it every heuristic meets MLPerf's Server SLO for >= 96% of requests at
# loads 0.7-1.1 on the default trace, so the scenarios sit where admission, budget and preemption
# decide the outcome: overload, a bursty trace, the field's tighter tiers (MLPerf interactive,
# DistServe chatbot), and the p99-gap check. Best / worst heuristic per scenario: README.
_KV_V2 = (
    # (trace id part, trace, SLO id part, SLO kwargs, load)
    ("azure_conv", "default", "mlperf_server", _slo("mlperf_server"), 1.3),
    ("azure_conv", "default", "mlperf_server", _slo("mlperf_server"), 1.5),
    ("bursty", "bursty", "mlperf_server", _slo("mlperf_server"), 1.1),
    ("azure_conv", "default", "mlperf_interactive", _slo("mlperf_interactive"), 0.9),
    ("azure_conv", "default", "distserve_chatbot", _slo("distserve_chatbot"), 1.1),
    ("azure_conv", "default", "mlperf_server_p99tbt", _slo("mlperf_server", "p99_tbt"), 1.1),
    ("azure_conv", "default", "mlperf_server_p99tbt", _slo("mlperf_server", "p99_tbt"), 1.3),
)
SCENARIOS: list[Scenario] = [
    *(Scenario(
        # v3: the observation counts requests in units of the replica's capacity x the TTFT SLO
        # (envs.core.capacity.count_unit; issue 21), so v2's checkpoints no longer read it right.
        id=f"kv_admission/{tid}/llama3.1-8b-h100/{sid}/load{load}/v3",
        env_id=_KV, trace=trace, env_kwargs={"load": load, **slo},
        episodes=4, quick_episodes=1, quick_kwargs={"window_requests": 256},
    ) for tid, trace, sid, slo, load in _KV_V2),
    *(Scenario(
        # v2: learned policies choose among sampled candidates (LRU's victim + random blocks, the
        # env's default now), not among the 16 least recently used blocks as in v1.
        # v3: the candidates are leaves of the cached prefix tree only (evict_leaves_only, as
        # SGLang evicts; v2 offered inner blocks too, whose eviction strands their descendants).
        # v4: the observation gains the candidate feature "reinserted" (issue 21).
        id=f"prefix_eviction/mooncake_conversation/llama3.1-8b-h100/capacity{frac}/v4",
        env_id="servegym/PrefixEviction-v0", trace=_MOONCAKE,
        env_kwargs={"capacity_frac": frac, "evict_leaves_only": True},
        episodes=4, quick_episodes=1,
    ) for frac in (0.01, 0.05, 0.1, 0.25)),
    *(Scenario(
        # v2: held-out episode k's expert load comes from generator seed SeedSequence([k]) (the
        # unified per-env seeding of envs.native_vec), no longer from (scenario seed, env, episode).
        # v3: the observation gains the global features in time (issue 21: moe_keep, dmoe_*, mig_committed,
        # dmig_*; envs/expert_placement/README.md), so v2's checkpoints no longer load.
        # v4: the load generator draws with traces.portable (expert_load-v2): the same counts on every
        # machine; v3's came from numpy's samplers, whose draws differed between hosts.
        id=f"expert_placement/generator/deepseek-v3-h200-ep32/drift{drift}/v4",
        env_id="servegym/ExpertPlacement-v0", trace="default", env_kwargs={"drift": drift},
        quick_episodes=2,
    ) for drift in (0.01, 0.04, 0.15)),
    *(Scenario(  # v2: misses counted by the TTFT + TPOT check (v1: p99 gap)
        id=f"autoscale/bursty/llama3.1-8b-h100+l40s/penalty{pen}/v2",
        env_id="servegym/Autoscale-v0", trace="bursty", env_kwargs={"slo_penalty": pen, "slo_metric": "tpot"},
        episodes=4, quick_episodes=1,
    ) for pen in (0.001, 0.01)),
    # Azure conversation (output-heavy) and code (prompt-heavy) phases alternating every 120 s;
    # "mlperf" = the model's default SLOs (TTFT 2 s, mean TPOT 0.1 s), "tight" = TTFT 0.5 s and
    # mean TPOT 0.03 s, where DistServe's result says disaggregation should pay. v2: the oracles
    # (static_best, oracle_dp: the 100 of the normalized score) search every count of prefill,
    # colocated and decode instances, not only all-colocated and pure P:D splits (v1).
    *(Scenario(
        id=f"disaggregation/azure_conv+azure_code/llama3.1-8b-h100x8/load{load}/slo_{name}/v2",
        env_id="servegym/Disaggregation-v0", trace="default", env_kwargs={"load": load, **slo},
        episodes=4, quick_episodes=1, quick_kwargs={"phases": 2, "phase_s": 60.0},
    ) for load, name, slo in ((0.8, "mlperf", {}), (0.5, "tight", {"slo_ttft_s": 0.5, "slo_tpot_s": 0.03}))),
    # The second family: Llama-3.1-70B at TP=4, 8 instances on 32 H100s (4 nodes of 8: KV
    # crosses nodes over the NIC for most prefill-decode pairs). With 4 instances only the 3:1 split
    # serves (1:3 and 2:2 starve prefill); with 8 the best split (6:2 on held-out windows) has
    # neighbours 10% (5:3) and 60% (7:1) below it, so the P:D ratio decides. SLOs: the model's
    # default (MLPerf llama2-70b Server: TTFT 2 s, TPOT 0.2 s) and MLPerf's interactive tier
    # (TTFT 0.45 s, TPOT 0.04 s; envs/data/slo.toml).
    *(Scenario(
        id=f"disaggregation/azure_conv+azure_code/llama3.1-70b-tp4-h100x32/load{load}/slo_{name}/v1",
        env_id="servegym/Disaggregation-v0", trace="default", env_kwargs={**DISAGG_70B, "load": load, **slo},
        episodes=4, quick_episodes=1, quick_kwargs={"phases": 2, "phase_s": 60.0},
    ) for load, name, slo in ((0.8, "mlperf", {}),
                              (0.5, "mlperf_interactive", _slo_pair("mlperf_interactive", "Llama-3.1-70B")))),
    *(Scenario(
        # Two routers, per-replica admission and an HPA-style autoscaler on 8 H100 replicas.
        id=f"multi_cluster/mooncake_conversation/llama3.1-8b-h100x8/load{load}/v1",
        env_id="servegym/MultiCluster-v0", trace=_MOONCAKE, env_kwargs={"load": load, "slo_metric": "tpot"},
        episodes=3, quick_episodes=1,
    ) for load in (0.8,)),
    *(Scenario(  # v2: the TTFT + TPOT SLO check (v1: p99 gap). v3: scored by slo_attainment_bounded (the
        # TTFT tail bound, 5 x the TTFT SLO; SCORING), the observation relative to capacity and the SLO.
        id=f"routing/mooncake_conversation/llama3.1-8b-h100x8/load{load}/v3",
        env_id="servegym/Routing-v0", trace=_MOONCAKE,
        env_kwargs={"load": load, "slo_metric": "tpot", "ttft_bound_x": 5.0},
        episodes=3, quick_episodes=1,
    ) for load in (0.6, 0.9)),
]


# --- the transfer track --------------------------------------------------------------------------
# Agents for the transfer track train on a distribution of workloads (the env config's `workloads`,
# envs.core.mixture) and are scored on families that distribution never contains. Each entry of a
# distribution or of a transfer scenario belongs to one workload family (same service, same
# length and arrival model); a family is held out only if none of its members is trained on.
_AZURE_CONV_FILE = str(SHARED_TRACES / "azure_llm_2023_conv.csv")
# The Mooncake FAST'25 synthetic trace (kvcache-ai/Mooncake FAST25-release/traces/synthetic_trace.jsonl:
# 3,993 requests built from public datasets, Poisson arrivals; Apache-2.0): a prefix-chain family other
# than Kimi's conversations. Found in ../shared/traces or installed by `python -m traces.fetch
# mooncake_synthetic.jsonl` (traces.fetch: pinned commit and SHA-256); its scenarios skip without it.
_MOONCAKE_SYNTHETIC_FILE = str(locate("mooncake_synthetic.jsonl", SHARED_TRACES))
# The Azure 2023 coding service's real hour (Azure/AzurePublicDataset AzureLLMInferenceTrace_code.csv,
# 8,819 requests; CC-BY 4.0), the trace the azure_code_bursty generator was fitted to; found and
# installed the same way (`python -m traces.fetch azure_llm_2023_code.csv`).
_AZURE_CODE_FILE = str(locate("azure_llm_2023_code.csv", SHARED_TRACES))
# ServeGen's production rate records of Alibaba Model Studio's "m-large" language model (14 days of
# per-client rates in 10-minute windows; traces.servegen, Apache-2.0): real days of arrivals for
# Autoscale-v0, a family no agent trains on. A clone of github.com/alibaba/ServeGen at the pinned
# commit, in ../shared/traces/ServeGen or the fetch cache ($SERVEGYM_TRACE_DIR/ServeGen); skipped without it.
_SERVEGEN_M_LARGE = str(locate("ServeGen/data/language/m-large", SHARED_TRACES))
WORKLOAD_FAMILY: dict[str, str] = {
    "azure_conv-v1": "azure_conv",
    "bursty-v1": "azure_conv",  # Azure conversation lengths and MMPP, diurnal day
    _AZURE_CONV_FILE: "azure_conv",
    "azure_code-v1": "azure_code",
    "azure_code_bursty-v1": "azure_code",
    _AZURE_CODE_FILE: "azure_code",
    "mooncake_conv-v1": "mooncake_conv",
    _MOONCAKE: "mooncake_conv",
    _MOONCAKE_SYNTHETIC_FILE: "mooncake_synthetic",
    "burstgpt_like-v1": "burstgpt",
    "agentic-v1": "agentic",
    _SERVEGEN_M_LARGE: "servegen",
}
# The default training distribution of each environment (its `workloads` config value for agents of
# the transfer track): the Azure and Mooncake conversation families, generators and real training parts.
TRAINING_WORKLOADS: dict[str, tuple[str, ...]] = {
    _KV: ("azure_conv-v1", "bursty-v1", "mooncake_conv-v1", _AZURE_CONV_FILE, _MOONCAKE),
    "servegym/Routing-v0": ("azure_conv-v1", "mooncake_conv-v1", _AZURE_CONV_FILE, _MOONCAKE),
    "servegym/PrefixEviction-v0": ("mooncake_conv-v1", _MOONCAKE),
    # The cluster's routers train on Routing-v0's distribution (agents.train_multi); its admission seats hold
    # KVAdmission-v0's zoo agent, trained on that environment's distribution above (the same families).
    "servegym/MultiCluster-v0": ("azure_conv-v1", "mooncake_conv-v1", _AZURE_CONV_FILE, _MOONCAKE),
    # Disaggregation-v0 has no `workloads` mixture: its zoo agent (agents.zoo RECIPES, `--scenarios
    # 'disaggregation/*'`) trains on the main-track scenarios' training windows, whose phases alternate the
    # config's trace and shift_trace, the Azure conversation and code generators (a test keeps them equal).
    "servegym/Disaggregation-v0": ("azure_conv-v1", "azure_code-v1"),
}


# ServeGen's records of Model Studio's two other language models, "m-mid" and "m-small" (the same pinned clone as
# m-large, traces.servegen.RECORDS): Autoscale-v0's real training days. m-large's records stay out of every
# training distribution: they are the transfer track's real days (autoscale/transfer/servegen_m_large).
_SERVEGEN_M_MID = str(locate("ServeGen/data/language/m-mid", SHARED_TRACES))
_SERVEGEN_M_SMALL = str(locate("ServeGen/data/language/m-small", SHARED_TRACES))
# Environments whose config has no workload mixture train on a concatenation of families instead
# (agents.family_vec.FamilyVecEnv; `train.py --families NAME ...`): name -> (trace, env kwargs), each
# family's training split (first 70% of a file, training seeds of a generator). Autoscale-v0: the bursty
# generator days and ServeGen's m-mid and m-small real days thinned to the main track's mean of 60
# requests/s, as the transfer scenarios play m-large.
TRAINING_FAMILIES: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "servegym/Autoscale-v0": {
        "bursty": ("bursty", {"slo_metric": "tpot"}),
        "servegen_m_mid": (_SERVEGEN_M_MID, {"slo_metric": "tpot", "trace_params": (("rate_rps", 60.0),)}),
        "servegen_m_small": (_SERVEGEN_M_SMALL, {"slo_metric": "tpot", "trace_params": (("rate_rps", 60.0),)}),
    },
}


def family_of(entry: str) -> str:
    """The workload family of a trace entry (a versioned built-in name or a shared trace path);
    ``KeyError`` naming the entry for one that ``WORKLOAD_FAMILY`` does not list."""
    if entry not in WORKLOAD_FAMILY:
        raise KeyError(f"{entry!r} has no workload family in agents.scenarios.WORKLOAD_FAMILY")
    return WORKLOAD_FAMILY[entry]


def transfer_note(sc: Scenario) -> str:
    """What a transfer scenario holds out: its family and the families training may see (the
    scenario's own ``held_out`` where it states it: ExpertPlacement's expert-load families)."""
    if sc.held_out:
        return sc.held_out
    trained = sorted({family_of(w) for w in TRAINING_WORKLOADS[sc.env_id]})
    return (f"workload family {family_of(sc.trace)} ({_tid(sc.trace)}, played whole) is outside the training "
            f"distribution (agents.scenarios.TRAINING_WORKLOADS: families {', '.join(trained)})")


def _tid(trace: str) -> str:
    return Path(trace).stem if "/" in trace else trace


# Held-out families per environment: (trace, extra env_kwargs, episodes, sweep values). A generated
# family plays whole (split="all": no part of it was ever seen); burstgpt_like runs 4 hours so that
# its episodes are distinct windows. The sweep values sit where the heuristics separate and the best
# stays below the bound (measured with every heuristic, 2-3 episodes, before fixing them):
# - KVAdmission: the code family's bursts (14.6 requests/s for ~8 s, then ~40 s idle) overload a
#   replica already at mean load 0.3-0.5 (sarathi 0.54 / 0.28, vllm_fcfs 0.26 / 0.06); at 1.1 every
#   policy is below 0.13. burstgpt_like's Zipf requests are short: under MLPerf's Server SLO
#   sarathi meets it for 100% of requests even at load 3.0, so it plays under MLPerf's interactive
#   tier (best 0.81 / 0.69 at 1.3 / 1.5). agentic: best 0.86 / 0.55 at 1.1 / 1.3.
# - Routing: loads are fractions of the capacity without prefix reuse; agentic reuses ~80% of its
#   blocks, so every router meets the SLO for >= 99% of requests at 0.6-0.9 and jsq still 0.99 at
#   1.5. v2 (scored by slo_attainment_bounded, the TTFT tail bound of 10 s; 3 episodes, seed 10000,
#   measured at 2bdd73d): agentic at 1.75 / 2.0: best jsq 0.961 (TTFT p99 1.3 s) / p2c 0.728 (5.1 s),
#   sglang_cache_aware 0.829 at 2.0 breaks the bound (p99 16.9 s: 0); at 2.5 (v1's load) every heuristic
#   breaks it in most episodes (best bounded 0.20), so v2 plays 1.75 / 2.0. The code family: best
#   sglang_cache_aware 0.780 / 0.677 at 0.3 / 0.45, every TTFT p99 <= 2.5 s (its misses are TPOT).
# - PrefixEviction: agentic's working set is small: at 1% of its distinct blocks LRU is within
#   0.05 of Belady (0.756 vs 0.803), at 0.2% / 0.5% within 0.20 / 0.14. The Mooncake synthetic
#   trace separates at 5% / 10% (LRU 0.109 / 0.183, Belady 0.319 / 0.407).
_TRANSFER_KV = (
    ("azure_code_bursty-v1", "mlperf_server", {}, 4, (0.3, 0.5)),
    # The real hour the code generator was fitted to (8 distinct windows; measured at f08248e, 4 episodes,
    # 2-core box): sarathi 0.628 / 0.274 at 0.3 / 0.5, vllm_fcfs 0.424 / 0.114, as on the generator.
    (_AZURE_CODE_FILE, "mlperf_server", {}, 4, (0.3, 0.5)),
    ("burstgpt_like-v1", "mlperf_interactive", {"trace_params": (("duration_s", 14400.0),)}, 4, (1.3, 1.5)),
    ("agentic-v1", "mlperf_server", {}, 4, (1.1, 1.3)),
)
_TRANSFER_ROUTING = (
    ("azure_code_bursty-v1", {}, 3, (0.3, 0.45)),
    # The real code hour (8 distinct windows; f08248e, 3 episodes): heuristics 0.62-0.70 at 0.3 (SLO
    # attainment), 0.41-0.43 at 0.45, as close together as on the generator.
    (_AZURE_CODE_FILE, {}, 3, (0.3, 0.45)),
    ("agentic-v1", {}, 3, (1.75, 2.0)),
    # The Mooncake FAST'25 synthetic trace (long prompts, median 11,587 tokens; short outputs, 69): a prefix-chain
    # family held out of Routing's training (added 2026-12-03). Loads chosen from the heuristics alone (2 episodes,
    # seed 10000, before any agent played it): best jsq 0.889 / 0.864 / 0.691 / 0.000 at 0.6 / 0.9 / 1.2 / 1.5
    # (dualmap 0.785 / 0.707, sglang_cache_aware 0: its TTFT p99 12-19 s breaks the bound); 0.6 / 0.9, the main
    # track's Mooncake loads. burstgpt_like-v1 was tried and left out: under TTFT 0.45 s / TPOT 40 ms every
    # heuristic is >= 0.939 at load <= 2.0 and within 0.016 of the others at 2.5 / 3.0 (its misses are TPOT:
    # no router fixes them).
    (_MOONCAKE_SYNTHETIC_FILE, {}, 3, (0.6, 0.9)),
)
_TRANSFER_PREFIX = (
    ("agentic-v1", {}, 4, (0.002, 0.005)),
    (_MOONCAKE_SYNTHETIC_FILE, {}, 3, (0.05, 0.1)),  # 3,993 requests: three windows of 1,000 after warm-up
)
# - MultiCluster (teams; the routers' transfer families at two loads each): the cluster's autoscaler and
#   admission seats make it harder than Routing-v0 at the same load. Measured at 5b79935 (3 episodes, seed
#   10000, 2-core box): the code family at 0.3 / 0.45: the heuristic team 0.469 / 0.427, every router
#   heuristic within 0.02 of it, admission=sarathi 0.794 / 0.811 (its TPOT misses are prefill interference);
#   agentic at 1.0 every team >= 0.957 (near the bound), so 1.3 / 1.75: the heuristic team 0.451 / 0.186,
#   best router heuristic sglang_cache_aware 0.559 / 0.307 (TTFT p99 29 / 39 s), admission=sarathi 0.552 / 0.311.
_TRANSFER_MULTI = (
    ("azure_code_bursty-v1", 3, (0.3, 0.45)),  # 9 distinct windows of 1,024 requests
    ("agentic-v1", 3, (1.3, 1.75)),  # 22 distinct windows
)
TRANSFER_SCENARIOS: list[Scenario] = [
    *(Scenario(
        # v2: request counts in the observation relative to capacity (as the main track's v3).
        id=f"kv_admission/transfer/{_tid(trace)}/llama3.1-8b-h100/{tier}/load{load}/v2",
        env_id=_KV, trace=trace, env_kwargs={"load": load, "split": "all", **_slo(tier), **extra},
        episodes=n, quick_episodes=1, quick_kwargs={"window_requests": 256}, track="transfer",
        in_quick=(trace == "agentic-v1" and load == 1.3),
    ) for trace, tier, extra, n, loads in _TRANSFER_KV for load in loads),
    *(Scenario(
        # v2: scored by slo_attainment_bounded (the TTFT tail bound; SCORING), the observation relative
        # to capacity and the SLO, agentic at loads 1.75 / 2.0 (v1: 2.0 / 2.5).
        id=f"routing/transfer/{_tid(trace)}/llama3.1-8b-h100x8/load{load}/v2",
        env_id="servegym/Routing-v0", trace=trace, env_kwargs={"load": load, "split": "all", "slo_metric": "tpot",
                                                              "ttft_bound_x": 5.0, **extra},
        episodes=n, quick_episodes=1, track="transfer", in_quick=False,
    ) for trace, extra, n, loads in _TRANSFER_ROUTING for load in loads),
    *(Scenario(
        # v2: leaf candidates only (evict_leaves_only, as the main track's v3).
        # v3: the observation gains the candidate feature "reinserted" (as the main track's v4).
        id=f"prefix_eviction/transfer/{_tid(trace)}/llama3.1-8b-h100/capacity{frac}/v3",
        env_id="servegym/PrefixEviction-v0", trace=trace,
        env_kwargs={"capacity_frac": frac, "split": "all", "evict_leaves_only": True, **extra},
        episodes=n, quick_episodes=1, track="transfer", in_quick=False,
    ) for trace, extra, n, fracs in _TRANSFER_PREFIX for frac in fracs),
    *(Scenario(
        # Teams (agents.team) of two routers, per-replica admission and the HPA autoscaler on 8 H100s, on the
        # Routing transfer families (held out of TRAINING_WORKLOADS["servegym/MultiCluster-v0"] and of the
        # KVAdmission distribution its admission agent saw), played whole.
        id=f"multi_cluster/transfer/{_tid(trace)}/llama3.1-8b-h100x8/load{load}/v1",
        env_id="servegym/MultiCluster-v0", trace=trace, env_kwargs={"load": load, "split": "all", "slo_metric": "tpot"},
        episodes=n, quick_episodes=1, track="transfer", in_quick=False,
    ) for trace, n, loads in _TRANSFER_MULTI for load in loads),
    *(Scenario(
        # Real days: the ServeGen m-large records thinned to the main track's mean rate (60 requests/s),
        # azure_conv lengths as the bursty days; every whole day of the 14 is one episode (split=all: no
        # agent trains on ServeGen; the fleet is sized on the first 70%, as for any trace file).
        id=f"autoscale/transfer/servegen_m_large/llama3.1-8b-h100+l40s/penalty{pen}/v1",
        env_id="servegym/Autoscale-v0", trace=_SERVEGEN_M_LARGE,
        env_kwargs={"slo_penalty": pen, "slo_metric": "tpot", "split": "all", "trace_params": (("rate_rps", 60.0),)},
        episodes=13, quick_episodes=1, track="transfer", in_quick=False,
        held_out=("ServeGen's real days (the m-large records' arrivals, played whole) are outside training: the "
                  "zoo agent trains on bursty generator days (diurnal profile x MMPP bursts, azure_conv lengths)"),
    ) for pen in (0.001, 0.01)),
]

# ExpertPlacement-v0's expert-load families. Training (the zoo recipe) sees one generator regime only:
# DeepSeek-V3 on 32 H200s (EP32), Zipf skew 0.6, layer correlation 0.5, no phase shift, drifts
# 0.005 / 0.02 / 0.08, even generator seeds (ExpertPlacementConfig defaults, split=train). Held out:
# a sharper skew (1.0), abrupt phase shifts (a new popularity permutation every 128 steps = 4
# rebalance intervals) with weaker layer correlation (0.2), another model shape (Qwen3-30B-A3B: 128
# experts on 16 H200s in 2 nodes, skew 0.8), each at the main track's held-out drifts and odd
# (held-out) generator seeds; and the recorded-counts format: traces/data/expert_counts_dsv3_generated.npz,
# GENERATED by `python -m traces.moe_counts` (skew 0.9, layer correlation 0.2, drift 0.03, a phase
# shift every 300 steps), not measured: no real routing log is available. Its 2,176 steps hold 1,633
# episode starts; the 8 episodes start at steps 7919 k mod 1633 and overlap (each 544 steps).
_EP = "servegym/ExpertPlacement-v0"
_EP_TRAINED = ("training sees one generator regime only: DeepSeek-V3 EP32, Zipf skew 0.6, layer correlation 0.5, "
               "no phase shift, drifts 0.005/0.02/0.08, even generator seeds")
_TRANSFER_EP = (
    # (family id part, model id part, env_kwargs, what is held out)
    ("generator_zipf1.0", "deepseek-v3-h200-ep32", {"zipf_s": 1.0}, "Zipf skew 1.0"),
    ("generator_phase128_corr0.2", "deepseek-v3-h200-ep32", {"phase_shift_every": 128, "layer_corr": 0.2},
     "a phase shift every 128 steps, layer correlation 0.2"),
    ("generator_zipf0.8", "qwen3-30b-a3b-h200-ep16", {"model": "Qwen3-30B-A3B", "gpus": 16, "zipf_s": 0.8},
     "model Qwen3-30B-A3B (128 experts) on 16 H200s, Zipf skew 0.8"),
)
TRANSFER_SCENARIOS_EP: list[Scenario] = [
    *(Scenario(
        # v2: the observation gains the global features in time (issue 21), as the main track's v3
        # v3: portable draws (expert_load-v2), as the main track's v4
        id=f"expert_placement/transfer/{fam}/{shape}/drift{drift}/v3",
        env_id=_EP, trace="default", env_kwargs={"drift": drift, "split": "test", **kw},
        quick_episodes=2, track="transfer", in_quick=False,
        held_out=f"expert-load family {fam} ({what}; held-out generator seeds) is outside training ({_EP_TRAINED})",
    ) for fam, shape, kw, what in _TRANSFER_EP for drift in (0.01, 0.04, 0.15)),
    Scenario(
        # v3: the file regenerated by the portable generator (expert_load-v2)
        id="expert_placement/transfer/expert_counts_dsv3_generated/deepseek-v3-h200-ep32/recorded/v3",
        env_id=_EP, trace=str(EXPERT_COUNTS_FILE), env_kwargs={"split": "all"},
        quick_episodes=2, track="transfer", in_quick=False,
        held_out=("recorded-counts format (.npz), played whole: GENERATED by `python -m traces.moe_counts` "
                  "(Zipf skew 0.9, layer correlation 0.2, drift 0.03, a phase shift every 300 steps), not "
                  f"measured; 8 overlapping episodes of one 2,176-step stream ({_EP_TRAINED})"),
    ),
]
TRANSFER_SCENARIOS += TRANSFER_SCENARIOS_EP

# KVAdmission-v0's held-out hardware (issue 21: training samples "where it applies GPU, model and capacity").
# The zoo recipe (agents.zoo KV_ADMISSION_TRANSFER) trains on one engine: Llama-3.1-8B on one H100-SXM with the
# catalogue's KV pool at mem_frac 0.9 (26,099 blocks of 16 tokens). Recipes on envs.kv_admission.hardware's
# distributions (train.py --hardware, e.g. nvidia-v1:2:0, which adds Llama-3.1-70B at TP 4 on H100-SXMs with a
# quarter of its pool, 6,688 blocks) never see these engines either: every distribution there leaves them out (a
# test keeps them out). Loads
# and the SLO stay relative: a load is a fraction of the capacity measured on that engine (envs.core.capacity),
# the SLO is the model's MLPerf Server SLO (envs/data/slo.toml). Engines picked where the
# model fits on one GPU at mem_frac 0.9 (hwmodels.kv_capacity_blocks > 0) and where the step-time model has been
# checked against published vLLM results (hwmodels/data/published_results.toml has A100, H100 and H200 points of
# Llama-3.1-8B, Llama-3.1-70B and Mixtral-8x7B; none of B200, L40S, MI300X or Qwen3):
# - Llama-3.1-8B on one A100-80GB-SXM: another GPU (2.0 TB/s HBM against 3.35; capacity 6.97 requests/s on the
#   azure_conv windows against the H100's 16.55), the same KV pool in blocks (26,098);
# - Mixtral-8x7B on one H200-SXM: another model (MoE, 8 experts top-2, 87 GiB of bf16 weights) and another GPU,
#   a smaller KV pool (16,035 blocks), MLPerf's Mixtral Server SLO (TTFT 2 s, TPOT 0.2 s).
# Each on a family the agent trains on (azure_conv, its held-out windows: split=test, as the main track) and on
# a held-out one (agentic-v1, played whole), at a load where the heuristics separate and stay below the bound
# (measured with every heuristic, 2 episodes, seed 10000, the 2-core box, before fixing them): on the A100 every
# policy collapses at 1.3 (azure_conv 0.13-0.19, agentic 0.19-0.29: its decode batch passes MLPerf's 100 ms TPOT
# long before the KV pool fills), at 1.0 azure_conv 0.757 (sarathi) - 0.870 (past_future), agentic 0.584-0.627,
# at 0.7 every heuristic 0.997-0.998 on azure_conv; Mixtral on the H200 at 1.3: 0.24-0.76 on azure_conv, 0.03-0.71 on
# agentic (4 episodes).
KV_HELD_OUT_HARDWARE: tuple[tuple[str, str, str, float], ...] = (
    # (id part, model, GPU, load)
    ("llama3.1-8b-a100", "Llama-3.1-8B", "A100-80GB-SXM", 1.0),
    ("mixtral-8x7b-h200", "Mixtral-8x7B", "H200-SXM", 1.3),
)
KV_TRAINED_HARDWARE = "Llama-3.1-8B on one H100-SXM (full KV pool)"
_TRANSFER_KV_HW = (
    # (trace id part, trace, split, family note)
    ("azure_conv", "default", "test", "workload family azure_conv is trained on (its held-out windows)"),
    ("agentic-v1", "agentic-v1", "all", "workload family agentic (agentic-v1, played whole) is held out too"),
)


def _kv_hw_version(tid: str, hw: str) -> str:
    return "v4" if (tid, hw) == ("agentic-v1", "mixtral-8x7b-h200") else "v2"


TRANSFER_SCENARIOS_HW: list[Scenario] = [
    Scenario(
        # v2: request counts in the observation relative to capacity (as the main track's v3). v3 (Mixtral on
        # agentic only): natural rates over the requests the engine accepts; 299 of agentic-v1's 23,031 prompts
        # exceed Mixtral's 32,768-token context and are rejected at arrival, and no longer speed up the
        # others' replay (envs.core.workload.build_workload's ``accepted``). v4 (the same one): Past-Future's prior
        # (the observation's pf_peak and the past_future heuristic) counts only the history's requests the engine
        # accepts (envs.kv_admission.env.hist_prior), so those 299 no longer enter it. The other three are unchanged.
        id=f"kv_admission/transfer/{tid}/{hw}/mlperf_server/load{load}/{_kv_hw_version(tid, hw)}",
        env_id=_KV, trace=trace,
        env_kwargs={"load": load, "split": split, "model": model, "gpu": gpu, **_slo("mlperf_server", model=model)},
        episodes=4, quick_episodes=1, quick_kwargs={"window_requests": 256}, track="transfer", in_quick=False,
        held_out=(f"hardware: {model} on one {gpu} is outside training (the zoo agent: {KV_TRAINED_HARDWARE}; "
                  f"envs.kv_admission.hardware's distributions leave it out); {note}"),
    ) for hw, model, gpu, load in KV_HELD_OUT_HARDWARE for tid, trace, split, note in _TRANSFER_KV_HW
]
TRANSFER_SCENARIOS += TRANSFER_SCENARIOS_HW

# Disaggregation-v0's held-out workload families (issue 21). Its zoo agent trains on the main track's
# training windows, phases of the Azure conversation and code generators (TRAINING_WORKLOADS above); here
# every phase of an episode comes from one held-out family (shift_trace=None: no trained phase in between),
# played whole (split="all"; DistServe's offline search still simulates the first 70%, the workload's history,
# as a deployment would). The 8B x 8 H100 cluster, MLPerf Server SLOs (TTFT 2 s, mean TPOT 0.1 s). Each
# scenario builds 8 windows (episodes_per_load) and plays 4, each window 4 phases from independent random
# starts in the family (agentic: ~1,000-1,250 of its 23,031 requests per phase at 0.6-0.7; Mooncake: ~250-480
# of 12,031 at 1.0-1.5), none replayed cyclically (Scenario.wrapped == 0; a test checks it). Loads where the
# heuristics separate and the best stays below the oracle, measured with every heuristic and oracle on the
# scenarios' own 4 episodes (seed 10000, the leaderboard's run_policy, at a6fc06d, the 2-core box; the
# exploration before it used 2 episodes), goodput per GPU:
# - agentic (8.6k-token mean prompts with long shared prefixes, tool pauses; 182-token mean output): at 0.6
#   colocated 0.671, fixed_1_1 0.956, fixed_1_3 0.012, distserve 1.037, splitwise 1.034, pd_serve 0.620,
#   static_best / oracle_dp 1.038; at 0.7 colocated 0.720, fixed_1_1 0.989, distserve 1.193, splitwise 1.205,
#   pd_serve 0.449, static_best / oracle_dp 1.209 (splitwise below them on every episode). Not at 0.8 / 1.0:
#   there Splitwise's overflow rule passes both oracles, which search role splits under the balance rule only
#   (splitwise 1.358 / 1.475 against oracle_dp 1.356 / 1.402), so oracle_dp is no bound there. At 0.5 every
#   split with a prefill pool is within 0.005 of the oracle (0.866, 2 episodes); under MLPerf's interactive
#   SLOs at 0.4 / 0.5 distserve is within 0.001 of it.
# - Mooncake conversation (Kimi's real trace, 12k-token mean prompts, 343-token mean output): the best static
#   split is all-colocated or within 0.4% of it at every load and SLO tried (MLPerf Server 0.5-1.5, MLPerf
#   interactive 0.3 / 0.5, DistServe summarization 0.8 / 1.2; 2 episodes), so colocation, the naive reference,
#   is within 0.001 of oracle_dp and normalized scores are huge there: read goodput per GPU. The heuristics
#   separate on it (4 episodes, at a6fc06d): at 1.0 colocated 0.2815, fixed_1_1 0.265, fixed_1_3 0.129,
#   distserve 0.280, splitwise 0.278, pd_serve 0.180, static_best / oracle_dp 0.2818; at 1.5 colocated 0.431,
#   fixed_1_1 0.374, distserve 0.412, splitwise 0.405, pd_serve 0.106, static_best / oracle_dp 0.432.
_DG = "servegym/Disaggregation-v0"
_TRANSFER_DG = (
    # (trace, loads)
    ("agentic-v1", (0.6, 0.7)),
    (_MOONCAKE, (1.0, 1.5)),
)
TRANSFER_SCENARIOS_DG: list[Scenario] = [
    Scenario(
        id=f"disaggregation/transfer/{_tid(trace)}/llama3.1-8b-h100x8/load{load}/slo_mlperf/v1",
        env_id=_DG, trace=trace, env_kwargs={"load": load, "split": "all", "shift_trace": None},
        episodes=4, quick_episodes=1, quick_kwargs={"phases": 2, "phase_s": 60.0}, track="transfer",
        in_quick=False,
    ) for trace, loads in _TRANSFER_DG for load in loads
]
TRANSFER_SCENARIOS += TRANSFER_SCENARIOS_DG
SCENARIOS += TRANSFER_SCENARIOS


def scenarios_for(envs_filter: list[str] | None) -> list[Scenario]:
    """Registered scenarios of the selected environments (any name form of
    ``envs.options.resolve_env_id``: ``servegym/KVAdmission-v0``, ``KVAdmission``, ``kv_admission``).

    Raises ``ValueError`` naming an unknown environment or one without scenarios.
    """
    if not envs_filter:
        return list(SCENARIOS)
    from envs.options import resolve_env_id, short_name

    known = {s.env_id for s in SCENARIOS}
    wanted = set()
    for name in envs_filter:
        env_id = resolve_env_id(name)
        if env_id not in known:
            raise ValueError(f"{name!r} ({env_id}) has no leaderboard scenarios; environments with "
                             f"some: {', '.join(sorted(short_name(e) for e in known))}")
        wanted.add(env_id)
    return [s for s in SCENARIOS if s.env_id in wanted]


def held_out_windows(vec: Any) -> int | None:
    """Distinct episode windows a built environment holds at each value of its sweep (the
    held-out part of a scenario; an episode k >= this count replays window k mod count):
    Disaggregation its windows per load level (``episodes_per_load``), PrefixEviction its
    sequential windows, KVAdmission, Routing and MultiCluster their workload rows, Autoscale its
    arrival windows, ExpertPlacement its recorded episode starts (or generated episodes); None for
    an environment whose episodes are not windows."""
    per_value = getattr(getattr(vec, "config", None), "episodes_per_load", None)
    if per_value is not None:  # Disaggregation: its workload rows are windows x load levels
        return int(per_value)
    built = getattr(vec, "built", None)
    if built is not None and hasattr(built, "starts"):
        return int(len(built.starts))
    scenario = getattr(vec, "scenario", None)
    workload = getattr(scenario, "workload", None)
    if workload is not None and hasattr(workload, "arrival_s"):
        return int(workload.arrival_s.shape[0])
    arrivals = getattr(scenario, "arrivals", None)  # Autoscale: arrivals per bin [W, T]
    if isinstance(arrivals, np.ndarray):
        return int(arrivals.shape[0])
    load = getattr(getattr(vec, "sim", None), "load", None)  # ExpertPlacement
    if load is not None and hasattr(load, "n_windows"):
        return int(load.n_windows)
    return None


def windows_note(episodes: int, windows: int | None, part: str = "held-out") -> str:
    """What an output says when its ``episodes`` replay fewer distinct windows (of the trace
    ``part``: held-out, training ...) than episodes (each replay is not a new sample: issue 21);
    empty otherwise. Not an error: a stochastic policy may replay a window on purpose."""
    if windows is None or windows >= episodes:
        return ""
    return (f"{episodes} episodes replay {windows} distinct {part} window(s): {windows} independent "
            f"sample(s), not {episodes}")


class TraceNameClash(ValueError):
    """Two ``--trace`` files would give the same scenario ids (the same file twice, or two files
    of one name in different folders)."""


def user_trace_scenarios(paths: list[str], envs_filter: list[str] | None) -> list[Scenario]:
    """The selected environments' scenarios replayed on each user trace file; a file no policy
    trained on is held out as a whole (``split=all``; ``Scenario.training_may_see`` says so, not the
    environment's train/held-out split of its own traces). Their ids name the file by its name
    (``<env>/user:<name>/...``), so ``FileNotFoundError`` for a missing file and ``TraceNameClash``
    for one given twice or two files of the same name (their results would share ids)."""
    out = []
    seen: dict[str, str] = {}
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"--trace {path}: no such file")
        if p.name in seen:
            first = seen[p.name]
            if Path(first).resolve() == p.resolve():
                raise TraceNameClash(f"--trace {path}: given twice (as {first} and {path})")
            raise TraceNameClash(f"--trace {first} and --trace {path}: both files are named {p.name}, which "
                                 f"names their scenarios (user:{p.name}); give files with different names")
        seen[p.name] = path
        for base in scenarios_for(envs_filter):
            if SCORING[base.env_id].trace_kind != "requests" or base.track != "main":
                continue
            parts = base.id.split("/")
            parts[1] = f"user:{p.name}"
            out.append(replace(base, id="/".join(parts), trace=str(p),
                               env_kwargs={**base.env_kwargs, "split": "all"}))
    return out


@dataclass
class PolicyRun:
    """One policy's episodes on one scenario."""

    policy: str
    episodes: list[dict[str, float]]
    extras: list[dict[str, Any]]
    call_s: np.ndarray
    wall_s: float
    windows: int | None = None  # distinct windows the scenario's held-out part holds (None: not windowed)


@dataclass
class ScenarioResult:
    """Every policy's run on one scenario (``skipped``: why none ran, e.g. a missing trace)."""

    scenario: Scenario
    runs: list[PolicyRun] = field(default_factory=list)
    skipped: str = ""
    # shard group -> wall seconds of each shard run ahead of the runs (``--ray`` only; timing.json)
    shard_s: dict[str, list[float]] = field(default_factory=dict)
