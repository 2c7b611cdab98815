"""Where `python train.py`'s learner spends its time: rollout collection against the PPO update, and the
update's gradient step by part (issue 16).

    python -m agents.profile_train [--env ID] [--n-envs E] [--vec-procs N] [--hyperparams KEY=VALUE ...] [--rollouts N]

Builds the model ``train.py`` builds (``agents.training.make_model``: the environment's ``HYPERPARAMS``
with ``--hyperparams`` on top, one torch thread, distribution validation off as in ``train.py``), learns
two rollouts to warm up, then times N rollouts (default 5): ``collect_rollouts`` and ``train`` each, the
medians in seconds per rollout, and the env steps per second they give. ``--vec-procs N`` steps the envs in N
worker processes as ``train.py --vec-procs`` does (``envs.subproc_vec``), so it shows what holds a multi-process
run: collection (the workers and the policy's forward passes) or the update, which no worker speeds up. Then ``train`` under cProfile, its time per gradient step split by the
functions that spend it (self time, so cProfile's own overhead on Python calls lands in "SB3/Python"):
forward (``linear``, ``tanh``), backward (autograd), distributions (``torch.distributions`` and
sb3-contrib's masked ones: construction, ``logsumexp``, masking, entropy), optimizer (Adam, gradient
clipping), rollout buffer (``get``, ``_get_samples``), and the rest: SB3's loss arithmetic, logging and
``.item()`` calls, Python. Prints a table; the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time

from agents.cli import single_env_arg

PARTS = (  # (part, test on a profiled Python function's file and name); first match wins
    ("backward", lambda f, n: "autograd" in f or "run_backward" in n),
    ("forward (linear, tanh)", lambda f, n: "torch/nn/modules" in f or "torch_layers.py" in f),
    ("distributions", lambda f, n: "distributions" in f),
    ("optimizer (Adam, clip)", lambda f, n: "torch/optim" in f or "clip_grad" in f),
    ("rollout buffer", lambda f, n: "buffers.py" in f),
)
OTHER = "SB3 loss, logging, Python"


def _part(file: str, name: str) -> str:
    return next((p for p, test in PARTS if test(file, name)), OTHER)


def split(stats: pstats.Stats) -> dict[str, float]:
    """Self seconds of the profiled run by part of ``PARTS``: a Python function's by its own file, a
    built-in's (torch's C++ ops) by the files of the functions that called it, in proportion to the time
    spent under each caller (``linear`` called from ``torch/nn/modules`` is forward, ``logsumexp`` from
    ``torch/distributions`` distributions, ``add_`` from ``torch/optim`` optimizer); the rest is OTHER."""
    out = {name: 0.0 for name, _ in PARTS} | {OTHER: 0.0}
    for (file, _line, name), (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        if file != "~" or "run_backward" in name or not callers:
            out[_part(file, name)] += tottime
            continue
        for (cfile, _cline, cname), caller in callers.items():
            out[_part(cfile, cname)] += caller[2]  # (calls, primitive calls, self time, cumulative time)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agents.profile_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", type=single_env_arg, default="servegym/KVAdmission-v0",
                   help="environment id, short name or package name (a short name was a KeyError traceback)")
    p.add_argument("--n-envs", type=int, default=None, help="default: train.py's for the environment")
    p.add_argument("--vec-procs", type=int, default=1, help="worker processes stepping the envs (train.py's flag)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--rollouts", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if a.rollouts < 1:
        p.error(f"--rollouts {a.rollouts}: must be >= 1")
    if a.n_envs is not None and a.n_envs < 1:  # 0 silently became the default, a negative count a traceback
        p.error(f"--n-envs {a.n_envs}: must be >= 1")
    if a.vec_procs < 1:
        p.error(f"--vec-procs {a.vec_procs}: must be >= 1")

    import torch as th
    from stable_baselines3.common.callbacks import CallbackList

    import envs
    from agents.sb3_policy import no_distribution_validation
    from agents.training import DEFAULT_ALGO, default_n_envs, make_model, parse_hyperparams
    from envs.subproc_vec import SubprocNativeVecEnv

    th.set_num_threads(1)  # train.py's --threads default
    algo = DEFAULT_ALGO.get(a.env, "ppo")
    n_envs = default_n_envs(a.env, algo) if a.n_envs is None else a.n_envs
    if a.vec_procs > n_envs:
        p.error(f"--vec-procs {a.vec_procs}: more worker processes than envs ({n_envs})")
    try:
        overrides = parse_hyperparams(a.hyperparams)
        if a.vec_procs > 1:
            vec = SubprocNativeVecEnv(a.env, n_envs, a.vec_procs, seed=a.seed, trace="default", split="train")
        else:
            vec = envs.make_vec(a.env, n_envs, seed=a.seed, trace="default", split="train")
        model = make_model(algo, a.env, vec, a.seed, None, overrides)
    except ValueError as err:
        p.error(str(err))
    with no_distribution_validation():
        model.learn(2 * model.n_steps * n_envs)  # warm-up: kernels compiled, buffers allocated
        callback = CallbackList([])
        callback.init_callback(model)
        collect, update = [], []
        for _ in range(a.rollouts):
            t = time.perf_counter()
            model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
            collect.append(time.perf_counter() - t)
            t = time.perf_counter()
            model.train()
            update.append(time.perf_counter() - t)
        prof = cProfile.Profile()
        prof.enable()
        model.train()
        prof.disable()
    vec.close()
    steps = model.n_epochs * -(-model.n_steps * n_envs // model.batch_size)  # gradient steps per update
    c, u = statistics.median(collect), statistics.median(update)
    print(f"{a.env} {algo} {n_envs} envs x {model.n_steps} steps, batch {model.batch_size}, {model.n_epochs} epochs "
          f"({steps} gradient steps per update), net {model.policy.net_arch}")
    procs = f", {a.vec_procs} worker processes" if a.vec_procs > 1 else ""
    print(f"per rollout: collect {c:.3f} s, update {u:.3f} s ({u / (c + u):.0%} of the learner's time), "
          f"medians of {a.rollouts}{procs}")
    rollout = model.n_steps * n_envs
    print(f"env steps per second: {rollout / (c + u):,.0f} in all, {rollout / c:,.0f} while collecting")
    parts = split(pstats.Stats(prof))
    total = sum(parts.values())
    print(f"update under cProfile: {total / steps * 1e3:.1f} ms per gradient step")
    for name, sec in parts.items():
        print(f"  {name:24s} {sec / steps * 1e3:6.2f} ms  {sec / total:4.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
