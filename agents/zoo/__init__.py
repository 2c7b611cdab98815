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


@dataclass(frozen=True)
class Recipe:
    """A zoo checkpoint: its file name here, the ``train.py`` arguments that reproduce it, and
    the versioned trace it was trained on (a built-in generator as ``NAME-vN``, see
    ``traces.builtin``, or the file); the environment's version is in its id (``-v0``)."""

    file: str
    train_args: tuple[str, ...]
    trace: str


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
    # Real Mooncake conversation trace, training part (first 70%), loads 0.6/0.8/1.0, seed 0.
    "servegym/Routing-v0": Recipe("routing_ppo.zip", (
        "--trace", "../shared/traces/mooncake_conversation.jsonl", "--env-kwargs", "load=(0.6,0.8,1.0)",
        "--timesteps", "1720320", "--seed", "0"), "../shared/traces/mooncake_conversation.jsonl"),
    # Generated expert load (DeepSeek-V3 on 32 H200s), training seeds and drifts 0.005/0.02/0.08.
    "servegym/ExpertPlacement-v0": Recipe("expert_placement_ppo.zip", ("--timesteps", "120000", "--seed", "0"),
                                          f"expert_load-v{EXPERT_LOAD_VERSION}"),
    # MaskablePPO with the keep-role prior (agents.sticky_roles; HYPERPARAMS), 500k steps, 16
    # envs, seed 0, training windows (first 70%) of the default phases: Azure conversation and
    # Azure code generators alternating every 120 s, loads 0.5 and 0.8, MLPerf SLOs.
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
