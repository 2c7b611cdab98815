"""Train an agent on a servegym environment, then score it against the heuristics.

    python train.py                      # KVAdmission-v0, embedded default trace, DAgger, about half a minute
    python train.py --env servegym/KVAdmission-v0 --algo ppo|maskable-ppo|dqn --timesteps N \\
        --n-envs E [--vec-procs N] --trace NAME|PATH --env-kwargs load=1.1 --seed S --out DIR [--resume]

With no length given, an environment's default recipe runs (``agents.training``): KVAdmission-v0 imitates its
privileged teacher (DAgger, 8,192 decisions, no RL steps; ``default_imitation``), the others run RL alone
(``default_timesteps``). RL after imitation: ``--imitate N --timesteps M`` runs M PPO steps on the imitated
policy; ``--init FILE`` starts from a saved model's policy instead (a DAgger run's ``final.zip``); ``--critic-warmup
W`` trains the value function alone for the first W of the M steps.

``python -m agents.train`` is the same command from any directory (``train.py`` at the
repository root is a shim over this module).

Logs to TensorBoard (``DIR/tb``: RL curves and serve/* domain metrics), checkpoints atomically
to ``DIR/checkpoint.zip`` (``--resume`` continues from it, with the hyperparameters recorded in
``DIR/hyperparams.json`` when the run was created; different ``--hyperparams`` are refused), saves
``DIR/final.zip`` and, unless ``--no-eval``, evaluates it with every heuristic on held-out windows
and prints the table (also ``DIR/eval.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import shlex
import sys
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.save_util import load_from_zip_file

import envs
from agents import cli, obs_version
from agents.eval_ahead import EvalAhead, merge
from agents.evaluate import evaluate, print_tables, repeated_sweep_values, report_json
from agents.family_vec import (SLO_FIELDS, FamilyVecEnv, envs_per_family, family_specs, hardware_specs,
                                make_family_vec, slo_tier_specs, training_family_specs)
from agents.imitation import has_teacher, imitate, teacher_for
from agents.policy import heuristic_names
from agents.provenance import code_version, platform_record
from agents.policy_base import PolicyFileError
from agents.sb3_policy import ALGOS, load_model, no_distribution_validation
from agents.training import (
    DEFAULT_ALGO,
    DEVICES,
    CriticWarmup,
    ServeCallback,
    SnapshotCallback,
    atomic_save,
    atomic_write_text,
    default_imitation,
    default_n_envs,
    default_timesteps,
    make_model,
    parse_hyperparams,
    policy_spec,
    resolve_device,
    rollout_steps,
    rounded_timesteps,
)
from envs import options
from envs.kv_admission.hardware import hardware_record
from envs.subproc_vec import SubprocNativeVecEnv
from traces.checks import is_integer, is_real

HARDWARE_ENV = "servegym/KVAdmission-v0"  # the environment with hardware distributions (--hardware)


def build_parser() -> cli.Parser:
    p = cli.make_parser("python train.py", __doc__, selected=cli.options.single_agent_ids())
    p.add_argument("--env", type=cli.single_env_arg, default="servegym/KVAdmission-v0",
                   help="environment id, short name or package name (listed below)")
    p.add_argument("--algo", choices=ALGOS, default=None, help="default: the environment's own")
    p.add_argument("--timesteps", type=int, default=None,
                   help="RL steps (0: imitation only; default the environment's: 200,000 for KVAdmission-v0's "
                        "MaskablePPO, else 300,000; agents.training.default_timesteps; 0 where the environment's "
                        "default recipe is DAgger)")
    p.add_argument("--imitate", type=int, default=None, metavar="N",
                   help="first N decisions of DAgger from the env's privileged teacher (default 0, except with "
                        "none of --timesteps, --imitate-kwargs, --init, --resume, --snapshots or --critic-warmup "
                        "given on an environment whose default recipe is DAgger: KVAdmission-v0's MaskablePPO, "
                        "8,192 decisions on 16 envs, epochs=10 batch_size=512; agents.training.default_imitation) "
                        "(agents/imitation.py; PrefixEviction-v0: Belady among the candidates; "
                        "Disaggregation-v0: agents/disaggregation_teacher.py; KVAdmission-v0: "
                        "agents/kv_admission_teacher.py)")
    p.add_argument("--imitate-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="DAgger settings (agents.imitation.imitate): rounds, epochs, batch_size, learning_rate, "
                        "target, max_grad_norm (a number, or None for no gradient clipping), beta0 (the teacher's "
                        "share of round 0, in [0, 1]), roll_in ('teacher' or 'first')")
    p.add_argument("--init", type=Path, default=None, metavar="FILE",
                   help="start from the policy weights of this saved model (a train.py final.zip of the same env, "
                        "algorithm and network: e.g. a DAgger run's, so --timesteps fine-tunes it with RL); the "
                        "hyperparameters are this run's")
    p.add_argument("--critic-warmup", type=int, default=0, metavar="N",
                   help="the first N RL steps train the value function only, the policy frozen "
                        "(agents.training.CriticWarmup: after --imitate or --init the critic is untrained)")
    p.add_argument("--teacher-data", type=Path, default=None, metavar="FILE",
                   help="the teacher's precomputed plans for --imitate (Disaggregation-v0: "
                        "python -m agents.disaggregation_teacher ... --out FILE; KVAdmission-v0: "
                        "python -m agents.kv_admission_teacher ... --out FILE); default: computed now")
    p.add_argument("--teacher-procs", type=int, default=1, metavar="N",
                   help="worker processes computing the teacher's replays when --teacher-data is not given")
    p.add_argument("--scenarios", nargs="+", default=None, metavar="GLOB",
                   help="train on the configs of these main-track leaderboard scenarios of --env "
                        "(agents.scenarios ids, fnmatch globs; training split): the --n-envs envs are "
                        "split evenly among them, --env-kwargs apply on top of each; evaluation plays each")
    p.add_argument("--families", nargs="+", default=None, metavar="NAME",
                   help="train on these training families of --env (agents.scenarios.TRAINING_FAMILIES; 'all': "
                        "every one; Autoscale-v0: bursty, servegen_m_mid, servegen_m_small), each its own trace and "
                        "env kwargs, training split: the --n-envs envs split evenly among them, --env-kwargs on top")
    p.add_argument("--slo-tiers", nargs="+", default=None, metavar="TIER[:LOADS]",
                   help="train on --env-kwargs' config (its trace or workloads mixture) under each of these SLO "
                        "tiers (agents.scenarios.slo_tier_kwargs ids: mlperf_server, mlperf_interactive, "
                        "distserve_chatbot, ..._p99tbt), each optionally at its own loads (mlperf_interactive:0.9,1.3): "
                        "one family per tier, the --n-envs envs split evenly among them (agents.family_vec.slo_tier_specs)")
    p.add_argument("--hardware", default=None, metavar="NAME[:DRAWS[:SEED]]",
                   help="KVAdmission-v0: train on --env-kwargs' config (its trace or workloads mixture) on DRAWS engines "
                        "(GPU x model x KV capacity fraction) drawn with SEED (default 0) from hardware distribution "
                        "NAME (envs.kv_admission.hardware.DISTRIBUTIONS: nvidia-v1), one family per engine, the "
                        "--n-envs envs split evenly among them (agents.family_vec.hardware_specs); run.json records "
                        "the draw")
    p.add_argument("--n-envs", type=int, default=None,
                   help="envs stepped as one batch (default: the environment's own, "
                        "agents/training.py N_ENVS; 16 where not listed)")
    p.add_argument("--vec-procs", type=int, default=1, metavar="N",
                   help="worker processes stepping the envs (envs/subproc_vec.py, SB3's SubprocVecEnv design "
                        "with a native batch of about E/N envs per worker): 1 = one batch in this process; "
                        "the same seed gives the same run for any N")
    p.add_argument("--trace", default=None,
                   help="built-in trace name (listed below) or path to a trace file (default: the "
                        "environment's own, 'default'); --env-kwargs trace=... is the same setting")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config fields of the environment (listed below per environment)")
    p.add_argument("--hyperparams", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override the algorithm's keyword arguments (agents/training.py HYPERPARAMS): "
                        "Python literals, dotted keys into dicts (policy_kwargs.net_arch=[64,64])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/kv_admission"))
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.zip")
    p.add_argument("--save-every", type=int, default=50_000, help="env steps between checkpoints")
    p.add_argument("--snapshots", type=int, nargs="+", default=[], metavar="N",
                   help="also keep DIR/steps_N.zip: the model a run of --timesteps N ends with, for each N "
                        "(a held-out learning curve: python -m agents.evaluate --policy DIR/steps_N.zip "
                        "--seed 10000+SEED plays train.py's evaluation; agents/training.py SnapshotCallback)")
    p.add_argument("--eval-episodes", type=int, default=8)
    p.add_argument("--eval-at", "--eval-load", dest="eval_at", type=float, default=None,
                   help="evaluate at this value of the env's swept knob only (KVAdmission: load; "
                        "default: every value)")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="torch device of the policy: auto = cpu for small MLP policies (every "
                        "default here; SB3 advises CPU for them), cuda where available otherwise")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (small MLPs train fastest on one; more only contend)")
    return p


def workload_record(vec) -> dict:
    """``{"workload_parts": [{"name", "seed"}, ...]}`` of an env trained on a workload mixture
    (``workloads`` config; envs.core.mixture): every family and generator seed episodes were drawn
    from, for the run record; empty for an env on one trace."""
    if isinstance(vec, SubprocNativeVecEnv):  # every worker builds the same scenario: ask the first
        return vec.call_first(workload_record)
    if isinstance(vec, FamilyVecEnv):  # one record when every family draws the same parts (--slo-tiers)
        recs = [workload_record(p) for p in vec.parts]
        return recs[0] if all(r == recs[0] for r in recs) else {"workload_parts_by_family": dict(zip(vec.names, recs))}
    built = getattr(vec, "scenario", None) or getattr(vec, "built", None)
    parts = getattr(built, "parts", ())
    return {"workload_parts": [p.info() for p in parts]} if parts else {}


IMITATE_KEYS = {"rounds": int, "epochs": int, "batch_size": int, "learning_rate": float, "max_grad_norm": float}
IMITATE_TARGETS = ("set", "values")  # imitate(target=...): agents/imitation.py


def parse_imitate_kwargs(items: list[str]) -> dict:
    """``--imitate-kwargs`` items as ``imitate`` keyword arguments; ``ValueError`` naming an item
    with an unknown key, a value of the wrong type, a value not finite or <= 0 (``max_grad_norm`` may also be
    None: no gradient clipping; ``beta0`` is a number in [0, 1]; ``roll_in`` 'teacher' or 'first')."""
    out = {}
    # the caller names the option (--imitate-kwargs): was reported as --hyperparams
    for key, value in parse_hyperparams(items, flag="").items():
        if key == "max_grad_norm" and value is None:
            out[key] = None
            continue
        if key == "roll_in":
            if value not in ("teacher", "first"):
                raise ValueError(f"roll_in={value!r}: expected 'teacher' or 'first'")
            out[key] = value
            continue
        if key == "beta0":  # the teacher's share of round 0 (imitate): 0 is allowed
            if not is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"beta0={value!r}: expected a number in [0, 1]")
            out[key] = float(value)
            continue
        if key == "target":
            if value not in IMITATE_TARGETS:
                raise ValueError(f"target={value!r}: expected one of {', '.join(IMITATE_TARGETS)}")
            out[key] = value
            continue
        typ = IMITATE_KEYS.get(key)
        if typ is None:
            raise ValueError(f"{key!r} is not one of {', '.join([*IMITATE_KEYS, 'target', 'beta0', 'roll_in'])}")
        if not (is_real(value, finite=True) if typ is float else is_integer(value)) or value <= 0:
            raise ValueError(f"{key}={value!r}: expected a{'n integer' if typ is int else ' finite number'} > 0")
        out[key] = typ(value)
    return out


EVAL_SPLIT = "test"  # the evaluation after training plays the held-out part of every trace
EVAL_SEED_OFFSET = 10_000  # ... with seed --seed + 10000


def eval_runs(a: argparse.Namespace, kwargs: dict, specs: list | None) -> list[tuple[object, dict]]:
    """``(trace, env_kwargs)`` of each evaluation after training: the run's own trace and
    ``--env-kwargs``, or each family's (``--scenarios``, ``--slo-tiers``); ``--eval-at`` fixes the
    environment's swept knob."""
    runs = [(a.trace, dict(kwargs))] if specs is None else [(sp.trace, dict(sp.env_kwargs)) for sp in specs]
    if a.eval_at is not None:
        knob = options.vec_class(a.env).episode_knob  # asked of the class: vec may be a subprocess wrapper
        for _, kw in runs:
            kw[knob] = a.eval_at
    return runs


def env_settings(a: argparse.Namespace) -> dict:
    """The environment's kwargs of parsed train.py arguments ``a`` (``--env-kwargs``), with ``a.trace``
    resolved: ``--trace``, else ``--env-kwargs trace=``, else ``'default'`` (each alone: both were passed to
    the environment, a TypeError traceback "got multiple values"). ``cli.UsageError`` for two different
    traces or a split other than ``train`` (the held-out windows are the evaluation's). ``agents.snapshot_eval``
    reads a recorded run's command through this too."""
    kwargs = cli.parse_env_kwargs(a.env_kwargs, a.env)
    a.trace = cli.take_env_kwarg(kwargs, "trace", "--trace", a.trace, "default")
    if kwargs.get("split", "train") != "train":
        raise cli.UsageError(f"--env-kwargs split={kwargs['split']!r}: training plays the training split "
                             "(split='train'); the held-out windows are its evaluation's")
    kwargs.pop("split", None)
    return kwargs


def main(argv: list[str] | None = None, callbacks: list | None = None) -> int:
    """The command line above; ``callbacks`` (SB3 callbacks) also run during ``learn`` (the Ray
    sweep's held-out reports for early stopping, ``agents.sweep``)."""
    p = build_parser()
    a = p.parse_args(argv)
    return cli.run_main(p, lambda: _train(a, argv, callbacks))


def resolve_length(a: argparse.Namespace, algo: str) -> None:
    """Fill ``a.timesteps``, ``a.imitate`` (and ``a.imitate_kwargs``, ``a.n_envs``) left unset with the environment's
    defaults: its DAgger recipe (``agents.training.default_imitation``) when nothing asks for RL steps or a set
    length (none of --timesteps, --imitate, --imitate-kwargs, --init, --resume, --snapshots, --critic-warmup),
    else ``default_timesteps`` RL steps and no imitation."""
    recipe = None
    if (a.timesteps is None and a.imitate is None and not a.imitate_kwargs and a.init is None and not a.resume
            and not a.snapshots and not a.critic_warmup):
        recipe = default_imitation(a.env, algo)
    if recipe is not None:
        a.timesteps, a.imitate, a.imitate_kwargs = 0, recipe["imitate"], list(recipe["imitate_kwargs"])
        if a.n_envs is None:
            a.n_envs = recipe["n_envs"]
    if a.imitate is None:
        a.imitate = 0
    if a.timesteps is None:
        a.timesteps = default_timesteps(a.env, algo)


def _train(a: argparse.Namespace, argv: list[str] | None, callbacks: list | None = None) -> int:
    try:  # a bad SERVEGYM_COMMIT was a traceback when the run record was written, after training
        code = code_version()  # taken once, before training: the commit that trained
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    algo = a.algo or DEFAULT_ALGO.get(a.env, "ppo")
    resolve_length(a, algo)
    if a.timesteps < 0 or a.imitate < 0 or a.timesteps + a.imitate < 1:
        raise cli.UsageError(f"--timesteps {a.timesteps} --imitate {a.imitate}: both must be >= 0 "
                             "and not both 0")
    for flag, v in (("--n-envs", 1 if a.n_envs is None else a.n_envs), ("--eval-episodes", a.eval_episodes),
                    ("--vec-procs", a.vec_procs),
                    ("--save-every", a.save_every), ("--threads", a.threads)):
        if v < 1:
            raise cli.UsageError(f"{flag} {v}: must be >= 1")
    if a.seed < 0:  # was reported as "--env-kwargs (none given): expected non-negative integer"
        raise cli.UsageError(f"--seed {a.seed}: must be >= 0")
    if a.eval_at is not None and not math.isfinite(a.eval_at):  # inf passed (--env-kwargs refuses it)
        raise cli.UsageError(f"--eval-at {a.eval_at}: must be a finite number")
    for i, n in enumerate(a.snapshots):
        if not 1 <= n <= a.timesteps:
            raise cli.UsageError(f"--snapshots {n}: must be in 1..--timesteps ({a.timesteps})")
        if n in a.snapshots[:i]:  # was accepted, one file written for both
            raise cli.UsageError(f"--snapshots {n}: given twice")
    kwargs = env_settings(a)
    try:
        hyperparams = parse_hyperparams(a.hyperparams)
    except ValueError as err:  # the message names --hyperparams and the item
        raise cli.UsageError(str(err)) from None
    if a.imitate and not has_teacher(a.env, options.vec_class(a.env)):
        raise cli.UsageError(f"--imitate: {a.env} has no privileged teacher (teacher_actions)")
    try:
        a.imitate_kwargs_raw = list(a.imitate_kwargs)
        imitate_kwargs = parse_imitate_kwargs(a.imitate_kwargs)
    except ValueError as err:
        raise cli.UsageError(f"--imitate-kwargs: {err}") from None
    a.imitate_kwargs = imitate_kwargs
    if imitate_kwargs and not a.imitate:
        raise cli.UsageError(f"--imitate-kwargs {' '.join(a.imitate_kwargs_raw)}: only with --imitate N > 0 "
                             "(without DAgger they would be ignored)")
    if imitate_kwargs.get("target") == "values" and not hasattr(options.vec_class(a.env), "teacher_values"):
        # agents/imitation.py: imitate(target='values') needs the env's teacher_values(); refused here
        # before any env or model is built
        raise cli.UsageError(f"--imitate-kwargs target='values': {a.env} has no teacher_values() "
                             "(PrefixEviction-v0 and ExpertPlacement-v0 have); use target='set'")
    if a.teacher_procs < 1:
        raise cli.UsageError(f"--teacher-procs {a.teacher_procs}: must be >= 1")
    if a.teacher_data is not None and not a.teacher_data.is_file():
        raise cli.UsageError(f"--teacher-data {a.teacher_data}: no such file")
    if a.init is not None and (a.resume or not a.init.is_file() or not zipfile.is_zipfile(a.init)):
        raise cli.UsageError(f"--init {a.init}: " + ("not with --resume (the checkpoint has its own weights)"
                                                     if a.resume else "no such file" if not a.init.is_file()
                                                     else "not a zip file (an SB3 checkpoint is one)"))
    if not 0 <= a.critic_warmup <= a.timesteps:
        raise cli.UsageError(f"--critic-warmup {a.critic_warmup}: must be in 0..--timesteps ({a.timesteps})")
    if a.resume and not (a.out / "checkpoint.zip").exists():
        raise cli.UsageError(f"--resume: no checkpoint at {a.out / 'checkpoint.zip'}")
    if a.resume:
        hyperparams = resumed_hyperparams(a.out, hyperparams, a.hyperparams)
    specs = None
    if a.scenarios and a.slo_tiers:
        raise cli.UsageError("--slo-tiers: not with --scenarios (each scenario has its own SLO)")
    if a.hardware is not None:
        if a.env != HARDWARE_ENV:
            raise cli.UsageError(f"--hardware: {a.env} has no hardware distributions ({HARDWARE_ENV} has)")
        if a.scenarios or a.slo_tiers or a.families:
            raise cli.UsageError("--hardware: not with --scenarios, --slo-tiers or --families (one family per engine)")
    if a.families and (a.scenarios or a.slo_tiers or a.trace != "default"):
        raise cli.UsageError("--families: not with --scenarios, --slo-tiers or --trace (each family has its own trace)")
    if a.slo_tiers:
        have = {f.name for f in dataclasses.fields(options.config_class(a.env))}
        if not set(SLO_FIELDS) <= have:  # each tier sets these config fields
            raise cli.UsageError(f"--slo-tiers: {a.env} has no SLO setting ({', '.join(SLO_FIELDS)}); "
                                 "KVAdmission-v0 has")
    elif a.scenarios and a.trace != "default":
        raise cli.UsageError(f"--trace {a.trace}: --scenarios trains on each scenario's own trace")
    try:  # a training distribution of families: one per SLO tier, or one per scenario
        if a.slo_tiers:
            specs = slo_tier_specs(a.trace, a.slo_tiers, kwargs)
        elif a.scenarios:
            specs = family_specs(a.env, a.scenarios, kwargs)
        elif a.families:
            specs = training_family_specs(a.env, a.families, kwargs)
        elif a.hardware is not None:
            specs = hardware_specs(a.trace, a.hardware, kwargs)
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    if specs is not None:  # checked before check_env builds each family's scenario (minutes for ServeGen days)
        try:
            envs_per_family(default_n_envs(a.env, algo) if a.n_envs is None else a.n_envs, len(specs))
        except ValueError as err:
            raise cli.UsageError(str(err)) from None
    for trace, env_kwargs in ([(a.trace, kwargs)] if specs is None else [(sp.trace, sp.env_kwargs) for sp in specs]):
        cli.check_env(a.env, env_kwargs, trace, a.seed, split="train")
    if not a.no_eval:  # the evaluation after training plays the held-out part of each: checked now, before any
        # training (a part too short for one window was a traceback at the end of the run)
        knob = options.vec_class(a.env).episode_knob
        for trace, env_kwargs in eval_runs(a, kwargs, specs):
            repeated = repeated_sweep_values(env_kwargs.get(knob, ()))
            if repeated:  # evaluate refuses it (RepeatedSweepValue): after training, as a traceback
                raise cli.UsageError(f"the evaluation after training (--no-eval skips it): {knob}="
                                     f"{env_kwargs[knob]} lists {', '.join(repeated)} twice; give each once "
                                     "or --eval-at X")
            try:
                cli.check_env(a.env, env_kwargs, trace, EVAL_SEED_OFFSET + a.seed, split=EVAL_SPLIT,
                              window_order="sequential")
            except cli.UsageError as err:
                raise cli.UsageError(f"the evaluation after training (split={EVAL_SPLIT!r}; --no-eval skips it): "
                                     f"{err}") from None
    try:  # an unwritable --out was a traceback after the envs were built (out.mkdir in _learn)
        a.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise cli.UsageError(f"--out {a.out}: cannot create the directory ({err.strerror or err})") from None
    th.set_num_threads(a.threads)
    if a.n_envs is None:
        a.n_envs = default_n_envs(a.env, algo)
    try:
        device = resolve_device(a.device, policy_spec(algo, a.env, hyperparams))
    except ValueError as err:
        raise cli.UsageError(str(err)) from None
    rounds = a.imitate_kwargs.get("rounds", inspect.signature(imitate).parameters["rounds"].default)
    if a.imitate and a.imitate < rounds * a.n_envs:
        raise cli.UsageError(f"--imitate {a.imitate}: fewer than one decision per env per DAgger round "
                             f"({rounds} rounds x {a.n_envs} envs = {rounds * a.n_envs})")
    if a.vec_procs > a.n_envs:
        raise cli.UsageError(f"--vec-procs {a.vec_procs}: more worker processes than envs (--n-envs {a.n_envs})")
    if a.vec_procs > 1 and a.imitate and (specs is None or hasattr(options.vec_class(a.env), "teacher_actions")):
        raise cli.UsageError("--imitate: the privileged teacher needs the envs in this process (--vec-procs 1; "
                             "with --scenarios an agents teacher asks the workers for their episodes)")
    if specs is not None:
        try:
            vec = make_family_vec(a.env, a.n_envs, a.seed, specs, "train", a.vec_procs)
        except ValueError as err:
            raise cli.UsageError(str(err)) from None
    elif a.vec_procs > 1:
        vec = SubprocNativeVecEnv(a.env, a.n_envs, a.vec_procs, seed=a.seed, trace=a.trace, split="train", **kwargs)
    else:
        vec = envs.make_vec(a.env, a.n_envs, seed=a.seed, trace=a.trace, split="train", **kwargs)
    try:
        return _learn(a, argv, callbacks, vec, algo, device, kwargs, hyperparams, code, specs)
    finally:
        vec.close()


HYPERPARAMS_FILE = "hyperparams.json"  # beside checkpoint.zip: the --hyperparams the run was created with


def _as_json(h: dict) -> Any:
    return json.loads(json.dumps(h, sort_keys=True, default=str))


def resumed_hyperparams(out: Path, given: dict, given_raw: list[str]) -> dict:
    """The hyperparameters a ``--resume`` of ``out`` trains with: SB3 restores them from the
    checkpoint, so they are the ones ``out/hyperparams.json`` recorded when the run was created.
    ``cli.UsageError`` when ``--hyperparams`` were given and differ from those (they would be ignored);
    with none given, the recorded ones (so run.json records what trained). A checkpoint written before
    the file existed: the given ones, with a note on stderr that they are not checked."""
    path = out / HYPERPARAMS_FILE
    if not path.is_file():
        if given:
            print(f"note: --resume: {path} not found (a run from before it was recorded); the checkpoint "
                  f"keeps its own hyperparameters, --hyperparams {' '.join(given_raw)} are not checked",
                  file=sys.stderr)
        return given
    try:
        recorded = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise cli.UsageError(f"--resume: {path}: unreadable ({err})") from None
    if given and _as_json(given) != recorded:
        raise cli.UsageError(f"--hyperparams {' '.join(given_raw)}: --resume keeps the checkpoint's, "
                             f"{json.dumps(recorded, sort_keys=True)} ({path}); give the same or none")
    return recorded if not given else given


def init_policy(model, path: Path) -> None:
    """Load the policy weights of the model saved at ``path`` (SB3's zip: its ``policy`` state dict) into
    ``model``'s policy, keeping ``model``'s own hyperparameters and optimizer; ``cli.UsageError`` naming the
    file when it is no SB3 model or its policy's parameters differ in name or shape."""
    try:
        _, params, _ = load_from_zip_file(path, device=model.device)
        model.policy.load_state_dict(params["policy"])
    except (ValueError, KeyError, RuntimeError, OSError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise cli.UsageError(f"--init {path}: not a policy of this run's shape ({first})") from None


def _learn(a: argparse.Namespace, argv: list[str] | None, callbacks: list | None, vec, algo: str, device: str,
           kwargs: dict, hyperparams: dict, code: dict, specs: list | None = None) -> int:
    out: Path = a.out
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint.zip"
    command = shlex.join(["python", "train.py", *(argv if argv is not None else sys.argv[1:])])  # pastes back into a shell

    # a checkpoint of another observation version or environment would train on features it misreads
    for flag, path in [("--resume", ckpt)] * bool(a.resume) + [("--init", a.init)] * (a.init is not None):
        try:
            obs_version.check_env(path, obs_version.check_zip(path), a.env)
        except ValueError as err:  # --init FILE: the file once; --resume takes no value
            raise cli.UsageError(cli.file_error(flag, path, err) if flag == "--init"
                                 else f"{flag}: {err}") from None
    if a.resume:
        try:
            model = load_model(ckpt, algo, env=vec, device=device, tensorboard_log=str(out / "tb"))
        except PolicyFileError as err:
            raise cli.UsageError(f"--resume: {err}") from None
        print(f"resuming from {ckpt} at {model.num_timesteps} steps", flush=True)
    else:
        try:
            model = make_model(algo, a.env, vec, a.seed, str(out / "tb"), hyperparams, device)
        except ValueError as err:  # make_model's own lines name --hyperparams; SB3's ("Invalid learning rate") do not
            msg = str(err)
            raise cli.UsageError(msg if msg.startswith("--hyperparams ") else f"--hyperparams: {msg}") from None
        if a.init is not None:
            init_policy(model, a.init)
        atomic_write_text(out / HYPERPARAMS_FILE, json.dumps(_as_json(hyperparams), sort_keys=True))
    remaining = a.timesteps - (model.num_timesteps if a.resume else 0)
    with EvalAhead() as ahead:
        # the heuristics' held-out episodes need nothing from training: one worker plays them meanwhile
        pending = [] if a.no_eval else [
            (trace, kw, ahead.submit(a.env, [*heuristic_names(a.env), "random"], trace, a.eval_episodes,
                                     EVAL_SEED_OFFSET + a.seed, kw, EVAL_SPLIT))
            for trace, kw in eval_runs(a, kwargs, specs)]
        return _learn_and_score(a, callbacks, vec, algo, device, model, remaining, command, kwargs,
                                hyperparams, code, specs, pending)


def _rounding_note(a: argparse.Namespace, model, remaining: int) -> str:
    """Why the run takes more RL steps than ``--timesteps`` asks (SB3 runs whole rollouts), or ``""``."""
    if remaining <= 0:
        return ""
    rollout, how = rollout_steps(model)
    runs = rounded_timesteps(remaining, rollout)
    if runs == remaining:
        return ""
    return (f"--timesteps {a.timesteps:,} is rounded up to whole rollouts of {how} = {rollout:,} steps, as SB3 "
            f"runs them: {runs - remaining + a.timesteps:,} steps")


def _learn_and_score(a: argparse.Namespace, callbacks: list | None, vec, algo: str, device: str, model,
                     remaining: int, command: str, kwargs: dict, hyperparams: dict, code: dict,
                     specs: list | None, pending: list) -> int:
    out: Path = a.out
    ckpt = out / "checkpoint.zip"
    t0 = time.perf_counter()
    imitation = []
    snapshots = SnapshotCallback(out, a.snapshots, a.env)
    with no_distribution_validation():
        if a.imitate and not a.resume:
            try:
                teacher = teacher_for(a.env, vec, a.teacher_data, a.teacher_procs)
            except ValueError as err:
                raise cli.UsageError(str(err)) from None
            imitation = imitate(model, vec, a.imitate, seed=a.seed, teacher=teacher, **a.imitate_kwargs)
        rounding = _rounding_note(a, model, remaining)
        if rounding:
            print(f"note: {rounding}", flush=True)
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=[ServeCallback(ckpt, a.save_every, a.env), *([snapshots] if a.snapshots else []),
                          # a resumed run keeps the critic alone until its total passes W too
                          *([CriticWarmup(a.critic_warmup)] if a.critic_warmup else []),
                          *(callbacks or [])],
                progress_bar=not a.no_progress,
                reset_num_timesteps=not a.resume,
                tb_log_name=algo,
            )
    train_s = time.perf_counter() - t0
    final = out / "final.zip"
    atomic_save(model, final, a.env)
    atomic_write_text(out / "run.json", json.dumps({
        "command": command, "code": code, "platform": platform_record(), "env": a.env,
        "observation": obs_version.record(a.env),
        "algo": algo, "timesteps": int(model.num_timesteps), "timesteps_requested": a.timesteps,
        **({"timesteps_note": rounding} if rounding else {}),
        "n_envs": a.n_envs, "vec_procs": a.vec_procs, "trace": a.trace, "env_kwargs": kwargs, "hyperparams": hyperparams,
        "seed": a.seed, "device": device,
        **({"scenarios": [{"name": sp.name, "trace": sp.trace, "env_kwargs": sp.env_kwargs} for sp in specs]}
           if specs else {}),
        **({"init": str(a.init)} if a.init is not None else {}),
        **({"critic_warmup": a.critic_warmup} if a.critic_warmup else {}),
        "imitate": a.imitate, "imitate_kwargs": a.imitate_kwargs, "imitation": imitation, "train_wall_s": train_s,
        **({"snapshots": snapshots.saved} if a.snapshots else {}),
        **workload_record(vec),
        **({"hardware": hardware_record(a.hardware, float(kwargs.get("mem_frac", 0.9)))} if a.hardware else {}),
    }, indent=2, default=str))
    what = f"{model.num_timesteps} RL steps" + (f" ({rounding})" if rounding else "")
    if a.imitate and not a.resume:
        what = f"DAgger on {a.imitate:,} decisions" + (f", then {what}" if model.num_timesteps else "")
    print(f"trained {algo} by {what} in {train_s:.0f} s -> {final}", flush=True)

    if a.no_eval:
        return 0
    reports = []
    for trace, kw, heuristics in pending:  # the agent first, then every heuristic and random, as one call gives
        report = merge(evaluate(a.env, [str(final)], trace, a.eval_episodes, EVAL_SEED_OFFSET + a.seed, kw,
                                EVAL_SPLIT), heuristics.result())
        print_tables(report)
        reports.append(report)
    # One report as before; with --scenarios a list, one per scenario.
    atomic_write_text(out / "eval.json", report_json(reports[0] if specs is None else reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
