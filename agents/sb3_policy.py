"""An SB3 checkpoint (PPO, MaskablePPO, DQN or masked dueling DQN) behind the Policy protocol."""

from __future__ import annotations

import contextlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ALGOS = ("ppo", "maskable-ppo", "dqn", "dueling-dqn")


def algo_class(algo: str):
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import DQN, PPO

    from agents.masked_dqn import MaskedDQN

    table = {"ppo": PPO, "maskable-ppo": MaskablePPO, "dqn": DQN, "dueling-dqn": MaskedDQN}
    if algo not in table:
        raise ValueError(f"unknown algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    return table[algo]


def detect_algo(path: Path) -> str:
    """Which algorithm saved ``path``: from the policy class SB3 stores in the zip's data (a
    subclass, e.g. a custom MaskablePPO policy, counts as its base)."""
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.save_util import json_to_data
    from stable_baselines3.dqn.policies import DQNPolicy

    from agents.masked_dqn import DuelingItemDQNPolicy

    from agents.policy_base import PolicyFileError

    try:
        with zipfile.ZipFile(path) as z:
            cls = json_to_data(z.read("data").decode()).get("policy_class")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise PolicyFileError(f"{path}: not a stable-baselines3 checkpoint ({_first_line(err)})") from None
    # Most specific first: the dueling policy is a DQNPolicy, MaskablePPO's an ActorCriticPolicy.
    for base, algo in ((MaskableActorCriticPolicy, "maskable-ppo"), (DuelingItemDQNPolicy, "dueling-dqn"),
                       (DQNPolicy, "dqn"), (ActorCriticPolicy, "ppo")):
        if isinstance(cls, type) and issubclass(cls, base):
            return algo
    raise PolicyFileError(f"{path}: not a PPO, MaskablePPO, DQN or dueling DQN checkpoint of stable-baselines3")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_model(path: str | Path, algo: str | None = None, **kwargs: Any):
    """``algo_class(algo).load(path, **kwargs)`` (``algo`` None: :func:`detect_algo`'s). Raises
    ``agents.policy_base.PolicyFileError`` naming ``path`` when the zip cannot be loaded (a truncated
    or corrupt member such as ``policy.pth``: torch's error, first line), where SB3 raised whatever
    its readers raise."""
    from agents.policy_base import PolicyFileError

    algo = algo or detect_algo(Path(path))
    try:
        return algo_class(algo).load(path, **kwargs)
    except (RuntimeError, ValueError, KeyError, OSError, EOFError, TypeError, AssertionError,
            zipfile.BadZipFile) as err:
        if isinstance(err, PolicyFileError):
            raise
        raise PolicyFileError(f"{path}: cannot load the stable-baselines3 checkpoint ({_first_line(err)})") from None


@contextlib.contextmanager
def no_distribution_validation():
    """torch's argument checks of distributions off inside the block (restored after): SB3 and
    sb3-contrib build a Categorical for every policy call, and each build checks its logits
    (``torch.distributions.Distribution.set_default_validate_args``; issue 16: "validation of
    distributions off in the hot loop"). The checks only raise on bad input; values are the same."""
    import torch as th

    before = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(before)


def _layout(space: Any) -> tuple:
    from gymnasium import spaces

    if isinstance(space, spaces.MultiDiscrete):
        return ("MultiDiscrete", tuple(int(n) for n in np.ravel(space.nvec)))
    if isinstance(space, spaces.Discrete):
        return ("Discrete", int(space.n))
    return (type(space).__name__, tuple(getattr(space, "shape", None) or ()))


def check_layout(path: Path, model: Any, env: Any) -> None:
    """``PolicyMismatch`` naming ``path`` when ``model``'s observation shape or action space is not
    ``env``'s (SB3 itself fails deep in ``predict`` on a shape, and would not notice an action
    space of another size)."""
    from agents.policy_base import PolicyMismatch

    for what, mine, theirs in (("observations", model.observation_space, getattr(env, "observation_space", None)),
                               ("actions", model.action_space, getattr(env, "action_space", None))):
        if theirs is not None and _layout(mine) != _layout(theirs):
            raise PolicyMismatch(f"{path}: trained on {what} {_layout(mine)}, the environment has "
                                 f"{_layout(theirs)} (different --env-kwargs, e.g. instances or replicas?)")


class SB3Policy:
    """Deterministic actions of a saved SB3 model; masks are used where the algorithm takes them."""

    row_independent = True  # each row's action from that row's observation and mask (policy_base.Policy)

    def __init__(self, path: str | Path, env: Any | None = None, env_id: str | None = None):
        """``path``: an SB3 checkpoint; ``env``: the VecEnv it will act in (its spaces are checked);
        ``env_id``: that env's id (the checkpoint's recorded observation layout is checked against
        it). ``PolicyMismatch`` naming ``path`` for another observation version or layout or a
        malformed record (``agents.obs_version``), or spaces other than ``env``'s."""
        from agents.obs_version import check_env, check_zip

        self.path = Path(path)
        self.algo = detect_algo(self.path)
        # its observation version against this servegym's (ObservationMismatch; a warning where none is recorded)
        self.observation = check_zip(self.path)
        if env_id is not None:  # a record of another environment's observation (an edited or misplaced file)
            check_env(self.path, self.observation, env_id)
        import torch

        # One thread: a small MLP runs ~40x slower when torch spreads it over busy cores, and a
        # fixed summation order keeps actions identical run to run.
        torch.set_num_threads(1)
        self.model = load_model(self.path, self.algo, device="cpu")
        self.name = str(self.path)
        if env is not None:
            check_layout(self.path, self.model, env)
        self._mode = _direct_mode(self.model)

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        if self._mode is not None:
            return self._mode(obs, action_mask)
        with no_distribution_validation():
            if self.algo in ("maskable-ppo", "dueling-dqn"):
                a, _ = self.model.predict(obs, deterministic=True, action_masks=action_mask)
            else:
                a, _ = self.model.predict(obs, deterministic=True)
        a = np.asarray(a)
        # [E] for Discrete action spaces, [E, D] for MultiDiscrete (Disaggregation-v0)
        return a.reshape(obs.shape[0]) if a.size == obs.shape[0] else a.reshape(obs.shape[0], -1)


def _direct_mode(model: Any):
    """The deterministic action of a plain (Maskable)PPO MLP over a Discrete action space, computed
    with the same tensor operations as SB3's ``predict`` but without building its distribution
    objects: the actor's logits normalized as ``torch.distributions.Categorical`` does, masked as
    sb3-contrib's ``MaskableCategorical.apply_masking`` does (-1e8 outside the mask, normalized
    again), then ``argmax`` of the softmax (``MaskableCategoricalDistribution.mode``). Same actions,
    bit for bit (a test replays episodes against ``predict``), about 2.7x faster per call, which is
    most of an evaluation's time (issue 16). ``None`` for anything else (custom policy classes
    other than ``agents.masked_policy.MaskedMlpPolicy``, MultiDiscrete, DQN): those keep ``predict``."""
    import torch as th
    import torch.nn.functional as F
    from gymnasium import spaces
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
    from stable_baselines3.common.policies import ActorCriticPolicy

    from agents.masked_policy import MaskedMlpPolicy

    p = model.policy
    if type(p) not in (MaskableActorCriticPolicy, MaskedMlpPolicy, ActorCriticPolicy) \
            or not isinstance(p.action_space, spaces.Discrete) \
            or not isinstance(p.observation_space, spaces.Box) or p.share_features_extractor is not True:
        return None
    masked = type(p) is not ActorCriticPolicy
    p.set_training_mode(False)
    huge_neg = th.tensor(-1e8, dtype=th.float32)
    shape = p.observation_space.shape

    def mode(obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        with th.no_grad():
            o = th.as_tensor(np.asarray(obs).reshape(-1, *shape)).float()
            logits = p.action_net(p.mlp_extractor.forward_actor(p.extract_features(o, p.pi_features_extractor)))
            logits = logits - logits.logsumexp(-1, keepdim=True)
            if masked and action_mask is not None:
                keep = th.as_tensor(action_mask, dtype=th.bool).reshape(logits.shape)
                logits = th.where(keep, logits, huge_neg)
                logits = logits - logits.logsumexp(-1, keepdim=True)
            return th.argmax(F.softmax(logits, dim=-1), dim=1).numpy().reshape(-1)

    return mode
