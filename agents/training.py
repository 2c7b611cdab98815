"""SB3 training glue: per-environment defaults, domain-metric logging, atomic checkpoints."""

from __future__ import annotations

import ast
import copy
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from agents.env_kwargs import has_infinite
from agents.sb3_policy import algo_class
from envs.prefix_eviction.kernels import N_CAND as PE_CAND
from envs.prefix_eviction.kernels import N_GLOBAL as PE_GLOBAL
from traces.checks import is_integer

# Per (environment, algorithm) hyperparameters; anything not listed uses SB3's defaults.
HYPERPARAMS: dict[str, dict[str, dict[str, Any]]] = {
    "servegym/KVAdmission-v0": {
        # Goodput arrives hundreds of iterations after the admission that earns it: long horizon.
        # MaskablePPO's rollouts: 64 envs x 64 steps (N_ENVS below; the same 4,096-step rollout as
        # 16 x 256, in a quarter of the policy calls; issue 16). Held-out SLO attainment of
        # `python train.py`, seeds 0-4 (300k steps, 2-core box, 2026-12-01): 64 x 64 0.654/0.727/0.744/
        # 0.738/0.765 (mean 0.726, sd 0.043), 16 x 256 0.686/0.736/0.675/0.617/0.704 (mean 0.684, sd 0.044),
        # with 15% less CPU in the training process (48.0 s against 56.9 s, seeds 0-2 / 1-2 in one window). Not further: 256 envs x 16 steps trained to a far worse
        # policy, 0.366 against 0.693 (seed 0, one core of the GPU machine's host; GAE over 16 steps
        # cannot see goodput that arrives hundreds of iterations later), and minibatches of 2,048 (half
        # the gradient steps) collapsed to 0.350 (32 x 128, seed 0) and 0.274 (64 x 64, seed 1), as did
        # 4 epochs in place of 5 with the [128, 128] net (64 x 64, seed 0: 0.327; seed 1: 0.734).
        "ppo": dict(n_steps=256, batch_size=1024, gamma=0.995, gae_lambda=0.95, ent_coef=0.01,
                    learning_rate=3e-4, n_epochs=5, policy_kwargs=dict(net_arch=[128, 128])),
        # [64, 64] (SB3's default MLP) and 4 epochs: the update 0.66x and 0.8x again per rollout
        # (agents.profile_train), and a higher held-out score (see TIMESTEPS below).
        "maskable-ppo": dict(n_steps=64, batch_size=1024, gamma=0.995, gae_lambda=0.95,
                             ent_coef=0.01, learning_rate=3e-4, n_epochs=4,
                             policy_kwargs=dict(net_arch=[64, 64])),
        "dqn": dict(learning_rate=1e-4, buffer_size=200_000, learning_starts=5_000, batch_size=256,
                    gamma=0.995, train_freq=4, target_update_interval=2_000,
                    exploration_fraction=0.3, exploration_final_eps=0.02,
                    policy_kwargs=dict(net_arch=[128, 128])),
    },
}
HYPERPARAMS["servegym/ExpertPlacement-v0"] = {
    # A rebalance is one sub-step per layer and its reward lands when it completes; placements
    # persist, so the horizon spans several rebalances.
    "maskable-ppo": dict(n_steps=512, batch_size=2048, gamma=0.99, gae_lambda=0.95, ent_coef=0.01,
                         learning_rate=3e-4, n_epochs=5, policy_kwargs=dict(net_arch=[128, 128])),
}
DEFAULT_ALGO = {"servegym/KVAdmission-v0": "maskable-ppo", "servegym/ExpertPlacement-v0": "maskable-ppo"}
# train.py's --n-envs default per (environment, algorithm); DEFAULT_N_ENVS where not listed.
DEFAULT_N_ENVS = 16
N_ENVS: dict[str, dict[str, int]] = {"servegym/KVAdmission-v0": {"maskable-ppo": 64}}  # x 64 steps: HYPERPARAMS


def default_n_envs(env_id: str, algo: str) -> int:
    """``train.py``'s number of envs for ``algo`` on ``env_id`` when ``--n-envs`` is not given."""
    return N_ENVS.get(env_id, {}).get(algo, DEFAULT_N_ENVS)


# train.py's --timesteps default per (environment, algorithm); DEFAULT_TIMESTEPS where not listed.
# KVAdmission-v0's MaskablePPO (net [64, 64], 4 epochs: HYPERPARAMS): 200k steps. Issue 16's grid on the GPU
# machine's host (agents/time_train_grid.sh, one pinned core per run, seeds 0-4, held-out SLO attainment):
# 0.789/0.714/0.774/0.824/0.709 (mean 0.762) in 58.4 s median wall, against 0.654/0.727/0.701/0.690/0.765
# (mean 0.707) in 67.2 s for 300k steps of [128, 128] x 5 epochs; the same [64, 64] x 4 epochs run on to
# 250k collapsed on seed 4 (0.267), so longer is not safer. Seeds 5-9 (a second grid, 47.0 s against 63.2 s):
# 0.772/0.703/0.759/0.533/0.711 (mean 0.696) against 0.652/0.767/0.686/0.733/0.772 (mean 0.722); over the ten
# seeds 0.729 against 0.715, with a wider spread.
DEFAULT_TIMESTEPS = 300_000
TIMESTEPS: dict[str, dict[str, int]] = {"servegym/KVAdmission-v0": {"maskable-ppo": 200_000}}


# train.py's recipe when nothing asks for RL steps or a set length (none of --timesteps, --imitate,
# --imitate-kwargs, --init, --resume, --snapshots, --critic-warmup; train.resolve_length): DAgger from the env's
# privileged teacher (agents/imitation.py) and no RL steps. KVAdmission-v0 (agents/kv_admission_teacher.py: the
# per-episode best of the heuristics' schedules, as the zoo agent's recipe, on the default trace): 8,192
# decisions, 16 envs, 10 epochs of minibatches of 512. Held-out SLO attainment at loads 1.1 / 1.3 / 1.5 (the
# README's first command, 8 episodes, seed 10000; seeds 0-9, one process per core of the GPU machine's host,
# 2026-12-03): mean 0.953 / 0.817 / 0.726 (mean over the loads 0.832, sd 0.005), against the 200k-step MaskablePPO
# default it replaces, seeds 0-5 in the same grid: 0.934 / 0.745 / 0.554 (0.744, sd 0.048); `sjf` 0.955 / 0.809 /
# 0.660, `random` 0.952 / 0.750 / 0.545. 25 s wall alone on an idle core (the PPO default: about 50 s).
DEFAULT_IMITATION: dict[str, dict[str, dict[str, Any]]] = {
    "servegym/KVAdmission-v0": {"maskable-ppo": dict(imitate=8192, imitate_kwargs=("epochs=10", "batch_size=512"),
                                                     n_envs=16)},
}


def default_imitation(env_id: str, algo: str) -> dict[str, Any] | None:
    """``train.py``'s DAgger recipe for ``algo`` on ``env_id`` when no training length is given: a dict with
    ``imitate`` (decisions), ``imitate_kwargs`` (``--imitate-kwargs`` items) and ``n_envs``; None where the
    default is RL alone (``default_timesteps``)."""
    recipe = DEFAULT_IMITATION.get(env_id, {}).get(algo)
    return None if recipe is None else dict(recipe)


def default_timesteps(env_id: str, algo: str) -> int:
    """``train.py``'s RL steps for ``algo`` on ``env_id`` when ``--timesteps`` is not given."""
    return TIMESTEPS.get(env_id, {}).get(algo, DEFAULT_TIMESTEPS)
HYPERPARAMS["servegym/Routing-v0"] = {
    # A request's outcome arrives tens to hundreds of routing decisions after it was routed. A
    # plain MLP over all replicas beat a permutation-equivariant per-replica scorer (training SLO
    # attainment 0.88 vs 0.85 after 1.7M steps, 3 seeds each).
    "maskable-ppo": dict(n_steps=256, batch_size=1024, gamma=0.99, gae_lambda=0.95, ent_coef=0.01,
                         learning_rate=3e-4, n_epochs=5, policy_kwargs=dict(net_arch=[128, 128])),
}
DEFAULT_ALGO["servegym/Routing-v0"] = "maskable-ppo"
HYPERPARAMS["servegym/Autoscale-v0"] = {
    # A 30-s decision whose cold start pays off over minutes; 2880 decisions a day.
    "maskable-ppo": dict(n_steps=256, batch_size=4096, gamma=0.99, gae_lambda=0.95, ent_coef=0.002,
                         learning_rate=3e-4, n_epochs=10, policy_kwargs=dict(net_arch=[128, 128])),
    "ppo": dict(n_steps=256, batch_size=4096, gamma=0.99, gae_lambda=0.95, ent_coef=0.002,
                learning_rate=3e-4, n_epochs=10, policy_kwargs=dict(net_arch=[128, 128])),
}
DEFAULT_ALGO["servegym/Autoscale-v0"] = "maskable-ppo"
HYPERPARAMS["servegym/Disaggregation-v0"] = {
    # A 10-s role decision whose warm-up (~22 s) pays off over the next phases; requests finish
    # seconds after the interval that served them. 48 decisions per default episode. The plain
    # MLP policy changes 183 roles per episode at the start and reaches 0.3 goodput per GPU after
    # 4k steps; the keep-role prior of agents.sticky_roles (keep_logit 5: 3 changes per episode)
    # starts near colocated serving (10 on the training windows) and explores one instance at a
    # time (envs/disaggregation/README.md, Learning). No entropy bonus: it would pull the
    # role logits back to uniform against the prior.
    "maskable-ppo": dict(policy="agents.sticky_roles:StickyRolePolicy", n_steps=48, batch_size=192,
                         gamma=0.95, gae_lambda=0.95, ent_coef=0.0, learning_rate=3e-4, n_epochs=10,
                         policy_kwargs=dict(net_arch=[128, 128], keep_logit=5.0)),
}
DEFAULT_ALGO["servegym/Disaggregation-v0"] = "maskable-ppo"



def parse_hyperparams(items: list[str] | None, flag: str = "--hyperparams") -> dict[str, Any]:
    """``KEY=VALUE`` overrides of the algorithm's keyword arguments (``--hyperparams``).

    Values are Python literals (``3e-4``, ``[64, 64]``, ``True``); a dotted key sets one entry of
    a dict argument (``policy_kwargs.net_arch=[64,64]``). Raises ``ValueError`` naming the item
    that is not ``KEY=VALUE``, whose value is not a literal or holds a number beyond a float's range,
    prefixed with ``flag`` (the option the items came from; empty for none).
    """
    where = f"{flag} " if flag else ""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where}{item!r}: expected KEY=VALUE")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError(f"{where}{item!r}: {raw!r} is not a Python literal "
                             "(quote strings: key='text')") from None
        if has_infinite(value):  # learning_rate=1e400 (inf) trained a model that finished no request
            raise ValueError(f"{where}{item!r}: a number beyond a float's range (numbers must be finite)")
        problem = hyperparam_problem(key.strip(), value) if flag == "--hyperparams" else None
        if problem:  # before any environment is built
            raise ValueError(f"{flag} {key.strip()}={value!r}: {problem}")
        out[key.strip()] = value
    return out


def merge_hyperparams(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; ``a.b=v`` sets ``base['a']['b']`` (copies, never
    mutates ``base``)."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            child = node.get(part)
            if child is not None and not isinstance(child, dict):
                raise ValueError(f"--hyperparams {key}: {part} is {child!r}, not a dict")
            node = node.setdefault(part, {}) if child is None else child
        node[leaf] = value
    return out


def _init_keywords(cls: type) -> set[str]:
    """Named parameters of ``cls.__init__``, and of its bases' while each passes ``**kwargs`` on
    (a subclass such as ``MaskedDQN(*args, double_q, **kwargs)`` takes all of DQN's)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


# Policies that are small MLPs (SB3's MlpPolicy, its tensor-only MaskablePPO variant, and servegym's
# own per-candidate scorer, keep-role prior and dueling Q-network): ``--device auto`` trains them on
# the CPU, as SB3 advises ("PPO is meant to be run primarily on the CPU, especially when you are not
# using a CNN", https://stable-baselines3.readthedocs.io/en/master/modules/ppo.html, Notes).
MLP_POLICIES = frozenset({
    "MlpPolicy", "agents.scorer_policy:ItemScorerPolicy", "agents.sticky_roles:StickyRolePolicy",
    "agents.masked_dqn:DuelingItemDQNPolicy", "agents.masked_policy:MaskedMlpPolicy",
})
DEVICES = ("auto", "cpu", "cuda")


def policy_spec(algo: str, env_id: str, overrides: dict[str, Any] | None = None) -> str:
    """The policy ``make_model`` builds for ``algo`` on ``env_id``: ``"MlpPolicy"`` or the
    ``"module:Class"`` of a custom policy (``HYPERPARAMS`` with ``overrides`` on top)."""
    params = merge_hyperparams(HYPERPARAMS.get(env_id, {}).get(algo, {}), overrides or {})
    return str(params.get("policy", "MlpPolicy"))


def resolve_device(requested: str, policy: str) -> str:
    """The torch device to train ``policy`` (a ``policy_spec``) on: ``"cpu"`` or ``"cuda"``.

    ``"auto"`` is ``"cpu"`` for the small MLPs of ``MLP_POLICIES`` (SB3's advice) and ``"cuda"``
    for any other policy where torch sees a CUDA device. Raises ``ValueError`` (one line) for
    ``"cuda"`` without a CUDA device and for a name outside ``DEVICES``.
    """
    import torch as th

    if requested not in DEVICES:
        raise ValueError(f"--device {requested!r}: expected one of {', '.join(DEVICES)}")
    if requested == "cuda" and not th.cuda.is_available():
        raise ValueError(f"--device cuda: torch {th.__version__} sees no CUDA device "
                         "(torch.cuda.is_available() is False); use --device cpu or auto")
    if requested == "auto":
        return "cpu" if policy in MLP_POLICIES or not th.cuda.is_available() else "cuda"
    return requested


def make_model(algo: str, env_id: str, vec: Any, seed: int, tensorboard_log: str | None,
               overrides: dict[str, Any] | None = None, device: str = "cpu"):
    """A fresh SB3 model with the environment's ``HYPERPARAMS`` and ``overrides`` on top (see
    ``parse_hyperparams``), its tensors on ``device`` (``"cpu"``/``"cuda"``, see
    ``resolve_device``). Raises ``ValueError`` for an override the algorithm does not take."""
    params = merge_hyperparams(HYPERPARAMS.get(env_id, {}).get(algo, {}), overrides or {})
    policy = params.pop("policy", "MlpPolicy")  # or "module:Class" of a custom policy
    if policy == "MlpPolicy" and algo == "maskable-ppo" and _discrete_box(vec):
        # sb3-contrib's MLP policy, bit for bit, without distribution objects in the hot loop
        policy = "agents.masked_policy:MaskedMlpPolicy"
    from stable_baselines3.common.policies import BasePolicy

    if not isinstance(policy, str) and not (isinstance(policy, type) and issubclass(policy, BasePolicy)):
        raise ValueError(f"--hyperparams policy={policy!r}: expected a policy name ('MlpPolicy') or "
                         "'module:Class' of a custom policy")
    if isinstance(policy, str) and ":" in policy:
        policy = _import_policy(policy)
    cls = algo_class(algo)
    # seed, logging and device are train.py's own options, not hyperparameters.
    accepted = _init_keywords(cls) - {"self", "policy", "env", "seed", "verbose", "tensorboard_log", "device"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ValueError(f"--hyperparams {', '.join(unknown)}: not keyword arguments of "
                         f"{cls.__name__} (it takes {', '.join(sorted(accepted))})")
    # n_steps=0 or 1.5 were tracebacks inside SB3's constructor or learn; gamma=2 trained silently
    check_hyperparams(params)
    try:
        model = cls(policy, vec, seed=seed, verbose=0, tensorboard_log=tensorboard_log, device=device, **params)
    except (TypeError, ValueError, RuntimeError) as err:
        if not any(k == "policy_kwargs" or k.startswith("policy_kwargs.") for k in overrides or {}):
            raise  # not the user's policy arguments: a bug, with its traceback
        # policy_kwargs.foo=1, activation_fn=1 or policy_kwargs=5 were tracebacks from the policy's constructor
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"--hyperparams policy_kwargs={params.get('policy_kwargs')!r}: {cls.__name__} cannot "
                         f"build its policy with them ({type(err).__name__}: {first})") from None
    from agents.masked_policy import MaskedMlpPolicy, portable_policy_class

    if type(model.policy) is MaskedMlpPolicy:
        # the checkpoint names sb3-contrib's class, which computes the same function: plain sb3-contrib loads it
        model.policy_class = portable_policy_class(model.policy)
    return model


def _import_policy(spec: str) -> type:
    """The class ``spec`` (``"module:Class"``) names; ``ValueError`` (one line) where it names none."""
    import importlib

    from stable_baselines3.common.policies import BasePolicy

    module, _, name = spec.partition(":")
    if not module or not name or ":" in name:
        raise ValueError(f"--hyperparams policy={spec!r}: expected 'module:Class'")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as err:
        raise ValueError(f"--hyperparams policy={spec!r}: cannot import {module!r} ({err})") from None
    except AttributeError:
        raise ValueError(f"--hyperparams policy={spec!r}: module {module!r} has no {name!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, BasePolicy)):
        raise ValueError(f"--hyperparams policy={spec!r}: not an SB3 policy class (stable_baselines3 BasePolicy)")
    return cls


def _discrete_box(vec: Any) -> bool:
    from gymnasium import spaces

    return isinstance(vec.action_space, spaces.Discrete) and isinstance(vec.observation_space, spaces.Box)


# Hyperparameters that count something (steps per env per rollout, minibatch size, epochs, replay capacity, steps
# between target updates: SB3's PPO and DQN signatures); each must be a positive integer.
COUNT_HYPERPARAMS = frozenset({"n_steps", "batch_size", "n_epochs", "buffer_size", "target_update_interval"})
# The valid range of each well-known real-valued hyperparameter of SB3's PPO, MaskablePPO and DQN: (low, high,
# low inclusive, high inclusive), None = unbounded. SB3 checks none of these (learning_rate <= 0 only, when it
# builds the optimizer; gamma=2 trained on a return that grows without bound). A discount and GAE's lambda are
# in [0, 1] (Schulman et al. 2016); clip ranges, learning rates, gradient norms and target KL are > 0; loss
# weights (ent_coef, vf_coef) are >= 0; DQN's soft-update tau is in (0, 1] and its epsilons and exploration
# fraction are in [0, 1]. A schedule (a callable, from the Python API) is not checked.
HYPERPARAM_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "gamma": (0.0, 1.0, True, True), "gae_lambda": (0.0, 1.0, True, True),
    "clip_range": (0.0, None, False, False), "clip_range_vf": (0.0, None, False, False),
    "learning_rate": (0.0, None, False, False), "max_grad_norm": (0.0, None, False, False),
    "target_kl": (0.0, None, False, False), "ent_coef": (0.0, None, True, False), "vf_coef": (0.0, None, True, False),
    "tau": (0.0, 1.0, False, True), "exploration_fraction": (0.0, 1.0, True, True),
    "exploration_initial_eps": (0.0, 1.0, True, True), "exploration_final_eps": (0.0, 1.0, True, True),
}
# May be None (SB3: no value-function clipping, no KL early stop, no gradient clipping in imitation).
_NONE_OK = frozenset({"clip_range_vf", "target_kl"})


def _range_text(low: float | None, high: float | None, low_in: bool, high_in: bool) -> str:
    if high is None:
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def hyperparam_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not a valid ``key`` (an SB3 keyword argument), or None: the one check of
    ``COUNT_HYPERPARAMS`` (integers >= 1), ``HYPERPARAM_RANGES`` and the dotted ``policy_kwargs.net_arch``
    (:func:`net_arch_problem`); other keys are not checked here."""
    if key == "policy_kwargs.net_arch":
        return net_arch_problem(value)
    if key in COUNT_HYPERPARAMS:
        if not is_integer(value) or value < 1:
            return "expected an integer >= 1"
        return None
    if key not in HYPERPARAM_RANGES or callable(value) or (value is None and key in _NONE_OK):
        return None
    low, high, low_in, high_in = HYPERPARAM_RANGES[key]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    above = number and (value >= low if low_in else value > low)
    below = number and (high is None or (value <= high if high_in else value < high))
    if not (above and below):
        return f"expected a number {_range_text(low, high, low_in, high_in)}"
    return None


def net_arch_problem(net_arch: Any) -> str | None:
    """Why ``net_arch`` is not an SB3 MLP layout, or None: a list of layer widths (integers >= 1) or a
    dict ``{"pi": [...], "vf": [...]}`` of two such lists (SB3's ``MlpExtractor``). A width of 0 built a
    layer of no units: the network's output was its last bias alone, and it trained without an error."""
    def widths_ok(x: Any) -> bool:
        return isinstance(x, (list, tuple)) and all(is_integer(w) and w >= 1 for w in x)

    if isinstance(net_arch, dict):
        if set(net_arch) - {"pi", "vf", "qf"} or not all(widths_ok(v) for v in net_arch.values()):
            return "expected a dict of 'pi'/'vf' (or 'qf') lists of layer widths, integers >= 1"
        return None
    return None if widths_ok(net_arch) else "expected a list of layer widths, integers >= 1 (or {'pi': [...], 'vf': [...]})"


def check_hyperparams(params: dict[str, Any]) -> None:
    """``ValueError("--hyperparams KEY=VALUE: expected ...")`` for the first of ``params`` (keyword
    arguments of an SB3 algorithm) that :func:`hyperparam_problem` refuses, or whose
    ``policy_kwargs["net_arch"]`` :func:`net_arch_problem` refuses."""
    for key, value in params.items():
        problem = hyperparam_problem(key, value)
        if problem:
            raise ValueError(f"--hyperparams {key}={value!r}: {problem}")
    kwargs = params.get("policy_kwargs")
    if isinstance(kwargs, dict) and "net_arch" in kwargs:
        problem = net_arch_problem(kwargs["net_arch"])
        if problem:
            raise ValueError(f"--hyperparams policy_kwargs.net_arch={kwargs['net_arch']!r}: {problem}")


def rollout_steps(model: Any) -> tuple[int, str]:
    """``(steps, how)``: the environment steps one rollout of the SB3 ``model`` collects, and how (``"n_steps
    256 x 16 envs"``). ``learn(total_timesteps=T)`` collects whole rollouts until ``num_timesteps >= T``, so it
    runs ``rounded_timesteps(T, steps)`` steps (SB3's on-policy ``collect_rollouts`` fills ``n_steps`` per env;
    the off-policy one ``train_freq`` steps per env when its unit is steps)."""
    n = int(model.n_envs)
    if hasattr(model, "n_steps"):
        return int(model.n_steps) * n, f"n_steps {int(model.n_steps)} x {n} envs"
    freq = getattr(model, "train_freq", None)
    if freq is not None and getattr(freq.unit, "value", None) == "step":
        return int(freq.frequency) * n, f"train_freq {int(freq.frequency)} x {n} envs"
    return n, f"{n} envs"


def rounded_timesteps(timesteps: int, rollout: int) -> int:
    """``timesteps`` rounded up to whole rollouts of ``rollout`` steps (what SB3's ``learn`` runs)."""
    return -(-int(timesteps) // int(rollout)) * int(rollout)


def atomic_save(model: Any, path: Path, env_id: str | None = None, role: str | None = None) -> None:
    """Write a checkpoint so that a crash never leaves a half-written file at ``path``, with the
    observation version it is trained on (``agents.obs_version``: ``env_id``, role ``role``; env_id
    None = the id of ``model``'s environment, ``ValueError`` if it has none)."""
    from agents import obs_version

    env_id = env_id or obs_version.env_id_of(model.get_env())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.zip")
    model.save(tmp)
    obs_version.stamp_zip(tmp, env_id, role)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``: a reader (or a
    crash, or Ctrl-C) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ServeCallback(BaseCallback):
    """Domain metrics to TensorBoard (every key of the envs' episode ``metrics`` under serve/,
    means over the episodes that ended since the last dump) and periodic atomic checkpoints."""

    def __init__(self, checkpoint: Path, save_every: int, env_id: str | None = None):
        super().__init__()
        self.checkpoint, self.env_id = checkpoint, env_id
        self.save_every = save_every
        self._since_save = 0
        self._episodes: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "metrics" in info:
                self._episodes.append(info["metrics"])
        self._since_save += self.training_env.num_envs
        if self._since_save >= self.save_every:
            atomic_save(self.model, self.checkpoint, self.env_id)
            self._since_save = 0
        return True

    def _on_rollout_end(self) -> None:
        if not self._episodes:
            return
        keys = sorted({k for ep in self._episodes for k in ep})
        for k in keys:
            vals = [ep[k] for ep in self._episodes if k in ep]
            self.logger.record(f"serve/{k}", float(np.nanmean(vals)))
        self._episodes.clear()

    def _on_training_end(self) -> None:
        self._on_rollout_end()
        atomic_save(self.model, self.checkpoint, self.env_id)


class SnapshotCallback(BaseCallback):
    """Copies of the model at chosen step counts (``train.py --snapshots``): ``DIR/steps_N.zip`` is the
    model after the first rollout's update that brings the run to N or more steps, the model a run of
    ``--timesteps N`` ends with (SB3's ``learn`` stops at the first rollout boundary at or past N; with
    constant learning rate and clip range, the hyperparameters of every ``HYPERPARAMS`` entry, nothing in
    the update depends on the total, so the two are equal parameter for parameter:
    tests/test_snapshots.py). A held-out learning curve for the cost of a save per snapshot. A resumed
    run keeps none for the steps its checkpoint had already passed."""

    def __init__(self, out: Path, steps: list[int], env_id: str | None = None):
        super().__init__()
        self.out, self.env_id = out, env_id
        self.due = sorted(set(steps))
        self.saved: dict[int, str] = {}

    def _save_due(self) -> None:
        while self.due and self.model.num_timesteps >= self.due[0]:
            n = self.due.pop(0)
            path = self.out / f"steps_{n}.zip"
            atomic_save(self.model, path, self.env_id)
            self.saved[n] = str(path)

    def _on_training_start(self) -> None:  # --resume: steps the checkpoint had passed get no snapshot
        passed = [n for n in self.due if n <= self.model.num_timesteps]
        if passed:  # said, not silently dropped
            print(f"--snapshots {' '.join(map(str, passed))}: not kept (the resumed checkpoint is at "
                  f"{self.model.num_timesteps} steps)", flush=True)
        self.due = [n for n in self.due if n > self.model.num_timesteps]

    def _on_rollout_start(self) -> None:  # after the previous rollout's update (SB3: collect, then train)
        self._save_due()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:  # a snapshot at the run's own total is its final model
        self._save_due()


class CriticWarmup(BaseCallback):
    """PPO's first ``steps`` RL steps train the value function only (``train.py --critic-warmup``): every
    policy parameter outside the value path (``mlp_extractor.value_net``, ``value_net``,
    ``vf_features_extractor``) is frozen (``requires_grad`` False: no gradient, so SB3's Adam and gradient
    clipping leave it as it is) through the update of each rollout that ends at or before ``steps`` steps.
    After behaviour cloning (``--imitate``) the actor imitates the teacher but the critic is untrained, so
    the first advantages are noise and an unfrozen update moves the imitated actor by that noise; fitting
    the critic to the imitated policy's own returns first is the critic warm-up of PPO fine-tuning from a
    cloned policy (Zheng et al. 2023, "Secrets of RLHF in Large Language Models Part I: PPO", critic
    pre-training). Raises ``ValueError`` at the start of training when the policy has no such value path
    (a custom policy names its parameters otherwise)."""

    VALUE_PREFIXES = ("mlp_extractor.value_net.", "value_net.", "vf_features_extractor.")

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.frozen: list[Any] = []

    def _on_training_start(self) -> None:
        if self.model.num_timesteps >= self.steps:
            return
        named = list(self.model.policy.named_parameters())
        if not any(n.startswith(self.VALUE_PREFIXES) for n, _ in named):
            raise ValueError(f"--critic-warmup: {type(self.model.policy).__name__} has no value-function "
                             f"parameters named {', '.join(self.VALUE_PREFIXES)}")
        self.frozen = [p for n, p in named if not n.startswith(self.VALUE_PREFIXES) and p.requires_grad]
        for param in self.frozen:
            param.requires_grad_(False)

    def _on_rollout_end(self) -> None:  # SB3 collects, then trains: this rollout's update is next
        if self.frozen and self.model.num_timesteps > self.steps:
            self._release()

    def _release(self) -> None:
        for param in self.frozen:
            param.requires_grad_(True)
        self.frozen = []

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:  # a run that ends inside the warm-up saves a trainable model
        self._release()


HYPERPARAMS["servegym/PrefixEviction-v0"] = {
    # One shared scorer per candidate block (agents/scorer_policy.py); an eviction pays off (or
    # costs) when the evicted block would have been reused, hundreds of decisions later.
    "maskable-ppo": dict(policy="agents.scorer_policy:ItemScorerPolicy", n_steps=256, batch_size=1024,
                         gamma=0.995, gae_lambda=0.95, ent_coef=0.005, learning_rate=3e-4, n_epochs=5,
                         policy_kwargs=dict(n_global=PE_GLOBAL, n_item=PE_CAND, hidden=64)),
}
DEFAULT_ALGO["servegym/PrefixEviction-v0"] = "maskable-ppo"
# Masked dueling DQN over the K candidates (agents/masked_dqn.py; Cold-RL's learner for NGINX).
HYPERPARAMS["servegym/PrefixEviction-v0"]["dueling-dqn"] = dict(
    policy="agents.masked_dqn:DuelingItemDQNPolicy", learning_rate=1e-4, buffer_size=200_000,
    learning_starts=5_000, batch_size=256, gamma=0.995, train_freq=4, target_update_interval=2_000,
    exploration_fraction=0.3, exploration_final_eps=0.02,
    policy_kwargs=dict(n_global=PE_GLOBAL, n_item=PE_CAND, hidden=64))
