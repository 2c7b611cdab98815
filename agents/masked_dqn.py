"""A masked dueling DQN over K eviction candidates (SB3 DQN, CleanRL-sized).

Cold-RL (learned eviction for NGINX caches) scores the K least recently used objects with a
dueling DQN and evicts the best; ``servegym/PrefixEviction-v0`` poses the same decision over K
cached prefix blocks. SB3's ``DQN`` has neither action masks nor a dueling head, so it explores
into (and bootstraps from) candidates that do not exist. This module adds both:

* ``DuelingItemQNetwork``: the dueling architecture of Wang et al. 2016 ("Dueling Network
  Architectures for Deep Reinforcement Learning", ICML), made permutation-equivariant as
  ``agents.scorer_policy.ItemScorer`` is: one shared MLP embeds ``[global, candidate k]`` and
  gives the advantage A_k; the value V reads the global features with the mean and max of the
  legal candidates' embeddings; ``Q_k = V + A_k - mean_{legal j} A_j``. Candidates whose
  "present" feature (index 0 of each candidate block) is off get ``Q = ILLEGAL``, so greedy
  actions, the TD target's max and the exported ONNX graph only ever see legal actions.
* ``DuelingItemDQNPolicy``: an SB3 ``DQNPolicy`` whose online and target networks are that
  network (its layout is saved with the checkpoint).
* ``MaskedDQN``: ``DQN`` whose epsilon-greedy (and warm-up) exploration draws uniformly among
  the legal candidates, whose ``predict`` accepts ``action_masks=`` as sb3_contrib's
  MaskablePPO does, and whose TD target is double DQN (van Hasselt et al. 2016) by default.

The mask is read from the raw observation, so observations must not be normalized
(``VecNormalize(norm_obs=True)`` is refused). Layout: ``[G global | K x F candidate]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.nn import functional as F

ILLEGAL = -1e9  # Q of an absent candidate: below any real return, finite (exports cleanly)


class DuelingItemQNetwork(QNetwork):
    """Q-values [B, K] of flat ``[G | K x F]`` observations; ``n_item`` F includes "present".

    QNetwork's flat MLP (``self.q_net``) is replaced by the per-candidate dueling head.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete,
                 features_extractor: BaseFeaturesExtractor, features_dim: int, *,
                 n_global: int, n_item: int, hidden: int = 64,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.ReLU,
                 normalize_images: bool = True) -> None:
        super().__init__(observation_space, action_space, features_extractor, features_dim,
                         net_arch=[], activation_fn=activation_fn, normalize_images=normalize_images)
        del self.q_net  # QNetwork's flat head; not used
        K = int(action_space.n)
        if features_dim != n_global + K * n_item:
            raise ValueError(f"DuelingItemQNetwork: observation size {features_dim} != n_global "
                             f"{n_global} + {K} actions x n_item {n_item}")
        self.G, self.F, self.K, self.hidden = n_global, n_item, K, hidden
        # ReLU embeddings are >= 0, so the max over legal candidates is max(h * legal): no -inf
        # fill, which keeps the graph simple to export.
        self.embed = nn.Sequential(nn.Linear(n_global + n_item, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.advantage = nn.Linear(hidden, 1)
        self.value = nn.Sequential(nn.Linear(n_global + 2 * hidden, hidden), nn.ReLU(),
                                   nn.Linear(hidden, 1))

    def legal(self, obs: th.Tensor) -> th.Tensor:
        """Legal candidates [B, K]: "present" > 0.5. A row with none present is the env's no-op
        step (a window that needed no eviction), where only action 0 is legal."""
        x = self.extract_features(obs, self.features_extractor)
        return self._masks(x[:, self.G:].reshape(x.shape[0], self.K, self.F))[1]

    def _masks(self, items: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(present, legal), both [B, K]."""
        present = items[:, :, 0] > 0.5
        none = ~present.any(dim=1, keepdim=True)  # [B, 1]
        first = th.arange(self.K, device=items.device) == 0  # [K]
        return present, present | (none & first)

    def dueling(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The two streams and the mask: V [B, 1], A [B, K], legal [B, K]."""
        x = self.extract_features(obs, self.features_extractor)
        g = x[:, : self.G]
        items = x[:, self.G:].reshape(x.shape[0], self.K, self.F)
        present, legal = self._masks(items)
        # V pools the present candidates only (none on a no-op step: V then sees g alone).
        w = present.to(x.dtype).unsqueeze(-1)  # [B, K, 1]
        h = self.embed(th.cat([g.unsqueeze(1).expand(-1, self.K, -1), items], dim=2))  # [B, K, H]
        n = w.sum(dim=1).clamp(min=1.0)  # [B, 1]
        pooled = th.cat([g, (h * w).sum(dim=1) / n, (h * w).amax(dim=1)], dim=1)
        return self.value(pooled), self.advantage(h).squeeze(-1), legal

    def forward(self, obs: th.Tensor) -> th.Tensor:
        v, a, legal = self.dueling(obs)
        w = legal.to(a.dtype)
        # Wang et al. eq. 9 with the mean over the legal actions only: V stays the value of the
        # state under a uniform legal policy and the absent candidates' A cannot shift it.
        q = v + a - (a * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        return th.where(legal, q, th.full_like(q, ILLEGAL))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_global=self.G, n_item=self.F, hidden=self.hidden)
        return data


class DuelingItemDQNPolicy(DQNPolicy):
    """DQN policy with ``DuelingItemQNetwork`` online and target networks.

    ``policy_kwargs``: ``n_global`` (G), ``n_item`` (F), ``hidden`` (default 64).
    """

    q_net: DuelingItemQNetwork
    q_net_target: DuelingItemQNetwork

    def __init__(self, *args: Any, n_global: int, n_item: int, hidden: int = 64, **kwargs: Any):
        self._layout = (n_global, n_item, hidden)  # read by make_q_net during super().__init__
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> DuelingItemQNetwork:
        G, F_, H = self._layout
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return DuelingItemQNetwork(**net_args, n_global=G, n_item=F_, hidden=H).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        G, F_, H = self._layout
        data.update(n_global=G, n_item=F_, hidden=H)
        return data


def random_legal(legal: np.ndarray, rng: np.random.Generator | Any = np.random) -> np.ndarray:
    """A uniformly random legal action per row of a bool mask [B, K] (masked argmax of keys)."""
    keys = rng.random(legal.shape)
    keys[~legal] = -1.0
    return keys.argmax(axis=1)


class MaskedDQN(DQN):
    """SB3 DQN that only ever explores, acts and bootstraps over legal actions.

    Needs ``DuelingItemDQNPolicy`` (its network knows where the mask is). ``double_q``: the
    online network picks the next action, the target network values it.
    """

    policy: DuelingItemDQNPolicy

    def __init__(self, *args: Any, double_q: bool = True, **kwargs: Any):
        self.double_q = double_q
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if not isinstance(self.policy, DuelingItemDQNPolicy):
            raise TypeError("MaskedDQN needs agents.masked_dqn:DuelingItemDQNPolicy (it reads the "
                            f"action mask from the observation), got {type(self.policy).__name__}")

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        out = super()._setup_learn(*args, **kwargs)
        vn = self._vec_normalize_env
        if vn is not None and vn.norm_obs:
            raise ValueError("MaskedDQN reads the action mask from the raw 'present' features; "
                             "train without VecNormalize(norm_obs=True)")
        return out

    def _legal(self, observation: np.ndarray) -> tuple[np.ndarray, bool]:
        obs_t, vectorized = self.policy.obs_to_tensor(observation)
        return self.q_net.legal(obs_t).cpu().numpy(), vectorized

    def predict(self, observation: np.ndarray | dict[str, np.ndarray],
                state: tuple[np.ndarray, ...] | None = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False, action_masks: np.ndarray | None = None,
                ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """Greedy (or, with probability epsilon per row, uniformly random) legal actions; the
        legal set is ``action_masks`` when given, else what the observation marks present."""
        obs_t, vectorized = self.policy.obs_to_tensor(observation)
        with th.no_grad():
            q = self.q_net(obs_t).cpu().numpy()
        if action_masks is not None:
            legal = np.asarray(action_masks, dtype=bool).reshape(q.shape)
        else:
            with th.no_grad():
                legal = self.q_net.legal(obs_t).cpu().numpy()
        action = np.where(legal, q, -np.inf).argmax(axis=1)
        if not deterministic and self.exploration_rate > 0:
            explore = np.random.rand(q.shape[0]) < self.exploration_rate
            action = np.where(explore, random_legal(legal), action)
        return (action if vectorized else action[0]), state

    def _sample_action(self, learning_starts: int, action_noise: Any = None,
                       n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """SB3 samples the whole action space during warm-up; here only legal actions."""
        assert self._last_obs is not None, "self._last_obs was not set"
        if self.num_timesteps < learning_starts:
            with th.no_grad():
                legal, _ = self._legal(self._last_obs)
            action = random_legal(legal)
        else:
            action, _ = self.predict(self._last_obs, deterministic=False)
        return action, action

    def next_value(self, next_obs: th.Tensor) -> th.Tensor:
        """Bootstrap value [B, 1] of the TD target, over legal actions only (absent candidates
        have Q = ILLEGAL in both networks, so neither the max nor the argmax can pick them)."""
        next_q = self.q_net_target(next_obs)
        if self.double_q:
            return next_q.gather(1, self.q_net(next_obs).argmax(dim=1, keepdim=True))
        return next_q.max(dim=1, keepdim=True).values

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """SB3's DQN update, with the double-DQN target when ``double_q``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            gamma = data.discounts if data.discounts is not None else self.gamma  # n-step: gamma**n
            with th.no_grad():
                target = data.rewards + (1 - data.dones) * gamma * self.next_value(data.next_observations)
            current = self.q_net(data.observations).gather(1, data.actions.long())
            loss = F.smooth_l1_loss(current, target)
            losses.append(loss.item())
            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", float(np.mean(losses)))
