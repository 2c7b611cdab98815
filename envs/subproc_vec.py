"""A native batched environment spread over worker processes: E envs on N cores.

``SubprocNativeVecEnv(env_id, num_envs, procs, seed, **kwargs)`` is an SB3 ``VecEnv`` of
``num_envs`` envs whose worker process k holds the native VecEnv of a contiguous slice of them
(``envs.make_vec``; sizes differ by at most one). It follows SB3's ``SubprocVecEnv`` (pipes,
``forkserver`` where available, else ``spawn``; daemon workers; ``step_async`` sends to every
worker before ``step_wait`` collects), with a batch per worker instead of one env per process.

Same seed, same result: env e plays exactly as env e of the one-process batch. The slice from
env ``lo`` is seeded ``seed + lo`` (env e's generator is ``default_rng(seed + e)`` either way)
and numbers its episodes as envs ``lo ...`` of ``num_envs`` (``NativeVecEnv.batch_slice``:
``window_order="sequential"`` plays the same episodes). Observations, rewards, dones, infos and
action masks come back in env order; ``action_masks()`` and ``env_method("action_masks")`` serve
MaskablePPO. Errors inside a worker come back as the worker's exception, raised here.

``close()`` ends the workers (a second call does nothing); any call that needs them afterwards (``reset``,
``step``, ``seed``, ``action_masks``, ``get_attr``, ``set_attr``, ``env_method``, ``call_first``) raises one
``RuntimeError`` saying the env is closed (it was the pipe's ``BrokenPipeError``), as Gymnasium's
``AsyncVectorEnv`` raises ``ClosedEnvironmentError``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from envs.native_vec import check_actions, check_multi_actions, check_seed
from traces.checks import is_integer


def split_envs(num_envs: int, procs: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` env ranges of ``procs`` workers over ``num_envs`` envs, in order, sizes
    differing by at most one. ``ValueError`` unless ``1 <= procs <= num_envs``."""
    if not is_integer(procs) or not 1 <= procs <= num_envs:
        raise ValueError(f"procs must be an integer in [1, num_envs={num_envs}], got {procs!r}")
    base, extra = divmod(num_envs, procs)
    out, lo = [], 0
    for k in range(procs):
        hi = lo + base + (1 if k < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def _worker(remote, parent_remote, env_id: str, lo: int, hi: int, num_envs: int, seed: int | None,
            kwargs: dict[str, Any]) -> None:
    parent_remote.close()
    import envs

    try:
        vec = envs.make_vec(env_id, hi - lo, seed=None if seed is None else seed + lo, **kwargs)
        vec.batch_slice(lo, num_envs)
        remote.send(("ok", (vec.observation_space, vec.action_space)))
    except Exception as err:  # noqa: BLE001 - sent to the parent, raised there
        remote.send(("error", err))
        remote.close()
        return
    while True:
        try:
            cmd, data = remote.recv()
        except EOFError:
            break
        try:
            if cmd == "step":
                vec.step_async(data)
                out = vec.step_wait()
            elif cmd == "reset":
                out = vec.reset()
            elif cmd == "masks":
                out = vec.action_masks()
            elif cmd == "seed":
                out = vec.seed(data)
            elif cmd == "set_options":
                out = vec.set_options(data)
            elif cmd == "get_attr":
                out = vec.get_attr(*data)
            elif cmd == "set_attr":
                out = vec.set_attr(*data)
            elif cmd == "env_method":
                name, args, kw, idx = data
                out = vec.env_method(name, *args, indices=idx, **kw)
            elif cmd == "call":
                out = data(vec)
            elif cmd == "close":
                vec.close()
                remote.send(("ok", None))
                break
            else:
                raise ValueError(f"SubprocNativeVecEnv worker: unknown command {cmd!r}")
            remote.send(("ok", out))
        except Exception as err:  # noqa: BLE001 - sent to the parent, raised there
            remote.send(("error", err))
    remote.close()


class SubprocNativeVecEnv(VecEnv):
    """``num_envs`` envs of ``env_id`` in ``procs`` worker processes (see the module docstring).

    ``ValueError`` for ``procs`` outside ``[1, num_envs]``; an error building the env in a worker
    (unknown config field, bad trace ...) is raised here as the worker raised it."""

    def __init__(self, env_id: str, num_envs: int, procs: int, seed: int | None = None,
                 start_method: str | None = None, **kwargs: Any):
        self.slices = split_envs(num_envs, procs)
        if start_method is None:
            start_method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(start_method)
        self.env_id = env_id
        self.closed = False
        self.waiting = False
        self.remotes, self.processes = [], []
        for lo, hi in self.slices:
            remote, work = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(work, remote, env_id, lo, hi, num_envs, seed, kwargs), daemon=True)
            p.start()
            work.close()
            self.remotes.append(remote)
            self.processes.append(p)
        spaces = [self._recv(r) for r in self.remotes]
        super().__init__(num_envs, *spaces[0])

    # --- plumbing
    def _check_open(self, call: str) -> None:
        """``RuntimeError`` naming ``call`` once ``close()`` has ended the workers (the pipe's ``BrokenPipeError``
        named nothing)."""
        if self.closed:
            raise RuntimeError(f"SubprocNativeVecEnv {self.env_id}: {call}() after close(); its worker processes "
                               "have ended: build a new one")

    def _send(self, remote, message: tuple[str, Any]) -> None:
        self._check_open({"masks": "action_masks", "call": "call_first"}.get(message[0], message[0]))
        remote.send(message)

    def _recv(self, remote) -> Any:
        status, out = remote.recv()
        if status == "error":
            self.close()
            raise out
        return out

    def _all(self, cmd: str, data: Sequence[Any] | None = None) -> list[Any]:
        for k, r in enumerate(self.remotes):
            self._send(r, (cmd, None if data is None else data[k]))
        return [self._recv(r) for r in self.remotes]

    def _where(self, indices) -> list[tuple[int, list[int]]]:
        """(worker, its local indices) of the global ``indices``, in the order given."""
        out: list[tuple[int, list[int]]] = []
        for i in self._get_indices(indices):
            k = next(k for k, (lo, hi) in enumerate(self.slices) if lo <= i < hi)
            if out and out[-1][0] == k:
                out[-1][1].append(i - self.slices[k][0])
            else:
                out.append((k, [i - self.slices[k][0]]))
        return out

    # --- VecEnv
    def reset(self) -> np.ndarray:
        self._check_open("reset")
        self._apply_seeds_and_options()
        obs = np.concatenate(self._all("reset"))
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def _apply_seeds_and_options(self) -> None:
        """SB3's ``seed()`` / ``set_options()`` take effect at the next reset, as in one process."""
        if any(s is not None for s in self._seeds):
            if any(s is None for s in self._seeds) or np.any(np.diff(self._seeds) != 1):
                raise ValueError(f"SubprocNativeVecEnv: seeds must be consecutive (seed + env), got {self._seeds}")
            self._all("seed", [self._seeds[lo] for lo, _ in self.slices])
        if any(self._options):
            self._all("set_options", [list(self._options[lo:hi]) for lo, hi in self.slices])
        self._reset_seeds()
        self._reset_options()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Env e's generator becomes ``default_rng(seed + e)`` at once and again at the next
        ``reset()``, as ``NativeVecEnv.seed``."""
        seed = check_seed(seed, f"SubprocNativeVecEnv {self.env_id}")
        if seed is None:
            return [None] * self.num_envs
        self._all("seed", [seed + lo for lo, _ in self.slices])
        return [seed + e for e in range(self.num_envs)]

    def step_async(self, actions: np.ndarray) -> None:
        self._check_open("step")
        # The whole batch's shape checked here: a worker sees only its slice (shape and dtype, never the array).
        nvec = getattr(self.action_space, "nvec", None)
        where = f"SubprocNativeVecEnv {self.env_id}"
        if nvec is None:
            a = check_actions(actions, (self.num_envs,), int(self.action_space.n), where)
        else:
            a = check_multi_actions(actions, self.num_envs, np.asarray(nvec, np.int64).reshape(-1), where)
        for (lo, hi), r in zip(self.slices, self.remotes):
            self._send(r, ("step", a[lo:hi]))
        self.waiting = True

    def step_wait(self):
        outs = [self._recv(r) for r in self.remotes]
        self.waiting = False
        obs, rew, done, infos = zip(*outs)
        return (np.concatenate(obs), np.concatenate(rew), np.concatenate(done),
                [i for part in infos for i in part])

    def action_masks(self) -> np.ndarray:
        """``[num_envs, n_actions]`` bool, every worker's masks in env order."""
        return np.concatenate(self._all("masks"))

    def close(self) -> None:
        if self.closed:
            return
        if self.waiting:
            for r in self.remotes:
                try:
                    r.recv()
                except EOFError:
                    pass
        for r in self.remotes:
            try:
                r.send(("close", None))
                r.recv()
            except (BrokenPipeError, EOFError, ConnectionResetError):
                pass
        for p in self.processes:
            p.join(timeout=10)
        self.closed = True

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        out = []
        for k, idx in self._where(indices):
            self._send(self.remotes[k], ("get_attr", (attr_name, idx)))
            out += self._recv(self.remotes[k])
        return out

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        for k, idx in self._where(indices):
            self._send(self.remotes[k], ("set_attr", (attr_name, value, idx)))
            self._recv(self.remotes[k])

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks":
            return list(self.action_masks()[list(self._get_indices(indices))])
        out = []
        for k, idx in self._where(indices):
            self._send(self.remotes[k], ("env_method", (method_name, method_args, method_kwargs, idx)))
            out += self._recv(self.remotes[k])
        return out

    def call_first(self, fn) -> Any:
        """``fn(batch)`` run in the first worker on its native batch (``fn`` picklable: a
        module-level function); its result, pickled back."""
        self._send(self.remotes[0], ("call", fn))
        return self._recv(self.remotes[0])

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
