"""Baselines of servegym/Autoscale-v0, each as the autoscaler it is named after decides.

All but the oracle act from the observation and mask only, plus constants an operator configures
once (target utilisation or concurrency from a load test, read from the env's calibration). The
reference GPU type is the cheapest per SLO-safe request/s; HPA and Knative scale it alone (one
Deployment / Revision), the predictive scaler and the oracle choose the mix of types.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from agents.policy_base import first_legal, register_heuristics
from envs.autoscale import env as asc
from envs.autoscale import kernels as K

ENV_ID = asc.ENV_ID
_G0 = len(K.GLOBAL_FEATURES)
_NF = len(K.TYPE_FEATURES)


def _f(name: str) -> int:
    return K.GLOBAL_FEATURES.index(name)


class _Base:
    """Reads fleet counts from the observation; turns per-type targets into legal actions."""

    name = "base"

    def __init__(self, env) -> None:
        self.env = env
        self.sc = env.scenario
        self.G = env.G
        self.max_n = np.asarray(self.sc.pools.max_n, np.float64)
        self.ref = self.sc.ref_type
        self.noop = int(env.action_of(np.zeros((1, self.G), np.int64))[0])

    def counts(self, obs: np.ndarray, feature: str) -> np.ndarray:
        f = K.TYPE_FEATURES.index(feature)
        cols = [_G0 + g * _NF + f for g in range(self.G)]
        return np.rint(obs[:, cols] * self.max_n).astype(np.int64)

    def fleet(self, obs: np.ndarray) -> np.ndarray:
        """Serving + starting replicas per type [E, G] (what a Deployment's spec counts)."""
        return self.counts(obs, "serving") + self.counts(obs, "starting")

    def to_action(self, obs: np.ndarray, mask: np.ndarray | None, targets: np.ndarray) -> np.ndarray:
        targets = np.clip(targets, 0, self.max_n.astype(np.int64))
        a = self.env.action_of(targets - self.fleet(obs))
        return first_legal(a, mask, np.full(len(a), self.noop))

    def fresh(self, obs: np.ndarray) -> np.ndarray:
        """Envs whose episode just began (per-env state must be reset)."""
        return obs[:, _f("elapsed")] == 0.0


class StaticPeak(_Base):
    """Fixed fleet for the peak: the reference type sized so that the highest 60-s arrival rate
    of the training data runs at the utilisation that still meets the SLO (capacity planning
    for the peak, the practice every autoscaler is measured against; Mélange, Griggs et al. 2024,
    and Llumnix compare with it). Normalized score 0."""

    name = "static_peak"

    def act(self, obs, mask):
        t = np.repeat(self.sc.static_targets[None, :], obs.shape[0], 0)
        return self.to_action(obs, mask, t)


class HPA(_Base):
    """Kubernetes Horizontal Pod Autoscaler on a requests/s-per-pod metric (target: the SLO-safe
    rate of one replica). Algorithm of the Kubernetes docs ("Horizontal Pod Autoscaling",
    algorithm details, https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/)
    and pkg/controller/podautoscaler/replica_calculator.go: desired = ceil(current x
    metric/target) over ready pods; no change within the 0.1 tolerance (so the target is the
    SLO-safe utilisation / 1.1: the tolerance band never runs past what meets the SLO); on scale-up, not-yet-ready
    pods count as using nothing (and a flip in direction cancels the change); scale-down
    takes the highest recommendation of the last 300 s (downscale stabilisation window);
    minReplicas 1. Scales the reference type only (one Deployment)."""

    name = "hpa"
    TOLERANCE = 0.1
    DOWN_WINDOW_S = 300.0

    def __init__(self, env) -> None:
        super().__init__(env)
        self.hist_len = max(round(self.DOWN_WINDOW_S / env.config.interval_s), 1)
        self.history = np.zeros((env.num_envs, self.hist_len), np.int64)
        self.filled = np.zeros(env.num_envs, np.int64)

    def recommend(self, obs: np.ndarray) -> np.ndarray:
        ready = self.counts(obs, "serving")[:, self.ref]
        unready = self.counts(obs, "starting")[:, self.ref]
        current = ready + unready
        # metric / target per ready pod: demand over the SLO-safe capacity of the ready pods
        cap = obs[:, _f("capacity")]
        rate = obs[:, _f("rate_30s")]
        safe = self.sc.safe_util[self.ref] / (1.0 + self.TOLERANCE)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(cap > 0, rate / (cap * safe), np.inf)
        ratio = np.where((cap == 0) & (rate == 0), 1.0, ratio)
        desired = current.copy()
        plain = ~((unready > 0) & (ratio > 1.0))
        within = np.abs(1.0 - ratio) <= self.TOLERANCE
        base = np.ceil(np.where(np.isfinite(ratio), ratio, 0) * ready).astype(np.int64)
        desired = np.where(plain & ~within & np.isfinite(ratio), base, desired)
        # Scale-up with unready pods: they count as using 0 of the metric.
        with np.errstate(divide="ignore", invalid="ignore"):
            new_ratio = np.where(current > 0, ratio * ready / current, 0.0)
        flip = np.abs(1.0 - new_ratio) <= self.TOLERANCE
        flip |= new_ratio < 1.0
        new = np.ceil(new_ratio * current).astype(np.int64)
        new = np.where(new < current, current, new)
        desired = np.where(~plain & np.isfinite(ratio), np.where(flip, current, new), desired)
        # No ready pod but demand: the metric is unavailable; HPA keeps the current count,
        # and scales up from zero never (minReplicas >= 1).
        desired = np.where(~np.isfinite(ratio), np.maximum(current, 1), desired)
        return np.maximum(desired, 1)

    def act(self, obs, mask):
        return self.to_action(obs, mask, self.targets(obs))

    def targets(self, obs: np.ndarray) -> np.ndarray:
        """The fleet [E, G] (serving + starting replicas per type) HPA sets after seeing ``obs`` [E, n_obs]
        (one call per observation: it records the recommendation in the scale-down window)."""
        fresh = self.fresh(obs)
        self.history[fresh] = 0
        self.filled[fresh] = 0
        rec = self.recommend(obs)
        self.history = np.roll(self.history, 1, axis=1)
        self.history[:, 0] = rec
        self.filled = np.minimum(self.filled + 1, self.hist_len)
        cols = np.arange(self.hist_len)[None, :] < self.filled[:, None]
        stabilised = np.where(cols, self.history, 0).max(axis=1)
        current = self.fleet(obs)[:, self.ref]
        target = np.where(rec >= current, rec, np.minimum(stabilised, current))
        t = self.fleet(obs)
        t[:, self.ref] = target
        return t


class Knative(_Base):
    """Knative Pod Autoscaler (KPA): desired pods = ceil(observed concurrency / target per pod)
    with the concurrency averaged over the 60-s stable window; panic mode when the 6-s panic
    window asks for >= 200% of the ready pods, during which the fleet never shrinks, until a
    stable window passes without panic; scale-down at most halves the fleet per decision
    (max-scale-down-rate 2). Knative docs "Configuring the autoscaler" / "Kubernetes Pod
    Autoscaler (KPA)" (https://knative.dev/docs/serving/autoscaling/) and
    pkg/autoscaler/scaling/autoscaler.go. Target concurrency per pod: Knative's default
    target utilisation (70%) of the pod's concurrency limit, which is the in-flight requests of
    one replica at its SLO-safe utilisation (what a load test gives). Scales the reference type."""

    name = "knative"
    STABLE_S = 60.0
    PANIC_THRESHOLD = 2.0
    MAX_SCALE_DOWN_RATE = 2.0
    TARGET_UTILISATION = 0.7  # container-concurrency-target-percentage default

    def __init__(self, env) -> None:
        super().__init__(env)
        self.panic_until = np.full(env.num_envs, -np.inf)
        self.interval = env.config.interval_s

    def act(self, obs, mask):
        fresh = self.fresh(obs)
        self.panic_until[fresh] = -np.inf
        now = obs[:, _f("elapsed")] * self.env.n_steps * self.interval
        ready = self.counts(obs, "serving")[:, self.ref]
        current = self.fleet(obs)[:, self.ref]
        per_pod = self.TARGET_UTILISATION  # inflight_* are in units of the concurrency limit
        stable = np.ceil(obs[:, _f("inflight_60s")] / per_pod - 1e-9).astype(np.int64)
        panic = np.ceil(obs[:, _f("inflight_6s")] / per_pod - 1e-9).astype(np.int64)
        start_panic = panic >= self.PANIC_THRESHOLD * np.maximum(ready, 1)
        self.panic_until = np.where(start_panic, now + self.STABLE_S, self.panic_until)
        in_panic = now < self.panic_until
        desired = np.where(in_panic, np.maximum(np.maximum(panic, stable), current), stable)
        floor = np.ceil(current / self.MAX_SCALE_DOWN_RATE).astype(np.int64)
        desired = np.maximum(np.maximum(desired, floor), 1)
        t = self.fleet(obs)
        t[:, self.ref] = desired
        return self.to_action(obs, mask, t)


class Predictive(_Base):
    """Forecast the arrival rate one cold start plus one interval ahead with Holt's linear
    (level + trend) exponential smoothing (Holt 1957; Hyndman & Athanasopoulos, "Forecasting:
    Principles and Practice", 3rd ed., Sec. 8.2) plus two standard deviations of its recent
    one-step errors, and buy the cheapest fleet of GPU types whose SLO-safe capacity (the
    calibrated capacity model) covers it: the forecast-plus-capacity-model scheme of predictive
    autoscalers (AWS EC2 predictive scaling; Mélange, Griggs et al. 2024, for the type mix).
    Scale-down waits until the forecast stays lower for five minutes."""

    name = "predictive"
    ALPHA = 0.5
    BETA = 0.2
    Z = 2.0
    DOWN_HOLD_S = 300.0

    def __init__(self, env) -> None:
        super().__init__(env)
        E = env.num_envs
        self.level = np.zeros(E)
        self.trend = np.zeros(E)
        self.err2 = np.zeros(E)
        self.seen = np.zeros(E, np.int64)
        p = self.sc.pools
        self.safe_cap = p.mu * self.sc.safe_util / self.sc.ref_cap  # in reference replicas
        self.h = math.ceil((p.cold.max() + env.config.interval_s) / env.config.interval_s)
        self.hold = max(round(self.DOWN_HOLD_S / env.config.interval_s), 1)
        self.recent = np.zeros((E, self.hold))
        self.fleets, self.fleet_cap, self.fleet_cost = self._fleets(p)

    def _fleets(self, p):
        ranges = [range(int(m) + 1) for m in p.max_n]
        fleets = np.array(list(itertools.product(*ranges)), np.int64)
        cap = fleets @ self.safe_cap
        cost = fleets @ p.price_s
        order = np.lexsort((-cap, cost))
        return fleets[order], cap[order], cost[order]

    def cheapest(self, need: np.ndarray) -> np.ndarray:
        """Cheapest fleet [E, G] whose SLO-safe capacity (reference replicas) covers ``need``."""
        out = np.empty((len(need), self.G), np.int64)
        for i, x in enumerate(need):
            ok = np.flatnonzero(self.fleet_cap >= x - 1e-9)
            out[i] = self.fleets[ok[0]] if ok.size else self.fleets[np.argmax(self.fleet_cap)]
        return out

    def act(self, obs, mask):
        fresh = self.fresh(obs)
        rate = obs[:, _f("rate_30s")]
        self.seen[fresh] = 0
        self.err2[fresh] = 0.0
        self.recent[fresh] = 0.0
        first = self.seen == 0
        err = rate - (self.level + self.trend)
        level = np.where(first, rate, self.ALPHA * rate + (1 - self.ALPHA) * (self.level + self.trend))
        trend = np.where(first, 0.0, self.BETA * (level - self.level) + (1 - self.BETA) * self.trend)
        self.err2 = np.where(first, 0.0, 0.9 * self.err2 + 0.1 * err * err)
        self.level, self.trend = level, trend
        self.seen += 1
        forecast = np.maximum(level + self.h * trend, level) + self.Z * np.sqrt(self.err2)
        # Before any arrival is seen (the first decision), keep the fleet.
        need = np.where(self.seen > 1, forecast, obs[:, _f("capacity")] * 0 + np.inf)
        self.recent = np.roll(self.recent, 1, axis=1)
        self.recent[:, 0] = np.where(np.isfinite(need), need, 0.0)
        held = np.where(np.isfinite(need), self.recent.max(axis=1), need)
        fleet = self.fleet(obs)
        cur_cap = fleet @ self.safe_cap
        target = np.where(np.isfinite(held)[:, None],
                          self.cheapest(np.where(np.isfinite(held), held, 0.0)), fleet)
        # Only move when the covering fleet changes what it must: never drop capacity below need.
        keep = np.isfinite(held) & (cur_cap >= held) & (cur_cap <= held + self.safe_cap.max())
        target = np.where(keep[:, None], fleet, target)
        return self.to_action(obs, mask, target)


class Oracle(_Base):
    """Offline optimum: dynamic programming over the control intervals with the env's capacity
    model and the episode's future arrivals (``envs.autoscale.kernels.oracle_plan``), read
    through the env's privileged ``oracle_targets`` (never part of any observation). The cost
    bound of the normalized score (100)."""

    name = "oracle"

    def act(self, obs, mask):
        E = obs.shape[0]
        k = np.rint(obs[:, _f("elapsed")] * self.env.n_steps).astype(np.int64)
        t = np.stack([self.env.oracle_targets(e)[min(k[e], self.env.n_steps - 1)] for e in range(E)])
        return self.to_action(obs, mask, t)


register_heuristics(
    ENV_ID,
    {
        "static_peak": lambda env, seed=0: StaticPeak(env),
        "hpa": lambda env, seed=0: HPA(env),
        "knative": lambda env, seed=0: Knative(env),
        "predictive": lambda env, seed=0: Predictive(env),
        "oracle": lambda env, seed=0: Oracle(env),
    },
)
