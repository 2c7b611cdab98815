"""Reference learned agents (``--policy zoo``), kept with the command that trained them.

``RECIPES`` says how each checkpoint beside this file was trained (``python -m agents.zoo train``
re-runs them); ``README.md`` here records the results. An environment has a zoo entry only once
its checkpoint is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traces.moe import EXPERT_LOAD_VERSION

HERE = Path(__file__).parent
# Routing-v0's training distribution (agents.scenarios.TRAINING_WORKLOADS; a test keeps them equal),
# trace files relative to the repository root.
ROUTING_WORKLOADS = ("azure_conv-v1", "mooncake_conv-v1", "../shared/traces/azure_llm_2023_conv.csv",
                     "../shared/traces/mooncake_conversation.jsonl")


@dataclass(frozen=True)
class Recipe:
    """A zoo checkpoint: its file name here, the ``train.py`` arguments that reproduce it, and
    the versioned trace it was trained on (a built-in generator as ``NAME-vN``, see
    ``traces.builtin``, or the file); the environment's version is in its id (``-v0``)."""

    file: str
    train_args: tuple[str, ...]
    trace: str

    @property
    def on_distribution(self) -> bool:
        """Trained on a workload distribution (an env ``workloads=`` mixture, envs.core.mixture),
        so the leaderboard's transfer track, whose families that distribution never holds, scores
        it; an agent of one trace is scored on the main track only."""
        return any(a.startswith("workloads=") for a in self.train_args)


RECIPES: dict[str, Recipe] = {
    # `python train.py` with its defaults (MaskablePPO, 300k steps, 16 envs, seed 0).
    "servegym/KVAdmission-v0": Recipe("kv_admission_ppo.zip", (), "azure_conv-v1"),
    # MaskablePPO, 4M steps, 64 envs, seed 0, training days of `bursty` (both slo_penalty values).
    "servegym/Autoscale-v0": Recipe("autoscale_ppo.zip", (
        "--timesteps", "4000000", "--n-envs", "64", "--seed", "0"), "bursty-v1"),
    # DAgger from Belady's choice among the sampled leaf candidates (evict_leaves_only, the
    # default; agents/imitation.py; relaxed targets: any block not reused within 4x capacity),
    # 100k labelled decisions, no RL steps, 16 envs, seed 0, on PrefixEviction's training
    # distribution (agents.scenarios.TRAINING_WORKLOADS: each episode draws the mooncake_conv
    # generator or the real Mooncake conversation trace's training part, first 70%), capacities
    # 1/5/10/25% of each part's distinct blocks. Seeds 1-2 of the same command: issue 21's notes.
    "servegym/PrefixEviction-v0": Recipe("prefix_eviction_dagger.zip", (
        "--env-kwargs", "workloads=('mooncake_conv-v1','../shared/traces/mooncake_conversation.jsonl')",
        "--imitate", "100000", "--timesteps", "0", "--seed", "0"),
        "mooncake_conv-v1+../shared/traces/mooncake_conversation.jsonl"),
    # Issue 21 (the transfer track): MaskablePPO (HYPERPARAMS), 1,720,320 steps (~600 s on one core of the
    # GPU machine's host: 1,460 steps/s measured here on a loaded 2-core box, x2), 16 envs, seed 0, on the
    # training distribution agents.scenarios.TRAINING_WORKLOADS["servegym/Routing-v0"] (Azure and Mooncake
    # conversation generators, 2 generator seeds each, and the training parts of the real Azure and
    # Mooncake conversation traces), each episode at a load drawn from 0.3-2.0 of that part's capacity;
    # the TTFT tail-bound reward (5 x the TTFT SLO) and the capacity/SLO-relative observation. A new file
    # name: the checkpoint of the earlier observation (routing_ppo.zip) cannot read this one.
    "servegym/Routing-v0": Recipe("routing_ppo_transfer.zip", (
        "--env-kwargs", "workloads=" + ",".join(ROUTING_WORKLOADS), "load=(0.3,0.6,0.9,1.2,1.6,2.0)",
        "workload_seeds=2", "--timesteps", "1720320", "--seed", "0"), "+".join(ROUTING_WORKLOADS)),
    # Generated expert load (DeepSeek-V3 on 32 H200s), training seeds and drifts 0.005/0.02/0.08.
    "servegym/ExpertPlacement-v0": Recipe("expert_placement_ppo.zip", ("--timesteps", "120000", "--seed", "0"),
                                          f"expert_load-v{EXPERT_LOAD_VERSION}"),
    # MaskablePPO with the keep-role prior (agents.sticky_roles; HYPERPARAMS), 500k steps, 16
    # envs, seed 0, training windows (first 70%) of the default phases: Azure conversation and
    # Azure code generators alternating every 120 s, loads 0.5 and 0.8, MLPerf SLOs.
    # Time: the env is the bottleneck (one core: about 1.9 h at 70-80 steps/s). Measured on the
    # shared 2-core box (load average 2.3-2.6, no idle core), 2,304 steps: 110 steps/s in one
    # process, 92 with --vec-procs 2 (two workers on one free core). Measured on the GPU machine's
    # 16 idle cores with --vec-procs 16: 49,152 steps in 244 s of training, 201 steps/s, so about
    # 41 minutes for the 500k steps (the 1,000-1,500 steps/s estimated from the env's speed alone
    # did not hold). Same results for any --vec-procs.
    "servegym/Disaggregation-v0": Recipe("disaggregation_ppo.zip", (
        "--timesteps", "500000", "--n-envs", "16", "--seed", "0"), "azure_conv-v1+azure_code-v1"),
}


def load_recipe(path: Path) -> tuple[str, Recipe]:
    """A recipe JSON as ``python -m agents.sweep`` writes it (``best_recipe.json``: ``env``,
    ``file``, ``train_args``, ``trace``) -> (environment id, ``Recipe``). Raises ``ValueError``
    naming the file and the missing or mistyped field."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"recipe {path}: {err}") from None
    for key, typ in (("env", str), ("file", str), ("train_args", list), ("trace", str)):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, typ):
            raise ValueError(f"recipe {path}: field {key!r} missing or not a {typ.__name__}")
    if not all(isinstance(x, str) for x in data["train_args"]):
        raise ValueError(f"recipe {path}: field 'train_args' must be a list of strings")
    return data["env"], Recipe(data["file"], tuple(data["train_args"]), data["trace"])


# Environment id -> its committed checkpoint (``--policy zoo``).
ZOO: dict[str, Path] = {}
for _env_id, _recipe in RECIPES.items():
    if (HERE / _recipe.file).exists():
        ZOO[_env_id] = HERE / _recipe.file
