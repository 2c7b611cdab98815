"""Seeds and hyperparameter searches on Ray Tune, on this machine or a Ray cluster.

    python -m agents.sweep --env ID [--algo A] [--recipe zoo|FILE] --seeds 0-9
        [--search grid|random|optuna] [--space FILE] [--samples N] [--asha --eval-every N]
        [--trials-per-cpu K] [--address auto|HOST:PORT] [--resume] --out DIR [-- TRAIN_ARGS ...]

Each trial is one ``train.py`` run (the same ``train.main``: TensorBoard logs, checkpoints,
``run.json`` under ``DIR/trials/<trial id>/``) of one configuration with one seed, followed by a
held-out evaluation of its final checkpoint (the environment's main leaderboard metric, test
split, ``--eval-episodes`` episodes at every value of the environment's swept knob, the same
``--eval-seed`` for every trial so that seeds differ only in training). Ray Tune schedules the
trials: a grid or seeded random sample of configurations x every seed, or Optuna (Ray Tune's
``OptunaSearch``, each suggestion repeated over the seeds with ``Repeater`` and scored by their
mean). ``--asha`` stops weak trials early on held-out reports every ``--eval-every`` steps.

Training arguments come from ``--recipe zoo`` (the environment's zoo recipe, ``agents/zoo``) or a
recipe JSON, then anything after ``--``, then the searched configuration (``agents/sweep_space``).

Failures: a trial that raises is recorded with its error (``DIR/trials/<id>/error.txt``) and the
sweep goes on; a trial whose worker dies is restarted (``--max-failures``, Ray Tune), from its
last checkpoint. Ctrl-C stops the sweep resumably: ``--resume`` with the same ``--out``
continues it (``Tuner.restore``; unfinished trials resume from ``checkpoint.zip``).

Writes ``DIR/sweep.json`` (every trial: configuration, seed, status, held-out metric; every
configuration: mean and 95% t interval over seeds), ``DIR/sweep.md`` (the same as tables) and
``DIR/best_recipe.json`` (the best configuration as ``train.py`` arguments with the sweep's first
seed; ``python -m agents.zoo train --recipe DIR/best_recipe.json`` trains it into the zoo).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agents.cli import single_env_arg
from agents.sweep_report import config_key, markdown, summarize
from agents.sweep_space import SearchSpace, check_values, load_space, parse_space, train_argv
from agents.training import DEFAULT_ALGO, atomic_write_text, default_timesteps

SPEC_FILE = "sweep_spec.json"
RESERVED = ("--env", "--seed", "--out", "--resume", "--no-eval")


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-4"``, ``"0,3,7"`` or ``"0-2,9"`` -> seeds in the order given, without repeats.
    Raises ``ValueError`` naming the part that is not a non-negative integer or range."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            a = int(lo)
            b = int(hi) if dash else a
        except ValueError:
            raise ValueError(f"--seeds {text!r}: {part!r} is not N or N-M") from None
        if a < 0 or b < a:
            raise ValueError(f"--seeds {text!r}: {part!r} needs 0 <= N <= M")
        seeds += [s for s in range(a, b + 1) if s not in seeds]
    return tuple(seeds)


@dataclass(frozen=True)
class SweepSpec:
    """Everything a trial needs; saved as ``DIR/sweep_spec.json`` so ``--resume`` repeats it."""

    env: str
    base_args: tuple[str, ...]  # train.py arguments shared by every trial
    seeds: tuple[int, ...]
    search: str
    space: dict[str, Any] = field(default_factory=dict)  # the parsed space file ({} = seeds only)
    samples: int = 1
    search_seed: int = 0
    metric: str = ""
    mode: str = "max"
    eval_episodes: int = 8
    eval_seed: int = 10_000
    eval_every: int = 0
    asha: bool = False
    trials_per_cpu: float = 1.0
    max_failures: int = 2
    out: str = ""
    cwd: str = ""

    @property
    def search_space(self) -> SearchSpace | None:
        return parse_space(self.space, "sweep space") if self.space else None

    def configs(self) -> list[dict[str, Any]]:
        """The configurations of a grid or random search (one empty one without a space)."""
        space = self.search_space
        if space is None:
            return [{}]
        return space.grid() if self.search == "grid" else space.sample(self.samples, self.search_seed)


# --- one trial -----------------------------------------------------------------------------------

def trial_settings(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """The trace and environment kwargs that ``train.py`` will use with ``argv``."""
    from agents import cli

    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--env", type=cli.env_arg, default="servegym/KVAdmission-v0")
    p.add_argument("--trace", default=None)
    p.add_argument("--env-kwargs", nargs="*", default=[])
    a, _ = p.parse_known_args(argv)
    kwargs = cli.parse_env_kwargs(a.env_kwargs, a.env)
    return cli.take_env_kwarg(kwargs, "trace", "--trace", a.trace, "default"), kwargs  # as train.py reads them


def held_out(spec: SweepSpec, argv: list[str], checkpoint: Path) -> tuple[float, dict[str, Any]]:
    """The main metric of ``checkpoint`` on held-out episodes (test split), over every value of
    the env's swept knob, and ``{"key": knob, "values": {label: metric}}`` per value (empty
    when the sweep has one value)."""
    from agents.evaluate import evaluate

    trace, kwargs = trial_settings(argv)
    report = evaluate(spec.env, [str(checkpoint)], trace, spec.eval_episodes, spec.eval_seed,
                      kwargs, "test", progress=False)
    metrics = report["results"][0]["metrics"]
    if spec.metric not in metrics:
        raise KeyError(unknown_metric(spec.metric, metrics))
    knob = report["sweep"]["key"]
    per = report["results"][0].get(f"by_{knob}", {})
    by = {"key": knob, "values": {k: float(m[spec.metric]) for k, m in per.items()}} if per else {}
    return float(metrics[spec.metric]), by


def unknown_metric(metric: str, names: Any) -> str:
    """The one line for a ``--metric`` that the held-out evaluation does not report (``names``: what it reports)."""
    return f"--metric {metric}: not among the evaluation's metrics ({', '.join(sorted(names))})"


def check_metric(env_id: str, base_args: list[str], metric: str, seed: int) -> None:
    """``ValueError(unknown_metric(...))`` unless the held-out evaluation of a trial trained with ``base_args``
    (:func:`held_out`: its trace and env kwargs, the test split, ``seed``) reports ``metric``, checked before Ray
    starts (it was a ``KeyError`` in every trial, each after its training): the names every episode reports
    (``agents.evaluate.metric_names``, no episode played) or, for a name not among them, what one held-out episode
    per sweep value reports (a name only some episodes report, such as ``block_hit_ratio``, is accepted if it does;
    one line on stderr says the episodes are played)."""
    from agents.evaluate import metric_names

    trace, kwargs = trial_settings([*base_args, "--env", env_id])  # a trial's arguments, no searched ones
    if metric in metric_names(env_id, trace, kwargs, seed, "test"):
        return
    print(f"--metric {metric}: not among the metrics every episode of {env_id} reports; playing one held-out "
          "episode per sweep value to see whether one reports it", file=sys.stderr, flush=True)
    names = metric_names(env_id, trace, kwargs, seed, "test", play=True)
    if metric not in names:
        raise ValueError(unknown_metric(metric, names))


def _heldout_callback(spec: SweepSpec, argv: list[str], trial_dir: Path) -> Any:
    """An SB3 callback that reports the held-out metric to Ray Tune every ``eval_every`` steps."""
    from ray import tune
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.training import atomic_save

    class HeldOutReports(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self._last = 0

        def _on_step(self) -> bool:
            if self.num_timesteps - self._last >= spec.eval_every:
                self._last = self.num_timesteps
                path = trial_dir / "heldout_eval.zip"
                atomic_save(self.model, path, spec.env)
                value, _ = held_out(spec, argv, path)
                tune.report({spec.metric: value, "timesteps": int(self.num_timesteps),
                             "final": False, "trial_status": "running"})
            return True

    return HeldOutReports()


class _Tail(io.TextIOBase):
    """Writes through to a stream and keeps the last lines (for an argparse error's text)."""

    def __init__(self, stream: Any):
        self.stream, self.text = stream, ""

    def write(self, s: str) -> int:
        self.stream.write(s)
        self.text = (self.text + s)[-4000:]
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def run_trial(config: dict[str, Any], spec: SweepSpec) -> None:
    """Ray Tune trainable: one training run, then its held-out metric (reported, also written
    atomically to ``result.json`` so a restarted trial does not train again). An exception is
    caught and reported as ``status: error`` (so Tune's restarts are left for lost workers)."""
    import ray
    from ray import tune

    from agents import train

    trial_id = tune.get_context().get_trial_id()
    if spec.cwd and os.path.isdir(spec.cwd):
        os.chdir(spec.cwd)  # relative trace paths in recipes mean what they meant to the driver
    trial_dir = Path(spec.out) / "trials" / trial_id
    trial_dir.mkdir(parents=True, exist_ok=True)
    done = trial_dir / "result.json"
    if done.exists():  # trained and evaluated before an interruption: report it again
        record = json.loads(done.read_text())
        if record.get(spec.metric) is None:
            record[spec.metric] = math.nan
        tune.report({k: v for k, v in record.items() if k != "train_args"})
        return
    seed = int(config["seed"]) if "seed" in config else spec.seeds[int(config["__trial_index__"])]
    space = spec.search_space
    params = space.decode(config.get("params", {})) if space else {}
    argv = [*train_argv(params, spec.base_args), "--env", spec.env, "--seed", str(seed),
            "--out", str(trial_dir), "--no-eval", "--no-progress"]
    if (trial_dir / "checkpoint.zip").exists():
        argv.append("--resume")
    record: dict[str, Any] = {"params": params, "seed": seed, "train_args": argv,
                              "node_id": ray.get_runtime_context().get_node_id()}
    tail = _Tail(sys.stderr)
    try:
        callbacks = [_heldout_callback(spec, argv, trial_dir)] if spec.eval_every else []
        with contextlib.redirect_stderr(tail):
            rc = train.main(argv, callbacks=callbacks)
        if rc != 0:
            raise RuntimeError(f"train.py exited with {rc}")
        run = json.loads((trial_dir / "run.json").read_text())
        value, by = held_out(spec, argv, trial_dir / "final.zip")
        record.update({spec.metric: value, "by_sweep": by, "timesteps": int(run["timesteps"]),
                       "final": True, "trial_status": "ok", "trial_error": ""})
    except (Exception, SystemExit) as err:  # noqa: BLE001 - every failure is reported, not raised
        if isinstance(err, SystemExit):
            lines = [ln for ln in tail.text.splitlines() if ln.strip()]
            msg = lines[-1] if lines else f"train.py exited with {err.code}"
        else:
            msg = f"{type(err).__name__}: {err}"
        atomic_write_text(trial_dir / "error.txt", traceback.format_exc())
        record.update({spec.metric: math.nan, "timesteps": 0, "final": True,
                       "trial_status": "error", "trial_error": msg})
    stored = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    atomic_write_text(done, json.dumps(stored, indent=2, default=str))
    tune.report({k: v for k, v in record.items() if k != "train_args"})  # a list: not a metric


# --- the sweep -----------------------------------------------------------------------------------

def _trainable(spec: SweepSpec) -> Any:
    from ray import tune

    # Ray counts resources in units of 1e-4: round down, so that k trials of 1/k CPU fit one CPU.
    cpu = math.floor(1e4 / spec.trials_per_cpu) / 1e4
    return tune.with_resources(tune.with_parameters(run_trial, spec=spec), {"cpu": cpu})


def _tuner(spec: SweepSpec) -> Any:
    from ray import tune

    scheduler = None
    if spec.asha:
        from ray.tune.schedulers import ASHAScheduler

        given = dict(zip(spec.base_args, spec.base_args[1:]))
        steps = (int(given["--timesteps"]) if "--timesteps" in given else
                 default_timesteps(spec.env, given.get("--algo") or DEFAULT_ALGO.get(spec.env, "ppo")))
        # Rungs at eval_every * 2^k; max_t above the last report, so that ASHA never stops a
        # trial at its end before the final held-out evaluation.
        scheduler = ASHAScheduler(time_attr="timesteps", max_t=steps + 2 * spec.eval_every,
                                  grace_period=spec.eval_every, reduction_factor=2)
    space = spec.search_space
    if spec.search == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        searcher = Repeater(OptunaSearch(seed=spec.search_seed), repeat=len(spec.seeds))
        param_space = {"params": space.tune_domains()} if space else {}
        tune_config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, search_alg=searcher,
                                      scheduler=scheduler, num_samples=spec.samples * len(spec.seeds),
                                      trial_dirname_creator=lambda t: t.trial_id)
    else:
        param_space = {"params": tune.grid_search(spec.configs()), "seed": tune.grid_search(list(spec.seeds))}
        tune_config = tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                                      trial_dirname_creator=lambda t: t.trial_id)
    run_config = tune.RunConfig(
        name="tune", storage_path=str(Path(spec.out).resolve()), verbose=1,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures))
    return tune.Tuner(_trainable(spec), param_space=param_space, tune_config=tune_config,
                      run_config=run_config)


def trial_records(spec: SweepSpec, results: Any) -> list[dict[str, Any]]:
    """One record per Tune trial, ordered by configuration (grid/sample order, or first
    suggestion for Optuna) and then seed."""
    records = []
    space = spec.search_space
    for r in results:
        m = dict(r.metrics or {})
        cfg = r.config or {}
        params = space.decode(cfg.get("params", {})) if space else {}
        seed = cfg.get("seed")
        if seed is None and "__trial_index__" in cfg:
            seed = spec.seeds[int(cfg["__trial_index__"])]
        trial_id = m.get("trial_id") or Path(r.path).name
        status = m.get("trial_status", "lost")
        error = m.get("trial_error", "")
        if r.error is not None:
            status, error = "error", (str(r.error).strip().splitlines() or ["error"])[-1]
        elif status == "running":
            status = "stopped"  # ASHA ended it before its final evaluation
            error = f"stopped early by ASHA at {m.get('timesteps')} steps"
        elif status == "lost":
            status, error = "unfinished", "no result yet (interrupted before it reported; --resume runs it)"
        value = m.get(spec.metric)
        records.append({
            "trial_id": trial_id, "config": params, "seed": seed, "status": status,
            "metric": None if value is None or not math.isfinite(value) else float(value),
            "timesteps": m.get("timesteps"), "error": error, "dir": f"trials/{trial_id}",
            "node_id": m.get("node_id"), "by_sweep": m.get("by_sweep") or {},
        })
    records.sort(key=lambda t: t["trial_id"])
    order: dict[str, int] = {}
    if spec.search != "optuna":
        order = {config_key(c): i for i, c in enumerate(spec.configs())}
    for t in records:
        order.setdefault(config_key(t["config"]), len(order))
    seed_pos = {s: i for i, s in enumerate(spec.seeds)}
    records.sort(key=lambda t: (order[config_key(t["config"])], seed_pos.get(t["seed"], -1)))
    return records


def best_recipe(spec: SweepSpec, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The best configuration as a zoo recipe (``agents.zoo.Recipe`` fields plus provenance)."""
    if summary["best_config_id"] is None:
        return None
    best = summary["configs"][summary["best_config_id"]]
    from agents.zoo import RECIPES

    from traces.builtin import versioned_name

    stem = spec.env.split("/")[-1].split("-")[0].lower()
    zoo = RECIPES.get(spec.env)
    file = zoo.file if zoo else f"{stem}.zip"
    train_args = [*train_argv(best["config"], spec.base_args), "--seed", str(spec.seeds[0])]
    trace = trial_settings(train_args)[0]
    # "default" means each environment's own default trace; the zoo recipe names its version.
    if trace == "default" and zoo is not None and "--trace" not in zoo.train_args:
        trace = zoo.trace
    else:
        trace = versioned_name(trace)
    return {
        "env": spec.env, "file": file, "trace": trace, "train_args": train_args,
        "config": best["config"], "metric": spec.metric, "heldout": best[spec.metric],
        "source": f"python -m agents.sweep (--out {spec.out}), best mean held-out {spec.metric} "
                  f"over seeds {','.join(map(str, best['seeds']))}",
    }


def run_sweep(spec: SweepSpec, resume: bool = False, address: str | None = None,
              num_cpus: int | None = None) -> dict[str, Any]:
    """Run (or resume) the sweep on Ray; write and return the sweep JSON (plus ``interrupted``)."""
    from agents.ray_cluster import connect

    connect(address, num_cpus)
    from ray import tune

    out = Path(spec.out)
    tune_dir = out / "tune"
    if resume:
        tuner = tune.Tuner.restore(str(tune_dir.resolve()), _trainable(spec), resume_unfinished=True,
                                   resume_errored=True)
    else:
        tuner = _tuner(spec)
    results = tuner.fit()
    trials = trial_records(spec, results)
    summary = summarize(trials, spec.metric, spec.mode)
    expected = len(spec.seeds) * (spec.samples if spec.search == "optuna" else len(spec.configs()))
    finished = sum(t["status"] in ("ok", "error", "stopped") for t in trials)
    report = {"env": spec.env, "search": spec.search, "seeds": list(spec.seeds),
              "base_args": list(spec.base_args), "eval": {"episodes": spec.eval_episodes,
              "seed": spec.eval_seed, "split": "test"}, **summary,
              "interrupted": finished < expected}
    recipe = best_recipe(spec, summary)
    atomic_write_text(out / "sweep.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(out / "sweep.md", markdown(summary))
    if recipe is not None:
        atomic_write_text(out / "best_recipe.json", json.dumps(recipe, indent=2))
    return report


# --- command line --------------------------------------------------------------------------------

def _base_args(env: str, recipe: str | None, algo: str | None, extra: list[str]) -> list[str]:
    args: list[str] = []
    if recipe == "zoo":
        from agents.zoo import RECIPES

        if env not in RECIPES:
            raise ValueError(f"--recipe zoo: no zoo recipe for {env}; known: {', '.join(RECIPES)}")
        args += RECIPES[env].train_args
    elif recipe:
        from agents.zoo import load_recipe

        r_env, r = load_recipe(Path(recipe))
        if r_env != env:
            raise ValueError(f"--recipe {recipe}: it is for {r_env}, not --env {env}")
        args += r.train_args
    args += extra
    if algo:
        args += ["--algo", algo]
    # The sweep sets these per trial: drop a recipe's --seed, refuse them after --.
    bad = [x for x in extra if x.split("=")[0] in RESERVED]
    if bad:
        raise ValueError(f"train arguments after --: {', '.join(bad)} are set by the sweep per trial")
    cleaned, skip = [], False
    for tok in args:
        if skip:
            skip = False
            continue
        if tok == "--seed":
            skip = True
            continue
        cleaned.append(tok)
    return cleaned


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m agents.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", type=single_env_arg,
                   help="environment id, short or package name (required unless --resume)")
    p.add_argument("--algo", help="train.py --algo (default: the recipe's, else the env's own)")
    p.add_argument("--recipe", help="'zoo' (the env's zoo recipe) or a recipe JSON (best_recipe.json)")
    p.add_argument("--seeds", default="0", help="training seeds: 0-9, 0,3,5 or 0-2,7 (default 0)")
    p.add_argument("--search", choices=("grid", "random", "optuna"), default="grid")
    p.add_argument("--space", type=Path, help="search space, .toml or .json (agents/sweep_space.py)")
    p.add_argument("--samples", type=int, default=None,
                   help="configurations for random/optuna (default 8; a grid has its own count)")
    p.add_argument("--search-seed", type=int, default=None, help="seed of the random/Optuna sampler (default 0)")
    p.add_argument("--metric", help="held-out metric (default: the env's leaderboard main metric)")
    p.add_argument("--lower-is-better", action="store_true",
                   help="--metric: lower values are better (e.g. ttft_p99_s); the main metric has its own direction")
    p.add_argument("--eval-episodes", type=int, default=8)
    p.add_argument("--eval-seed", type=int, default=10_000, help="held-out episodes' seed (all trials)")
    p.add_argument("--eval-every", type=int, default=0, metavar="STEPS",
                   help="report the held-out metric every STEPS training steps (needed by --asha)")
    p.add_argument("--asha", action="store_true", help="stop weak trials early (ASHA, Ray Tune)")
    p.add_argument("--trials-per-cpu", type=float, default=1.0,
                   help="trials sharing one CPU (each trial is one process; default 1)")
    p.add_argument("--max-failures", type=int, default=2, help="restarts of a trial whose worker died")
    p.add_argument("--address", help="Ray cluster: auto or HOST:PORT (default: embedded Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all cores)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    out = a.out.resolve()
    spec_path = out / SPEC_FILE
    if a.resume:
        # the recorded spec decides everything but where Ray runs: options that would change it were ignored
        given = [f"--{k.replace('_', '-')}" for k, v in vars(a).items()
                 if k not in ("resume", "out", "address", "num_cpus") and v != p.get_default(k)]
        if given or extra:
            p.error(f"--resume continues the sweep as {out / SPEC_FILE} records it; "
                    f"{', '.join(given + (['-- ' + ' '.join(extra)] if extra else []))} would be ignored (drop them, "
                    "or start a new sweep in another --out)")
        if not spec_path.exists() or not (out / "tune").exists():
            p.error(f"--resume: no sweep to resume in {out} (no {SPEC_FILE} or tune/)")
        raw = json.loads(spec_path.read_text())
        spec = SweepSpec(**{**raw, "base_args": tuple(raw["base_args"]), "seeds": tuple(raw["seeds"])})
    else:
        if spec_path.exists():
            p.error(f"--out {out}: a sweep is already there; add --resume to continue it, or "
                    "choose another directory")
        if not a.env:
            p.error("--env is required")
        for flag, given in (("--samples", a.samples), ("--search-seed", a.search_seed)):
            if given is not None and a.search == "grid":  # were ignored without a word
                p.error(f"{flag} {given}: only with --search random or optuna (a grid plays every combination)")
        a.samples = 8 if a.samples is None else a.samples
        a.search_seed = 0 if a.search_seed is None else a.search_seed
        if a.samples < 1 or a.eval_episodes < 1 or a.eval_every < 0 or a.trials_per_cpu <= 0 \
                or a.max_failures < 0:
            p.error("--samples and --eval-episodes must be >= 1, --eval-every and --max-failures "
                    ">= 0, --trials-per-cpu > 0")
        # each was an error only after the spec was written (--num-cpus 0: the --out then refused the rerun as
        # 'a sweep is already there'), in every trial after its training (--eval-seed -1), or numpy's traceback
        for flag, v in (("--search-seed", a.search_seed), ("--eval-seed", a.eval_seed)):
            if v < 0:
                p.error(f"{flag} {v}: must be >= 0 (numpy seeds are non-negative)")
        if a.num_cpus is not None and a.num_cpus < 1:
            p.error(f"--num-cpus {a.num_cpus}: must be >= 1")
        if a.num_cpus is not None and a.address is not None:
            p.error(f"--num-cpus {a.num_cpus} --address {a.address}: --num-cpus sizes the embedded Ray only")
        if a.asha and not a.eval_every:
            p.error("--asha needs --eval-every STEPS (the held-out reports it decides on)")
        if a.search != "grid" and a.space is None:
            p.error(f"--search {a.search} needs --space FILE")
        try:
            import envs
            from agents.scenarios import SCORING

            if a.env not in envs.VEC_ENVS:
                raise ValueError(f"--env {a.env}: unknown; known: {', '.join(envs.VEC_ENVS)}")
            seeds = parse_seeds(a.seeds)
            space = load_space(a.space) if a.space else None
            if space is not None:  # gamma=2 was an error in every trial, reported after Ray ran them
                check_values(space, a.env, f"--space {a.space}")
            base = _base_args(a.env, a.recipe, a.algo, extra)
            scoring = SCORING.get(a.env)
            main_metric = scoring.main_metric if scoring else "return_mean"
            metric = a.metric or main_metric
            if a.lower_is_better and not a.metric:
                raise ValueError("--lower-is-better: only with --metric (the main metric has its own direction)")
            if metric == main_metric:  # any other --metric was maximized: --metric ttft_p99_s sought the worst tail
                higher = scoring.higher_is_better if scoring else True
                if a.lower_is_better and higher:
                    raise ValueError(f"--metric {metric} --lower-is-better: {metric} is {a.env}'s main metric, "
                                     "higher is better")
            else:
                higher = not a.lower_is_better
            if a.metric:  # each trial's evaluation refused an unknown one, after its training
                check_metric(a.env, base, metric, a.eval_seed)
            mode = "max" if higher else "min"
            if space is not None and a.search == "grid":
                space.grid()  # raises for non-grid parameters
        except ValueError as err:
            p.error(str(err))
        spec = SweepSpec(
            env=a.env, base_args=tuple(base), seeds=seeds, search=a.search,
            space=json.loads(json.dumps(_raw_space(a.space))) if a.space else {},
            samples=a.samples, search_seed=a.search_seed, metric=metric, mode=mode,
            eval_episodes=a.eval_episodes, eval_seed=a.eval_seed, eval_every=a.eval_every,
            asha=a.asha, trials_per_cpu=a.trials_per_cpu, max_failures=a.max_failures,
            out=str(out), cwd=os.getcwd())
        atomic_write_text(spec_path, json.dumps(asdict(spec), indent=2))
    report = run_sweep(spec, resume=a.resume, address=a.address, num_cpus=a.num_cpus)
    print(markdown(report))
    print(f"wrote {out}/sweep.json, sweep.md" + (", best_recipe.json" if report["best_config_id"]
                                                  is not None else ""))
    if report["interrupted"]:
        print(f"sweep interrupted; continue it with: python -m agents.sweep --resume --out {out}",
              file=sys.stderr)
        return 130
    return 0


def _raw_space(path: Path) -> dict[str, Any]:
    import tomllib

    text = path.read_text()
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["SweepSpec", "main", "parse_seeds", "run_sweep", "run_trial"]
