"""A learned policy guarded by a time budget and a fallback heuristic, for an engine's hot path.

Cold-RL (Gupta and Bhayani, "Cold-RL: Learning Cache Eviction with Offline Reinforcement
Learning for NGINX", arXiv:2508.12485, 2025) serves its DQN from an ONNX sidecar; "a hard
timeout of 500 microseconds triggers immediate fallback to native LRU". This is that pattern
for any ``Policy``:

* the learned policy decides when it answers within ``budget_us`` (per ``act`` call, i.e. per
  decision point of the engine, whatever the batch);
* otherwise (late, raised, wrong shape) the fallback decides the whole call; a Discrete action
  that is out of range or illegal under the mask is replaced by the fallback's action for that
  row;
* ``counters`` says how often each happened.

Two deadline modes. ``hard_deadline=False`` (default) runs the policy inline and discards a late
answer: no thread hand-off, but the caller waits for the late call to end. ``hard_deadline=True``
runs it on a worker thread and waits at most the budget, so the caller is never held longer
(plus the fallback's own time); a call still running when the next one comes makes that next
one fall back at once (``busy``, after yielding the GIL so the late call can finish rather than
starve behind back-to-back decisions). The wait relies on the policy releasing the GIL
(onnxruntime and sleeps do); a pure-Python policy that holds it can overrun by
``sys.getswitchinterval()``.
"""

from __future__ import annotations

import math
import numbers
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass

import numpy as np

from agents.policy import Policy

COLD_RL_BUDGET_US = 500.0


@dataclass
class GuardCounters:
    calls: int = 0  # act() calls
    decisions: int = 0  # rows decided (sum of batch sizes)
    fallbacks: int = 0  # rows the fallback decided
    timeouts: int = 0  # calls whose policy answer came (or would come) after the budget
    busy: int = 0  # hard deadline: calls that found the previous late call still running
    errors: int = 0  # calls whose policy raised or answered with the wrong shape or type
    invalid: int = 0  # rows with an out-of-range or masked action

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class GuardedPolicy:
    """``policy`` within ``budget_us`` per call, else ``fallback`` (see the module docstring)."""

    def __init__(self, policy: Policy, fallback: Policy, budget_us: float = COLD_RL_BUDGET_US,
                 hard_deadline: bool = False):
        if isinstance(budget_us, bool) or not (isinstance(budget_us, numbers.Real) and math.isfinite(budget_us)
                                                and budget_us > 0):
            # inf was int()'s OverflowError; a string was a TypeError from '>'
            raise ValueError(f"GuardedPolicy: budget_us must be a finite number > 0, got {budget_us!r}")
        self.policy = policy
        self.fallback = fallback
        self.budget_ns = int(budget_us * 1000)
        self.name = f"guarded({policy.name}|{fallback.name},{budget_us:g}us)"
        self.counters = GuardCounters()
        self.last_error: BaseException | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="guarded-policy") if hard_deadline else None
        self._pending: Future | None = None
        if self._pool is not None:
            self._pool.submit(int).result()  # start the worker now, not in the first decision

    def _ask(self, obs: np.ndarray, action_mask: np.ndarray | None, t0: int) -> np.ndarray | None:
        """The policy's actions, or None when they are late (counted here)."""
        c = self.counters
        if self._pool is None:
            actions = self.policy.act(obs, action_mask)
            if time.perf_counter_ns() - t0 > self.budget_ns:
                c.timeouts += 1
                return None
            return actions
        if self._pending is not None and not self._pending.done():
            c.busy += 1
            time.sleep(0)  # let the late call take the GIL and finish instead of starving it
            return None
        # Copies: the engine may reuse its buffers while a late call still reads them.
        mask = None if action_mask is None else action_mask.copy()
        self._pending = self._pool.submit(self.policy.act, obs.copy(), mask)
        left = (self.budget_ns - (time.perf_counter_ns() - t0)) * 1e-9
        try:
            return self._pending.result(timeout=max(left, 0.0))
        except FutureTimeout:
            c.timeouts += 1
            return None

    def act(self, obs: np.ndarray, action_mask: np.ndarray | None) -> np.ndarray:
        t0 = time.perf_counter_ns()
        c = self.counters
        B = obs.shape[0]
        c.calls += 1
        c.decisions += B
        try:
            actions = self._ask(obs, action_mask, t0)
        except Exception as err:  # noqa: BLE001  (any failure of the learned policy falls back)
            c.errors += 1
            self.last_error = err
            actions = None
        if actions is not None:
            actions = np.asarray(actions)
            if actions.ndim not in (1, 2) or actions.shape[0] != B or actions.dtype.kind not in "iu":
                c.errors += 1
                self.last_error = ValueError(
                    f"policy answered {actions.dtype} {actions.shape}, expected integers of shape ({B},) "
                    f"or ({B}, D)")
                actions = None
        if actions is None:
            c.fallbacks += B
            return np.asarray(self.fallback.act(obs, action_mask))
        if action_mask is not None and actions.ndim == 1:  # (MultiDiscrete: the graph masks)
            n = action_mask.shape[1]
            safe = np.clip(actions, 0, n - 1)
            ok = action_mask[np.arange(B), safe] & (safe == actions)
            if not ok.all():
                rows = np.flatnonzero(~ok)
                actions = actions.copy()
                actions[rows] = self.fallback.act(obs[rows], action_mask[rows])
                c.invalid += rows.size
                c.fallbacks += rows.size
        return actions

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
