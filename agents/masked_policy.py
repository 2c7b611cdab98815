"""MaskablePPO's MLP policy without distribution objects in the training loop (issue 16).

sb3-contrib's ``MaskableActorCriticPolicy`` builds a ``MaskableCategorical`` at every rollout step
and every gradient step: three ``torch.distributions.Categorical`` constructions (one of them a
normalization whose result the masked path never reads), plus the wrapper objects' Python. This
subclass computes the same tensors with the same operations, in the same order, directly:

- logits ``L = action_net(latent) - logsumexp`` (``Categorical.__init__``),
- ``W = where(mask, L, -1e8)``, ``L' = W - logsumexp(W)`` (``MaskableCategorical.apply_masking``),
- probabilities ``softmax(L')`` (``logits_to_probs``), a sample ``multinomial(probs, 1, True)``
  (``Categorical.sample``), ``log_prob = L'.gather(action)`` (``Categorical.log_prob``), entropy
  ``-sum(where(mask, L' * probs, 0))`` (``MaskableCategorical.entropy``).

So actions, log-probabilities, entropies, gradients and the generator's draws are sb3-contrib's, bit
for bit (``tests/test_masked_policy.py`` trains both and compares every parameter), in about 6% less
learner time (``python -m agents.profile_train``: 1.57 -> 1.48 CPU-s for six 4,096-step rollouts of
KVAdmission-v0's default). Anything else (no mask, a deterministic action, a MultiDiscrete action
space) goes through the parent class unchanged.

A checkpoint of a model trained with it names the parent class (``agents.training.make_model`` sets
``policy_class``; ``portable_policy_class``): its parameters are the parent's, so stock sb3-contrib
loads it without servegym, and evaluation, export and ``--resume`` compute the same function (a
resumed run trains through the parent class, at its speed).
"""

from __future__ import annotations

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy


class MaskedMlpPolicy(MaskableActorCriticPolicy):
    """``MaskableActorCriticPolicy`` (an MLP over a Box observation, a Discrete action space) with
    ``forward`` (sampling, in rollouts) and ``evaluate_actions`` (in the PPO update) on tensors."""

    def _masked_logits(self, latent_pi: th.Tensor, action_masks: np.ndarray | th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Normalized masked logits [B, n] and the mask [B, n] (bool), as MaskableCategorical has them."""
        logits = self.action_net(latent_pi).view(-1, int(self.action_space.n))
        logits = logits - logits.logsumexp(dim=-1, keepdim=True)
        masks = th.as_tensor(action_masks, dtype=th.bool, device=logits.device).reshape(logits.shape)
        logits = th.where(masks, logits, th.tensor(-1e8, dtype=logits.dtype, device=logits.device))
        return logits - logits.logsumexp(dim=-1, keepdim=True), masks

    def _direct(self, action_masks) -> bool:
        return action_masks is not None and isinstance(self.action_space, spaces.Discrete) \
            and self.share_features_extractor

    def forward(self, obs: th.Tensor, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Sampled actions [B], values [B, 1] and log-probabilities [B] (the parent's, see the module)."""
        if deterministic or not self._direct(action_masks):
            return super().forward(obs, deterministic, action_masks)
        latent_pi, latent_vf = self.mlp_extractor(self.extract_features(obs))
        values = self.value_net(latent_vf)
        logits, _ = self._masked_logits(latent_pi, action_masks)
        actions = th.multinomial(th.softmax(logits, dim=-1), 1, True).T.reshape(-1)
        log_prob = logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor,
                         action_masks: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values [B, 1], log-probabilities [B] and entropies [B] of ``actions`` (the parent's)."""
        if not self._direct(action_masks):
            return super().evaluate_actions(obs, actions, action_masks)
        latent_pi, latent_vf = self.mlp_extractor(self.extract_features(obs))
        logits, masks = self._masked_logits(latent_pi, action_masks)
        log_prob = logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        values = self.value_net(latent_vf)
        p_log_p = th.where(masks, logits * th.softmax(logits, dim=-1), th.tensor(0.0, device=logits.device))
        return values, log_prob, -p_log_p.sum(-1)


def portable_policy_class(policy: MaskableActorCriticPolicy) -> type[MaskableActorCriticPolicy]:
    """The class a checkpoint of ``policy`` should name: sb3-contrib's ``MaskableActorCriticPolicy``
    for a ``MaskedMlpPolicy`` (same parameters, same function), else ``policy``'s own class."""
    return MaskableActorCriticPolicy if type(policy) is MaskedMlpPolicy else type(policy)
