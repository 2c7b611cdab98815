"""The base every native batched environment shares, and its single-env Gymnasium view.

``NativeVecEnv`` is an SB3 ``VecEnv`` that steps E environments with one kernel call. It owns
what is the same in every environment:

- seeding: ``seed(s)`` gives env e its own generator ``np.random.default_rng(s + e)`` (SB3's and
  Gymnasium's convention: env e of a batch seeded s plays as a single env seeded s + e), applied
  at the next ``reset()``, which then also restarts the per-env episode counters; a seed is None or
  an integer >= 0, anything else one ``ValueError`` naming the argument (``check_seed``);
- episode selection (``draw_episode``): which window of the trace (day, layer trace ...) and
  which value of the swept knob (load, capacity, penalty, drift) the next episode plays:
  drawn from the env's generator (``window_order="random"``), in turn (``"sequential"``: env e
  plays episodes e, e + E, ...), or named by ``reset`` options (``{"window": w, knob: v}``, SB3's
  ``set_options`` or Gymnasium's ``reset(options=...)``); unknown keys and values raise ``ValueError``,
  and a refused reset moves no generator (the next reset plays as if it had not been called);
- step bookkeeping: returns and lengths, ``dones = terminated | truncated``, and on an episode's
  end ``infos[e]`` with ``terminal_observation``, ``TimeLimit.truncated = truncated and not
  terminated``, ``episode = {"r", "l"}``, ``metrics`` and the environment's extras; then the
  env resets in the same step;
- action checks: a batch of integers in ``[0, n)`` of shape [E]; a float, bool or out-of-range
  action raises ``ValueError`` naming the environment (never truncated); ``step()`` before
  ``reset()`` raises ``RuntimeError``;
- SB3 plumbing (one object steps the whole batch, so attribute and method calls go to it once
  per index) and ``action_masks() -> [E, n_actions] bool``.

A subclass keeps only what is its own: its config, scenario and state, ``_reset_envs(envs)``
(start the next episode of those envs, calling ``draw_episode``, and write their observations
and masks), ``advance()`` (apply ``self._actions`` to every env, fill ``_rew``, ``_term``,
``_trunc``, ``_obs`` and ``_mask``), ``episode_metrics(e)``, optionally ``episode_extras(e)``,
``_accept_actions(a)`` (masked-action rule: KVAdmission-v0, Routing-v0 and Disaggregation-v0 apply a masked
action as given, each documenting what it does; Autoscale-v0 clips it to the limits; ExpertPlacement-v0 plays
the first legal one and counts it; PrefixEviction-v0 refuses it, a masked slot holding no candidate) and
``render_text(e)``.

``VecEnvView`` is the Gymnasium ``Env`` of any of them with E = 1 (``render_mode="ansi"``
renders the cluster state as text).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env import VecEnv

from envs.config_check import WINDOW_ORDERS, check_count


class SingleObjectVecEnv(VecEnv):
    """SB3 plumbing of a VecEnv that is one object over the whole batch (no per-env objects);
    a subclass keeps its action masks in ``self._mask`` ([E, n_actions] bool)."""

    _mask: np.ndarray

    def close(self) -> None:
        pass

    def action_masks(self) -> np.ndarray:
        return self._mask.copy()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            return list(self.action_masks()[idx])
        return [getattr(self, method_name)(*args, **kwargs) for _ in idx]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class RenderModeError(ValueError, TypeError):
    """A ``render_mode`` the environment does not render: a ``ValueError`` (a bad value), and a ``TypeError``, which is
    what SB3's ``make_vec_env(id)`` catches to build the env again without the ``render_mode="rgb_array"`` it passes
    by default (as a ``ValueError`` alone it ended ``make_vec_env`` for every servegym id)."""


def check_render_mode(render_mode: Any, modes: Sequence[str], where: str) -> str | None:
    """``render_mode`` if it is None or one of ``modes`` (an environment's ``metadata["render_modes"]``; Gymnasium's
    and PettingZoo's constructors take ``render_mode=None``), else one :class:`RenderModeError` naming it and
    ``where``."""
    if render_mode is not None and render_mode not in modes:
        allowed = f"None or one of {list(modes)}" if modes else "None (this environment does not render)"
        raise RenderModeError(f"{where}: render_mode must be {allowed}, got {render_mode!r}")
    return render_mode


def received(value: Any) -> str:
    """What was passed, in a few words for a one-line error: ``"int64 array of shape (1000,)"`` for an
    array, list or tuple (never its items), else the value's repr."""
    if isinstance(value, (np.ndarray, list, tuple)):
        try:
            a = np.asarray(value)
        except ValueError:  # ragged
            return f"{type(value).__name__} of {len(value)} ragged items"
        return f"{a.dtype} array of shape {a.shape}"
    return repr(value)


def check_seed(seed: Any, where: str, name: str = "seed", more: str = "") -> int | None:
    """``seed`` as a Python int (None stays None); ``ValueError("WHERE: NAME must be None or an integer >= 0
    (numpy's SeedSequence entropy), got ...")``, one line, for a negative number, a float, a bool or anything
    else (was numpy's 'expected non-negative integer' from deep in the seeding, naming neither). ``more``:
    what else the caller takes (``", or a list of 4 such"``)."""
    if seed is None:
        return None
    if not _is_integer(seed) or seed < 0:
        raise ValueError(f"{where}: {name} must be None or an integer >= 0{more} (numpy's SeedSequence entropy), "
                         f"got {received(seed)}")
    return int(seed)


def check_actions(actions: Any, shape: tuple[int, ...], n: int, where: str) -> np.ndarray:
    """``actions`` as an int64 array of ``shape`` with every entry in ``[0, n)``; raises
    ``ValueError`` naming ``where`` for a float, bool or out-of-range action or a wrong shape (one
    line: the expected and received shape and dtype, or the first out-of-range entry; never the array)."""
    a = np.asarray(actions)
    if a.size != int(np.prod(shape)) or a.dtype.kind not in "iu":
        raise ValueError(f"{where}: actions must be integers in [0, {n}) of shape {shape}, got {received(a)}")
    flat = a.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= n))
    if bad.size:
        more = f" ({bad.size} entries out of range)" if bad.size > 1 else ""
        raise ValueError(f"{where}: actions must be integers in [0, {n}), got {int(flat[bad[0]])} at index "
                         f"{int(bad[0])}{more}")
    return a.reshape(shape).astype(np.int64)


def check_multi_actions(actions: Any, num_envs: int, nvec: np.ndarray, where: str) -> np.ndarray:
    """MultiDiscrete ``actions`` as int64 [num_envs, D] with component d in ``[0, nvec[d])``;
    raises ``ValueError`` naming ``where`` and the component for a float, bool, out-of-range or
    misshapen action (the expected and received shape and dtype; never the array)."""
    D = len(nvec)
    a = np.asarray(actions)
    if a.size != num_envs * D or a.dtype.kind not in "iu":
        raise ValueError(f"{where}: actions must be integers of shape ({num_envs}, {D}) with component d in "
                         f"[0, nvec[d]), nvec = {nvec.tolist()}; got {received(a)}")
    a = a.reshape(num_envs, D)
    bad = (a < 0) | (a >= nvec[None, :])
    if bad.any():
        e, d = (int(x) for x in np.argwhere(bad)[0])
        raise ValueError(f"{where}: actions must be integers with component d in [0, nvec[d]); env {e} component "
                         f"{d} is {int(a[e, d])}, nvec[{d}] = {int(nvec[d])}")
    return a.astype(np.int64)


def episode_options(where: str, options: dict[str, Any] | None, knob: str) -> dict[str, Any]:
    """The episode-naming keys of ``options`` (``window`` and ``knob``); any other key is left out
    with a ``UserWarning`` naming it. For PettingZoo's ``reset(options=...)``, whose API test
    passes an arbitrary key; the Gymnasium and SB3 paths refuse unknown keys (``draw_episode``)."""
    opts = {} if options is None else options_dict(options, where)  # a str was dict()'s 'update sequence' error
    other = sorted(set(opts) - {"window", knob})
    if other:
        warnings.warn(f"{where}: reset option(s) {other} ignored; known: window, {knob}", stacklevel=3)
    return {k: v for k, v in opts.items() if k in ("window", knob)}


@contextlib.contextmanager
def draws_undone_on_error(rngs: list[np.random.Generator], started: np.ndarray):
    """Runs the body (a batch's episode draws); when it raises (a refused reset option, env e's, after envs
    before it drew), every generator of ``rngs`` gets back its state and ``started`` (the episodes counted
    per env) its counts before the body, so the next reset plays as if this one had not been called."""
    states, counts = [r.bit_generator.state for r in rngs], started.copy()
    try:
        yield
    except Exception:
        for r, st in zip(rngs, states):
            r.bit_generator.state = st
        started[:] = counts
        raise


def draw_episode(where: str, order: str, rng: np.random.Generator, started: int, e: int, num_envs: int,
                 n_windows: int, knob: str, values: Sequence[Any], options: dict[str, Any],
                 groups: Sequence[int] | None = None) -> tuple[int, Any]:
    """Window index in ``[0, n_windows)`` and value of ``knob`` (one of ``values``) of env ``e``'s
    next episode, its ``started``-th. ``options`` (``{"window": int, knob: value}``, either
    optional) name them; what they leave open is drawn from ``rng`` (``order="random"``) or
    taken in turn (``"sequential"``: episode k = started * num_envs + e plays window
    k % n_windows and value k // n_windows). Raises ``ValueError`` for an unknown option key, a
    window out of range or a value not in ``values`` (a number equal to one of them; a bool is not a
    number here), before drawing anything: a refused option leaves ``rng`` as it was. A named value plays
    as the listed one it equals (``np.float32(1.1)`` names load 1.1, not 1.100000023841858).

    ``groups`` (a workload mixture, ``envs.core.mixture``): window offsets of its parts, ``[0,
    ..., n_windows]``; a random episode then draws its part uniformly, a window of that part and
    the value (so every part plays equally often whatever its number of windows), and the
    option ``workload`` (a part index) restricts the draw to one part. Without ``groups`` the
    draws are exactly as before (same generator calls in the same order)."""
    known = {"window", knob} | ({"workload"} if groups is not None else set())
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"{where}: unknown reset option(s) {sorted(unknown)}; known: window, {knob}"
                         + (", workload" if groups is not None else ""))
    _with_options(where, 0, values[0], n_windows, knob, values, options)  # refused before the draw moves rng
    if groups is not None:
        return _draw_mixture_episode(where, order, rng, started, e, num_envs, n_windows, knob, values, options,
                                     groups)
    if order == "sequential":
        k = started * num_envs + e
        w, v = k % n_windows, values[(k // n_windows) % len(values)]
    elif order == "random":
        w, v = int(rng.integers(n_windows)), values[int(rng.integers(len(values)))]
    else:
        raise ValueError(f"{where}: window_order must be one of {WINDOW_ORDERS}, got {order!r}")
    return _with_options(where, w, v, n_windows, knob, values, options)


def _with_options(where: str, w: int, v: Any, n_windows: int, knob: str, values: Sequence[Any],
                  options: dict[str, Any]) -> tuple[int, Any]:
    """The drawn (window, knob value), each replaced by its reset option where one is given (the value by
    the entry of ``values`` it equals); ``ValueError`` naming the option for a window outside [0, n_windows)
    or a value that is not a number equal to a listed one (``True`` was taken as load 1.0, and
    ``np.float32(1.1)`` played load 1.100000023841858 where load 1.1 was listed)."""
    if "window" in options:
        w = options["window"]
        if not _is_integer(w) or not 0 <= w < n_windows:
            raise ValueError(f"{where}: reset option window must be an integer in [0, {n_windows}), got {w!r}")
    if knob in options:
        v = options[knob]
        listed = [x for x in values if _is_number(v) and x == v]
        if not listed:
            raise ValueError(f"{where}: reset option {knob} must be one of {list(values)}, got {v!r}")
        v = listed[0]
    return int(w), v


def _draw_mixture_episode(where: str, order: str, rng: np.random.Generator, started: int, e: int, num_envs: int,
                          n_windows: int, knob: str, values: Sequence[Any], options: dict[str, Any],
                          groups: Sequence[int]) -> tuple[int, Any]:
    """``draw_episode`` over the parts of a workload mixture (window offsets ``groups``)."""
    g = np.asarray(groups, np.int64)
    n_parts = g.size - 1
    if n_parts < 1 or g[0] != 0 or g[-1] != n_windows or (np.diff(g) < 1).any():
        raise ValueError(f"{where}: workload groups {g.tolist()} must rise strictly from 0 to {n_windows}")
    part = options.get("workload")
    if part is not None and (not _is_integer(part) or not 0 <= part < n_parts):
        raise ValueError(f"{where}: reset option workload must be an integer in [0, {n_parts}), got {part!r}")
    if order == "sequential":
        k = started * num_envs + e
        if part is None:
            w, v = k % n_windows, values[(k // n_windows) % len(values)]
        else:
            size = int(g[part + 1] - g[part])
            w, v = int(g[part]) + k % size, values[(k // size) % len(values)]
    elif order == "random":
        p = int(rng.integers(n_parts)) if part is None else int(part)
        w = int(g[p]) + int(rng.integers(g[p + 1] - g[p]))
        v = values[int(rng.integers(len(values)))]
    else:
        raise ValueError(f"{where}: window_order must be one of {WINDOW_ORDERS}, got {order!r}")
    return _with_options(where, w, v, n_windows, knob, values, options)


def _is_integer(x: Any) -> bool:
    """A Python or numpy integer, not a bool (an index or count here; a float is never truncated)."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _is_number(x: Any) -> bool:
    """A real Python or numpy number, not a bool (a reset option's knob value)."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def item_features(glob: Sequence[str], item: Sequence[str], n: int, prefix: str) -> list[str]:
    """Names of a global feature block followed by ``n`` per-item blocks (``prefix`` + index +
    ``.`` + feature), the layout every environment's observation has."""
    return list(glob) + [f"{prefix}{i}.{f}" for i in range(n) for f in item]


def options_dict(options: Any, env_name: str) -> dict:
    """Gymnasium's ``reset(options=...)`` as a dict; anything but a mapping is a one-line TypeError
    (``dict([1])`` said "cannot convert dictionary update sequence element #0")."""
    if not isinstance(options, Mapping):
        raise TypeError(f"{env_name}: reset(options=...) must be a dict such as {{'window': 0}}, "
                        f"got {type(options).__name__} {options!r:.80}")
    return dict(options)


class NativeVecEnv(SingleObjectVecEnv):
    """Seeding, per-env generators, episode selection, step bookkeeping and action checks of a
    native batched environment (see the module docstring for the subclass contract)."""

    # The environment's name in error messages ("KVAdmission").
    env_name: ClassVar[str] = "env"
    # The config field episodes sweep (the reset option besides "window"), e.g. "load".
    episode_knob: ClassVar[str] = ""
    # True where the episode that reset options name ({"window": w, knob: v}) is the same whichever
    # knob values the config lists, so one batch can play a whole sweep (agents.evaluate; tested per
    # environment in tests/test_evaluate_batched.py). Not Disaggregation: it generates its windows for
    # all of its loads in one draw.
    episodes_independent_of_sweep: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> "NativeVecEnv":
        # num_envs is checked before a subclass's __init__ builds its scenario and buffers: 0 or -1 was an
        # IndexError in SB3's VecEnv (or numpy's "negative dimensions"), 2.5 a TypeError, none naming it
        # (pickle calls __new__ without arguments: nothing to check)
        n = args[0] if args else kwargs.get("num_envs", 1)
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 1:
            raise ValueError(f"{cls.env_name}: num_envs must be an integer >= 1, got {n!r}")
        # 2**40 built a list of 2**40 generators (hours) or a MemoryError; the memory the batch's arrays take
        # each environment checks before building them (envs.config_check.check_sizes)
        check_count(cls.env_name, "num_envs", n)
        return super().__new__(cls)

    def __init__(self, num_envs: int, observation_space: gym.spaces.Space, action_space: gym.spaces.Discrete,
                 seed: int | None = None):
        self.render_mode = None  # SB3 reads it in __init__; the Gymnasium view renders (VecEnvView)
        super().__init__(num_envs, observation_space, action_space)
        E = num_envs
        # MultiDiscrete (one choice per component, e.g. Disaggregation-v0's role per instance):
        # actions are [E, D]; masks are the components' masks side by side ([E, sum(nvec)]).
        nvec = getattr(action_space, "nvec", None)
        self.nvec = None if nvec is None else np.asarray(nvec, np.int64).reshape(-1)
        self.n_actions = int(action_space.n) if self.nvec is None else int(self.nvec.sum())
        self._rngs = [np.random.default_rng() for _ in range(E)]
        self._episodes_started = np.zeros(E, np.int64)
        self._returns = np.zeros(E, np.float64)
        self._lengths = np.zeros(E, np.int64)
        self._actions = np.zeros(E if self.nvec is None else (E, len(self.nvec)), np.int64)
        self._rew = np.zeros(E, np.float64)
        self._term = np.zeros(E, np.bool_)
        self._trunc = np.zeros(E, np.bool_)
        self._reset_opts: list[dict[str, Any]] = [{} for _ in range(E)]
        self._needs_reset = np.ones(E, np.bool_)
        self._seeded = False
        # Sequential episode numbering: env e plays as env _seq_index[e] of a batch of _seq_total
        # (batch_slice, number_episodes).
        self._seq_index = np.arange(E, dtype=np.int64)
        self._seq_total = E
        if seed is not None:
            self.seed(seed)

    def batch_slice(self, first: int, total: int) -> None:
        """This batch is envs ``first ... first + num_envs - 1`` of a batch of ``total`` (a worker
        of ``envs.subproc_vec``): ``window_order="sequential"`` then numbers episodes as that batch
        does (seeding is the caller's: ``seed(s + first)``). ``ValueError`` if the range does not fit."""
        for name, x in (("first", first), ("total", total)):
            if not _is_integer(x):
                raise TypeError(f"{self.env_name}: batch_slice {name} must be an integer, got {x!r}")
        if not (0 <= first and first + self.num_envs <= total):
            raise ValueError(f"{self.env_name}: batch_slice({first}, {total}) does not hold {self.num_envs} envs")
        self.number_episodes(range(first, first + self.num_envs), total)

    def number_episodes(self, index: Sequence[int], total: int) -> None:
        """``window_order="sequential"``: env e numbers its episodes as env ``index[e]`` of a batch
        of ``total`` does (its k-th episode is the batch's episode ``k * total + index[e]``), so
        envs of one batch can replay the episodes of several smaller ones side by side
        (``agents.evaluate`` plays every load level of a sweep in one batch; ``batch_slice`` is
        the contiguous case). ``ValueError`` for ``index`` not of length ``num_envs`` or an entry
        outside ``[0, total)``; ``TypeError`` for a ``total`` or entry that is not an integer (a
        float is not truncated, a bool is not a number here)."""
        if not _is_integer(total):
            raise TypeError(f"{self.env_name}: number_episodes total must be an integer, got {total!r}")
        entries = list(index)
        bad = [x for x in entries if not _is_integer(x)]
        if bad:
            raise TypeError(f"{self.env_name}: number_episodes indices must be integers, got {bad[0]!r}")
        if len(entries) != self.num_envs or any(not 0 <= x < total for x in entries):
            raise ValueError(f"{self.env_name}: number_episodes needs {self.num_envs} indices in [0, {total}), "
                             f"got {[int(x) for x in entries]}")
        self._seq_index, self._seq_total = np.array([int(x) for x in entries], np.int64), int(total)

    # --- seeding and episodes
    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Env e's generator becomes ``default_rng(seed + e)`` at once and again at the next
        ``reset()`` (which also restarts the episode counters); returns the per-env seeds. ``ValueError``
        naming ``seed`` unless it is None or an integer >= 0 (:func:`check_seed`; nothing changes then)."""
        per_env = isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, str)
        seeds = super().seed(check_seed(seed, self.env_name, more=(
            ", one base seed (env e gets seed + e; per-env seeds go to reset(seed=[...]) or seed_each)"
            if per_env else "")))
        self._rngs = [np.random.default_rng(s) for s in seeds]
        self._seeded = True
        return seeds

    def seed_each(self, seeds: Sequence[int | None]) -> None:
        """Env e's generator becomes ``default_rng(seeds[e])`` (None: fresh entropy) at once and
        again at the next ``reset()``, which restarts the episode counters. ``ValueError`` naming
        ``seeds[e]`` for an entry that is not None or an integer >= 0."""
        if len(seeds) != self.num_envs:
            raise ValueError(f"{self.env_name}: seed_each got {len(seeds)} seeds for {self.num_envs} envs")
        seeds = [check_seed(s, self.env_name, f"seeds[{e}]") for e, s in enumerate(seeds)]
        self._seeds = list(seeds)
        self._rngs = [np.random.default_rng(s) for s in seeds]
        self._seeded = True

    def draw_episode(self, e: int, n_windows: int, values: Sequence[Any],
                     groups: Sequence[int] | None = None) -> tuple[int, Any]:
        """Window and ``episode_knob`` value of env ``e``'s next episode (``draw_episode``;
        ``groups``: window offsets of a workload mixture's parts); counts the episode."""
        out = draw_episode(self.env_name, self.config.window_order, self._rngs[e], int(self._episodes_started[e]),
                           int(self._seq_index[e]), self._seq_total, n_windows, self.episode_knob, values,
                           self._reset_opts[e], groups)
        self._episodes_started[e] += 1
        return out

    def reset(self) -> np.ndarray:
        for e, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[e] = np.random.default_rng(s)
        if self._seeded or any(s is not None for s in self._seeds):
            self._episodes_started[:] = 0
            self._seeded = False
        self._reset_opts = [dict(o or {}) for o in self._options]
        self._reset_seeds()
        self._reset_options()
        envs = np.arange(self.num_envs)
        try:
            with draws_undone_on_error(self._rngs, self._episodes_started):
                self._reset_envs(envs)
        except Exception:  # and no env steps on a half-reset batch
            self._needs_reset[:] = True
            raise
        finally:
            self._reset_opts = [{} for _ in range(self.num_envs)]
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._needs_reset[:] = False
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs.astype(np.float32)

    def restart(self, envs: Sequence[int]) -> np.ndarray:
        """Start the next episode of ``envs`` (indices into the batch) now, as the autoreset of an episode that ended
        does (the same draws from each env's generator), and restart their returns and lengths: a time limit's
        truncation (``envs.vector``'s ``max_episode_steps``). Returns their first observations, [len(envs), F]
        float32."""
        idx = np.asarray(envs, np.int64)
        self._reset_envs(idx)
        self._returns[idx] = 0.0
        self._lengths[idx] = 0
        return self._obs[idx].astype(np.float32)

    # --- stepping
    def _accept_actions(self, a: np.ndarray) -> np.ndarray:
        """The actions every env applies, from checked integers ``a`` [E] (default: as given;
        an environment may refuse or replace masked ones)."""
        return a

    def step_async(self, actions: np.ndarray) -> None:
        if self._needs_reset.any():
            e = int(np.argmax(self._needs_reset))
            raise RuntimeError(f"{self.env_name}: step() before reset() or after the episode ended (env {e}); "
                               "call reset() first")
        if self.nvec is None:
            a = check_actions(actions, (self.num_envs,), self.n_actions, self.env_name)
        else:
            a = check_multi_actions(actions, self.num_envs, self.nvec, self.env_name)
        self._actions[:] = self._accept_actions(a)

    def episode_extras(self, e: int) -> dict[str, Any]:
        """Optional per-episode records of env ``e`` for ``infos`` (``requests``, ``series``)."""
        return {}

    def episode_info(self, e: int) -> dict[str, Any]:
        """``episode``, ``metrics`` and the extras of env ``e``'s episode that just ended."""
        return {"episode": {"r": float(self._returns[e]), "l": int(self._lengths[e])},
                "metrics": self.episode_metrics(e), **self.episode_extras(e)}

    def step_wait(self):
        self.advance()
        return self._after_advance()

    def _after_advance(self):
        """The rest of ``step_wait`` once ``advance`` has run: returns and lengths, infos of the
        episodes that ended (their metrics), their resets; ``(obs, rewards, dones, infos)``."""
        self._returns += self._rew
        self._lengths += 1
        term, trunc = self._term.copy(), self._trunc.copy()
        done = term | trunc
        self.last_terminated, self.last_truncated = term, trunc
        rewards = self._rew.astype(np.float32)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(done)
        for e in finished:
            infos[e] = {"terminal_observation": self._obs[e].astype(np.float32),
                        "TimeLimit.truncated": bool(trunc[e] and not term[e]), **self.episode_info(int(e))}
        if finished.size:
            self._reset_envs(finished)
            self._returns[finished] = 0.0
            self._lengths[finished] = 0
        return self._obs.astype(np.float32), rewards, done, infos

    def step_one(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Gymnasium's step for env 0 of a batch of one, without the autoreset: after the episode
        ends, ``step`` raises until ``reset()``."""
        if self.num_envs != 1:
            raise RuntimeError(f"{self.env_name}: step_one needs a batch of one, not {self.num_envs}")
        a = np.asarray(action)
        if self.nvec is None and a.shape not in ((), (1,)):
            raise ValueError(f"{self.env_name}: action must be one integer in [0, {self.n_actions}) (shape () or (1,)), "
                             f"got {received(a)}")
        self.step_async(a.reshape(1) if self.nvec is None else a)
        self.advance()
        self._returns += self._rew
        self._lengths += 1
        term, trunc = bool(self._term[0]), bool(self._trunc[0])
        info: dict[str, Any] = {}
        if term or trunc:
            info = self.episode_info(0)
            self._needs_reset[0] = True
        return self._obs[0].astype(np.float32), float(self._rew[0]), term, trunc, info

    # --- what observations and actions mean (ONNX export metadata, documentation)
    def feature_names(self) -> list[str]:
        """Name of each observation entry, in order (default: ``obs[i]``)."""
        return [f"obs[{i}]" for i in range(self.observation_space.shape[0])]

    def action_meanings(self) -> list[str]:
        """What each action index does, in order (default: ``action i``)."""
        return [f"action {i}" for i in range(self.n_actions)]

    # --- rendering
    def render_text(self, e: int = 0) -> str:
        """The state of env ``e`` as text (each environment says what matters in its own)."""
        raise NotImplementedError(f"{self.env_name}: no text rendering")


class VecEnvView(gym.Env):
    """The Gymnasium ``Env`` (E = 1) of a native batched environment: ``vec_class(1, **kwargs)``.

    ``reset(seed=s)`` plays as env e of a batch seeded s - e; ``reset(options=...)`` names the
    episode (``{"window": w, knob: v}``). ``render_mode``: None or ``"ansi"`` (``render()``
    returns the cluster state as text); any other mode raises :class:`RenderModeError` (a ``ValueError`` and a
    ``TypeError``: SB3's ``make_vec_env`` then builds the env without it).

    ``np_random`` is the generator the environment draws from (its episodes, sampled candidates, noisy
    predictions), as Gymnasium documents: ``reset(seed=s)`` seeds it once and ``reset()`` continues it; a
    ``Generator`` assigned to it drives the next episodes (``np_random_seed`` is then -1); an env built
    without a seed has one from fresh entropy whose seed ``np_random_seed`` gives. (It was a second generator
    that nothing drew from: assigning one changed nothing, and its state said nothing of the env's.)
    """

    vec_class: ClassVar[type[NativeVecEnv]]
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"]}

    def __init__(self, render_mode: str | None = None, **kwargs: Any):
        self.render_mode = check_render_mode(render_mode, self.metadata["render_modes"], self.vec_class.env_name)
        self._vec = self.vec_class(1, **kwargs)
        self.observation_space = self._vec.observation_space
        self.action_space = self._vec.action_space
        self.config = self._vec.config
        if kwargs.get("seed") is not None:
            self._np_random_seed = int(kwargs["seed"])
        else:  # fresh entropy, its seed known (Gymnasium's np_random_seed); was the vec's own, seed unknown
            self._np_random, self._np_random_seed = seeding.np_random()

    @property
    def _np_random(self) -> np.random.Generator:
        """Gymnasium's generator attribute (``np_random`` reads and assigns it): env 0's own."""
        return self._vec._rngs[0]

    @_np_random.setter
    def _np_random(self, value: np.random.Generator) -> None:
        self._vec._rngs[0] = value
        self._vec._reset_seeds()  # a seed the constructor left for the first reset would replace it

    @property
    def vec(self) -> NativeVecEnv:
        """The batch of one underneath (privileged channels of heuristics and oracles)."""
        return self._vec

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = check_seed(seed, self._vec.env_name)
        super().reset(seed=seed)
        if seed is not None:
            self._vec.seed(seed)
        if options is not None:
            self._vec.set_options(options_dict(options, self._vec.env_name))
        return self._vec.reset()[0], {}

    def step(self, action):
        return self._vec.step_one(action)

    def action_masks(self) -> np.ndarray:
        return self._vec.action_masks()[0]

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._vec.render_text(0)
        return None
