"""A MaskablePPO policy for Disaggregation-v0 whose role logits start from "keep the current role".

Disaggregation-v0's action is a role per instance (``MultiDiscrete([3] * R + [2])``). An MLP
policy starts near uniform, so each instance changes role with probability 2/3 at every decision
and an untrained agent keeps the whole cluster draining and warming up: every episode it sees is
a collapse, and PPO gets almost no signal about which split serves better. This policy adds a
fixed prior to the role logits, ``keep_logit`` on the role each instance serves now (the role
one-hot of the observation, ``envs.disaggregation.kernels.INSTANCE_FEATURES``; 0 while the
instance is switching), so exploration is local: with ``keep_logit = 3`` an instance keeps its
role with probability e^3 / (e^3 + 2) = 0.91 before any training. It is a residual policy
(Silver et al., "Residual Policy Learning", 2018; Johannink et al., ICRA'19): the learned linear
head adds to the prior and can override it wherever the reward says so.

The prior is part of the graph SB3 evaluates (``mlp_extractor.forward_actor`` returns the MLP's
latent with the prior appended; ``action_net`` adds the prior to its linear output), so
``agents.export`` exports it to ONNX unchanged and the parity check covers it.

    python train.py --env servegym/Disaggregation-v0 \\
        --hyperparams policy='agents.sticky_roles:StickyRolePolicy' policy_kwargs.keep_logit=3.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

from envs.disaggregation import kernels as K


def prior_matrix(n_obs: int, nvec: np.ndarray, keep_logit: float) -> tuple[np.ndarray, np.ndarray]:
    """(role [n_obs, n_scores], switching [n_obs, n_scores]) matrices: ``obs @ role`` puts
    ``keep_logit`` on each instance's current role, ``obs @ switching`` marks (1) the score
    columns of instances that are switching. Raises ``ValueError`` when the layout is not
    Disaggregation-v0's (``G + R * F`` features, ``[3] * R + [n_rules]`` actions)."""
    R = (n_obs - K.G) // K.F
    if R < 1 or K.G + R * K.F != n_obs or len(nvec) != R + 1 or any(int(n) != 3 for n in nvec[:R]):
        raise ValueError(f"StickyRolePolicy: observation of {n_obs} features and actions {list(nvec)} are not "
                         f"Disaggregation-v0's layout (G={K.G} + R x F={K.F} features, [3] * R + [rules])")
    n_scores = int(np.sum(nvec))
    role = np.zeros((n_obs, n_scores), np.float32)
    switching = np.zeros((n_obs, n_scores), np.float32)
    s = K.INSTANCE_FEATURES.index("switching")
    for r in range(R):
        for k in range(3):
            role[K.G + r * K.F + k, 3 * r + k] = keep_logit
            switching[K.G + r * K.F + s, 3 * r + k] = 1.0
    return role, switching


class _PriorExtractor(nn.Module):
    """The policy's ``MlpExtractor`` with the prior appended to the actor's latent."""

    def __init__(self, base: nn.Module, role: np.ndarray, switching: np.ndarray):
        super().__init__()
        self.base = base
        self.register_buffer("role", th.as_tensor(role))
        self.register_buffer("switching", th.as_tensor(switching))
        self.latent_dim_pi = base.latent_dim_pi + role.shape[1]
        self.latent_dim_vf = base.latent_dim_vf

    def prior(self, features: th.Tensor) -> th.Tensor:
        return (features @ self.role) * (1.0 - features @ self.switching)

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return th.cat([self.base.forward_actor(features), self.prior(features)], dim=1)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.base.forward_critic(features)


class _ResidualHead(nn.Module):
    """``action_net``: a linear map of the MLP's latent plus the prior carried beside it."""

    def __init__(self, latent_dim: int, n_scores: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.linear = nn.Linear(latent_dim, n_scores)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        return self.linear(latent[:, : self.latent_dim]) + latent[:, self.latent_dim:]


class StickyRolePolicy(MaskableActorCriticPolicy):
    """``MaskableActorCriticPolicy`` (SB3-contrib's MLP policy) plus the keep-role prior.

    ``keep_logit`` (float >= 0, default 3.0): logit added to each active instance's current role.
    Observations must be Disaggregation-v0's raw layout (the prior reads the role one-hot), so
    the policy refuses observation normalization by construction: it is built on the flat
    observation the env emits."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Any,
                 *args: Any, keep_logit: float = 3.0, **kwargs: Any):
        if not (isinstance(keep_logit, (int, float)) and keep_logit >= 0):
            raise ValueError(f"StickyRolePolicy: keep_logit must be a number >= 0, got {keep_logit!r}")
        if not isinstance(action_space, spaces.MultiDiscrete) or not isinstance(observation_space, spaces.Box):
            raise ValueError(f"StickyRolePolicy: needs Disaggregation-v0's Box observation and MultiDiscrete "
                             f"action, got {observation_space} and {action_space}")
        self.keep_logit = float(keep_logit)
        self._prior = prior_matrix(int(observation_space.shape[0]), action_space.nvec, self.keep_logit)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        super()._build(lr_schedule)
        base = self.mlp_extractor
        self.mlp_extractor = _PriorExtractor(base, *self._prior)
        self.action_net = _ResidualHead(base.latent_dim_pi, self._prior[0].shape[1])
        if self.ortho_init:  # SB3's small output gain, as the plain policy's action_net gets
            self.action_net.apply(lambda m: self.init_weights(m, gain=0.01))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "keep_logit": self.keep_logit}
