"""A permutation-equivariant actor-critic for "pick one of R items" actions (SB3, MaskablePPO).

Observations laid out as ``[global features (G) | R x item features (F)]`` (Routing-v0: the
request, then each replica; PrefixEviction-v0: the cache, then each candidate block). One small MLP scores every item from its own features and the global
ones; the scores are the action logits, so relabelling the replicas relabels the action and the
network learns one rule for all replicas instead of R separate ones. The critic reads the global
features with the mean and max of the item embeddings. Works for any R with the same layout.
"""

from __future__ import annotations

from typing import Any

import torch as th
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn


class ItemScorer(nn.Module):
    """Maps flat observations to (logits [B, R], value latent [B, H])."""

    def __init__(self, n_global: int, n_item: int, hidden: int):
        super().__init__()
        self.G, self.F = n_global, n_item
        self.embed = nn.Sequential(nn.Linear(n_global + n_item, hidden), nn.Tanh(),
                                   nn.Linear(hidden, hidden), nn.Tanh())
        self.score = nn.Linear(hidden, 1)
        self.value = nn.Sequential(nn.Linear(n_global + 2 * hidden, hidden), nn.Tanh())
        self.latent_dim_vf = hidden

    def _items(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        g = obs[:, : self.G]
        items = obs[:, self.G:].reshape(obs.shape[0], -1, self.F)
        x = th.cat([g.unsqueeze(1).expand(-1, items.shape[1], -1), items], dim=2)
        return g, self.embed(x)

    def forward_actor(self, obs: th.Tensor) -> th.Tensor:
        _, h = self._items(obs)
        return self.score(h).squeeze(-1)

    def forward_critic(self, obs: th.Tensor) -> th.Tensor:
        g, h = self._items(obs)
        return self.value(th.cat([g, h.mean(1), h.amax(1)], dim=1))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(obs), self.forward_critic(obs)


class ItemScorerPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy whose logits are per-item scores of one shared network.

    ``policy_kwargs``: ``n_global`` (G), ``n_item`` (F), ``hidden`` (default 64).
    """

    def __init__(self, *args: Any, n_global: int, n_item: int, hidden: int = 64, **kwargs: Any):
        self._layout = (n_global, n_item, hidden)
        kwargs.setdefault("share_features_extractor", True)
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        G, F, H = self._layout
        self.mlp_extractor = ItemScorer(G, F, H)
        self.mlp_extractor.latent_dim_pi = int(self.action_space.n)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = nn.Identity()  # the item scores are the logits
        with th.no_grad():  # near-uniform initial policy, as SB3's 0.01-gain action head gives
            self.mlp_extractor.score.weight.mul_(0.01)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        G, F, H = self._layout
        data.update(n_global=G, n_item=F, hidden=H)
        return data
