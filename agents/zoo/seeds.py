"""The zoo's multi-seed device runs (issues 17 and 21): what differs between environments, as data.

A seed run trains one zoo recipe (``agents.zoo.RECIPES``, read when the run is planned) for seeds
0..N-1 at once, plays the N checkpoints on the environment's leaderboard (main and transfer tracks,
``agents.leaderboard --ray``) and tables them against the best baseline per scenario
(``agents.leaderboard_seeds``: mean and 95% t interval over seeds). ``SEED_RUNS`` holds one row per
environment; ``plan`` turns a row, a mode and the run's settings into the exact commands;
``agents.zoo.seeds_driver`` runs them (``python -m agents.zoo seeds NAME``, ``--dry-run`` prints them).

Modes: ``full`` is the recipe as committed; ``small`` the same stages scaled down to time a box
(``Small``); ``tiers`` (KVAdmission-v0 only) the full mixture crossed with SLO tiers. A row with a
``Teacher`` computes the teacher's replays once for all seeds (``teacher.pkl``) and, split over two
device calls, runs ``--stage teacher`` then ``--stage train`` with that file.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from agents.zoo import MULTI_TEAM, PENDING, RECIPES, Recipe
from agents.zoo.args import REPO_ROOT, recipe_args

MODES = ("full", "small", "tiers")
STAGES = ("all", "teacher", "train")
# agents.kv_admission_teacher's --candidates kinds (its candidate_names)
CANDIDATE_KINDS = ("heuristics", "static", "transfer")
# What every child process gets (one BLAS/OpenMP thread each: the seeds and Ray's workers share the cores).
CHILD_ENV = {"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
# Trainer module -> (its option of labelled decisions, options every seed gets).
TRAINERS = {"agents.train": ("--imitate", ("--no-eval", "--no-progress")),
            "agents.train_multi": ("--steps", ())}


@dataclass(frozen=True)
class Teacher:
    """The teacher's replays, computed once for all seeds (``python -m MODULE ... --procs NCPU --out
    W/teacher.pkl``) and passed to each seed as ``--teacher-data``.

    ``recipe_options``: the recipe's options (after the mode's changes) the teacher takes as well.
    ``candidates``: it takes ``--candidates`` (default ``"transfer"``), ``--split`` (default per
    mode: ``split``), ``--shard`` and ``--slo-tiers`` (agents.kv_admission_teacher).
    ``log_tail``: lines of its log printed when it ends (None: all). ``to_out``: copy teacher.pkl
    into OUT after the teacher (it always is with ``--stage teacher``)."""

    module: str
    recipe_options: tuple[str, ...]
    candidates: bool = False
    split: tuple[tuple[str, int], ...] = ()
    log_tail: int | None = None
    to_out: bool = False


@dataclass(frozen=True)
class Small:
    """``small`` mode's scale-down of a recipe: ``steps`` labelled decisions per seed (STEPS
    overrides), recipe options set to other values (replaced where the recipe has them, else added),
    ``--env-kwargs`` entries set by key, ``workloads=`` entries containing any of ``drop_workloads``
    removed, and ``leaderboard`` options added to the leaderboard's command."""

    steps: int
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    env_kwargs: tuple[str, ...] = ()
    drop_workloads: tuple[str, ...] = ()
    leaderboard: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeedRun:
    """One environment's seed run.

    ``tag``: the issue whose run it is (``logsTAG.tgz``, ``lbTAG.tgz`` in OUT); ``work``: the default
    work directory (W); ``warmup``: its ``agents.zoo.warmup`` function; ``envs``: the leaderboard's
    ``--envs``; ``seeds_options``: ``agents.leaderboard_seeds`` options (``--metric``, ``--beside``);
    ``pending``: the recipe of ``agents.zoo.PENDING`` when there is one, else RECIPES'; ``tiers``:
    the ``tiers`` mode's SLO tiers (``--slo-tiers`` entries, agents.family_vec.slo_tier_specs) and
    ``envs_per_tier`` the envs each gets; ``cores_per_seed``: pin each seed to that many cores
    (taskset) with ``--vec-procs`` one less, when NCPU has them for every seed (else ``--vec-procs
    1`` unpinned); ``team_seat``: a multi-agent run, each seed's checkpoint seated there beside
    ``agents.zoo.MULTI_TEAM`` (``--team``); ``seeds_to_out``: copy seeds.md / seeds.json into OUT
    (always into W/lb, so into lbTAG.tgz); ``headline_lines``: print that many lines of the
    leaderboard's Headline section at the end."""

    env_id: str
    tag: str
    work: str
    warmup: str
    envs: str
    small: Small
    seeds_options: tuple[str, ...] = ()
    pending: bool = False
    teacher: Teacher | None = None
    tiers: tuple[str, ...] = ()
    envs_per_tier: int = 0
    cores_per_seed: int = 0
    team_seat: str | None = None
    seeds_to_out: bool = True
    headline_lines: int = 0

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.tiers else MODES[:2]


SEED_RUNS: dict[str, SeedRun] = {
    # Issue 21's transfer agent: the teacher's replays (every candidate through every training episode:
    # 161 windows x 3 loads; one job per candidate and ~1/SPLIT of the cost, costliest first) on every
    # core, then DAgger (then MaskablePPO with RL=N) for the seeds, one process each. full: split in two
    # device calls (--stage teacher: teacher.pkl comes back in OUT; --stage train with TEACHER=that file).
    # small: the three cheap families only (the two Mooncake ones hold ~75% of the replay time),
    # 256-request windows at load 1.3, 30k decisions, leaderboard --quick. Measured (small, NCPU=2, the
    # loaded 2-core box, niced, 2026-12-01): teacher (9 candidates x 587 episodes) 93 s, DAgger 139 s,
    # leaderboard 98 s, 336 s in all; predicted on the 16-core host (2x slower per core): full teacher
    # 330-430 s, full train 320-430 s (measured there: teacher 127 s, DAgger 48 s, leaderboard 53 s).
    # tiers (one call): the full mixture under 3 SLO tiers, 6 envs per tier. The MLPerf-Server-only agent
    # loses under MLPerf interactive and DistServe chatbot; its observation is relative to the SLO, so the
    # tpot tiers can be told apart (the p99_tbt rule cannot and is left out): MLPerf Server at the
    # recipe's loads 1.1/1.3/1.5, MLPerf interactive at 0.9/1.1 and DistServe chatbot at 1.1 (the main
    # track's loads of those tiers and one above; at 1.3 MLPerf interactive leaves 0.03-0.09 attainment
    # on azure_conv-v1 windows, no signal). Replay cost per episode relative to MLPerf Server's mean over
    # its 3 loads, measured on the loaded 2-core box (sarathi and static_b2048_sjf_defer, 4 azure_conv-v1
    # and 1 mooncake_conv-v1 1024-request windows per load; Mooncake holds ~75% of the cost): Mooncake
    # interactive 0.9 1.75x, chatbot 1.1 1.26x (server 1.1 1.09x), interactive 1.3 1.02x; Azure
    # interactive 1.2-1.4x, chatbot 0.9-1.0x; Mooncake interactive 1.1 taken as ~1.25x (not measured).
    # Predicted on the 16-core host: teacher 127 s x (1 + 1.75/3 + 1.25/3 + 1.26/3) = 310 s, DAgger 50-60 s,
    # leaderboard 53 s, ~430 s in all. Measured scaled down (TIERS="mlperf_server mlperf_interactive:0.9
    # distserve_chatbot:1.1" CANDIDATES=heuristics STEPS=1800 NCPU=2 small, the loaded 2-core box,
    # 2026-12-01): teacher (5 heuristics x 1761 episodes, 3 configs) 349 s, DAgger 26 s.
    "kv_admission": SeedRun(
        "servegym/KVAdmission-v0", "21", "/tmp/w21", "kv_admission", "kv_admission",
        Small(30000, env_kwargs=("window_requests=256", "load=1.3"), drop_workloads=("mooncake",),
              leaderboard=("--quick",)),
        teacher=Teacher("agents.kv_admission_teacher", ("--env-kwargs",), candidates=True,
                        split=(("full", 32), ("small", 4), ("tiers", 16)), log_tail=4, to_out=True),
        tiers=("mlperf_server", "mlperf_interactive:0.9,1.1", "distserve_chatbot:1.1"), envs_per_tier=6,
        seeds_to_out=False),
    # Issue 21: the teacher (env.teacher_values: each candidate's next use, read from the trace) runs
    # inside each seed's process, one core per seed; the recipe is PENDING's when one is pending.
    # Measured (small, NCPU=2, the loaded 2-core box, 2026-12-01, the 128-env recipe): 615 s, rc 0 (numba
    # 25 s, DAgger 75 s for the 3 seeds at once, leaderboard --quick 511 s). Full on the 16-core host
    # (8 cores): DAgger 85 s for the 3 seeds at once, leaderboard 138 s: run it with a 600 s limit.
    # Full on the loaded 2-core box (2026-12-04, the short-think recipe): DAgger 133 s, leaderboard 586 s.
    "prefix_eviction": SeedRun(
        "servegym/PrefixEviction-v0", "21", "/tmp/w21pe", "prefix_eviction", "prefix_eviction",
        Small(4096, leaderboard=("--quick",)), pending=True),
    # Issue 21: the teacher (envs/expert_placement/teacher.py) reads the env's future load, so it runs in
    # each seed's process (one core each). Ranked by normalized score (it counts migration time; MoE layer
    # time, the main metric, does not). small: 1536 decisions, 2 episodes per leaderboard scenario. Full on
    # the 16-core host (8 cores, 2026-12-01): DAgger 169 s for the 3 seeds at once, leaderboard 70 s.
    # Measured through this driver (small, `OUT=DIR W=DIR NCPU=2 nice -n 10 bash agents/zoo/train_expert_placement.sh
    # small`, the loaded 2-core box with other jobs, fresh numba cache, 2026-12-01): 442 s, rc 0 (numba
    # 97 s, DAgger 248 s for the 3 seeds at once, leaderboard 94 s).
    "expert_placement": SeedRun(
        "servegym/ExpertPlacement-v0", "21", "/tmp/w21ep", "expert_placement", "expert_placement",
        Small(1536, leaderboard=("--seeds", "2")),
        seeds_options=("--metric", "normalized_score", "--beside", "migration_bytes", "moe_layer_time_s")),
    # Issue 21: the teacher (envs/routing/teacher.py) replays every replica per decision inside each
    # seed's process (train.py --imitate needs the envs in its process: --vec-procs 1), one core per seed.
    # Full on the 16-core host: 3 seeds at once 178 s, leaderboard 34 s (the true-length recipe); the
    # recipe is PENDING's when one is pending (issue 21: the sampled-length teacher, 4 draws, 16,384
    # decisions: expected about 280 s for the 3 seeds, not measured there).
    "routing": SeedRun(
        "servegym/Routing-v0", "21", "/tmp/w21rt", "routing", "routing",
        Small(4096, leaderboard=("--quick",)), seeds_options=("--beside", "ttft_p99_s"), pending=True),
    # Issue 21: the teacher (env.teacher_actions: the oracle's plan, cached on disk by the warm-up for every
    # training day) runs in each seed's process, one core per seed. The warm-up also builds the ServeGen
    # families (minutes per model's replay; cached on disk): run it where $SERVEGYM_CACHE holds them already.
    # small: 2 envs per family, 6,144 decisions then 3,072 RL steps (768 of them the critic's warm-up), 1 episode
    # per leaderboard scenario. Measured for the DAgger-only recipe before the RL was added (small, NCPU=2, the
    # loaded 2-core box, the ServeGen replays, oracle plans and bursty days already in SERVEGYM_CACHE, 2026-12-01):
    # 179 s (warm-up 100 s, DAgger 19 s, leaderboard 54 s). Full, on the 16-core host: DAgger 46-54 s and RL 48-50 s
    # per seed (2026-12-03, as two commands); here, the 3 seeds at once beside other jobs, 2026-12-04: see RECIPES.
    "autoscale": SeedRun(
        "servegym/Autoscale-v0", "21", "/tmp/w21as", "autoscale", "autoscale",
        Small(6144, options=(("--n-envs", ("6",)), ("--timesteps", ("3072",)), ("--critic-warmup", ("768",))),
              leaderboard=("--seeds", "1")), pending=True),
    # Issue 17: the teacher's replays on every core, then each seed on 5 cores when there are 5 per seed
    # (its process and one worker process per family: --vec-procs 4), else on the cores there are, one
    # process each. small: 1 window per family, 768 decisions on 4 envs, leaderboard --quick. Full on the
    # 16-core host (fresh machine, 2026-12-01): 374 s in all (numba and the teacher 158 s, DAgger 96-100 s
    # per seed at once, leaderboard 58 s).
    "disaggregation": SeedRun(
        "servegym/Disaggregation-v0", "17", "/tmp/w17", "disaggregation", "disaggregation",
        Small(768, options=(("--n-envs", ("4",)),), env_kwargs=("episodes_per_load=1",), leaderboard=("--quick",)),
        seeds_options=("--beside", "role_changes"),
        teacher=Teacher("agents.disaggregation_teacher", ("--scenarios", "--env-kwargs")),
        cores_per_seed=5, seeds_to_out=False, headline_lines=70),
    # Issue 21: the router role trained in the cluster by DAgger from Routing-v0's privileged teacher
    # (agents.train_multi; the teacher replays every replica per decision in the seed's process, one core
    # per seed), then the multi-agent leaderboard with each seed's team (router=sK.zip + MULTI_TEAM).
    # small: 768 decisions, 1 cluster per workload; the leaderboard on the transfer track's code family at
    # load 0.3, 1 seed. Measured on the loaded 2-core box: 412-541 s per seed (full), leaderboard 45 s.
    "multi": SeedRun(
        "servegym/MultiCluster-v0", "21", "/tmp/w21multi", "multi", "multi",
        Small(768, options=(("--clusters", ("1",)),),
              leaderboard=("--seeds", "1", "--scenarios", "multi_cluster/transfer/azure_code_bursty-v1/*load0.3/*")),
        seeds_options=("--beside", "ttft_p99_s"), team_seat="router"),
}


@dataclass(frozen=True)
class Settings:
    """A run's settings (the driver's options; the shell wrappers' environment variables in brackets).
    ``out`` (OUT) and ``work`` (W) absolute; ``ncpu`` (NCPU) cores for the teacher and the leaderboard;
    ``steps`` (STEPS) labelled decisions per seed, None = the mode's; ``n_envs`` (N_ENVS) and
    ``rl_steps`` (RL: RL steps after DAgger) replace the recipe's ``--n-envs`` / ``--timesteps``;
    ``env_kwargs`` (ENV_KWARGS: KEY=VALUE entries) are set by key in the recipe's ``--env-kwargs`` (a
    training-distribution variant, e.g. ``drift=(0.005,0.02,0.08,0.3)``; the teacher gets them too);
    ``candidates`` (CANDIDATES), ``split`` (SPLIT), ``shard`` (SHARD) and ``tiers`` (TIERS) are the
    teacher's; ``hardware`` (HARDWARE: ``NAME[:DRAWS[:SEED]]``, envs.kv_admission.hardware) trains and
    teaches on that many engines drawn from a hardware distribution, one family each (``train.py
    --hardware``); ``teacher`` (TEACHER) the teacher.pkl that ``--stage train`` reads."""

    out: Path
    work: Path
    ncpu: int
    mode: str = "full"
    stage: str = "all"
    n_seeds: int = 3
    steps: int | None = None
    n_envs: int | None = None
    rl_steps: int | None = None
    candidates: str | None = None
    split: int | None = None
    shard: str | None = None
    tiers: tuple[str, ...] | None = None
    teacher: Path | None = None
    env_kwargs: tuple[str, ...] | None = None
    hardware: str | None = None


@dataclass(frozen=True)
class Command:
    """A child process: ``argv`` run from the repository root with CHILD_ENV; stdout to ``log``,
    stderr with it, or appended to ``err`` when given."""

    argv: tuple[str, ...]
    log: Path
    err: Path | None = None

    def shell(self) -> str:
        """The command as a shell line (what ``--dry-run`` prints)."""
        redirect = f"> {shlex.quote(str(self.log))} " + (f"2>> {shlex.quote(str(self.err))}" if self.err else "2>&1")
        return f"{shlex.join(self.argv)} {redirect}"


@dataclass(frozen=True)
class Plan:
    """What a seed run does, in order: ``warmup``; ``teacher`` (None: no teacher, or read from
    ``teacher_file`` with ``--stage train``); the N ``seeds`` at once (stopping after the teacher with
    ``--stage teacher``); ``leaderboard``, then ``seeds_table``. ``start`` is the first line of
    stages.txt; ``logs_tgz`` / ``lb_tgz`` the archives written into OUT."""

    name: str
    run: SeedRun
    settings: Settings
    start: str
    warmup: Command
    teacher: Command | None
    teacher_file: Path | None
    seeds: tuple[Command, ...]
    leaderboard: Command
    seeds_table: Command
    logs_tgz: str
    lb_tgz: str

    def lines(self) -> list[str]:
        """The plan as shell lines with comments (``--dry-run``)."""
        s, w = self.settings, self.settings.work
        env = " ".join(f"{k}={v}" for k, v in CHILD_ENV.items())
        out = [f"# {self.name} ({s.mode}, stage {s.stage}): OUT={s.out} W={w} NCPU={s.ncpu}; "
               f"from {REPO_ROOT} with {env}", f"# {self.start}", "# numba warm-up", self.warmup.shell()]
        if self.teacher_file is not None:
            out += ["# the teacher from a file", _cp(self.teacher_file, w / "teacher.pkl")]
        elif self.teacher is not None:
            out += ["# the teacher, once for all seeds", self.teacher.shell()]
            if self.run.teacher.to_out or s.stage == "teacher":
                out.append(_cp(w / "teacher.pkl", s.out / "teacher.pkl"))
        if s.stage == "teacher":
            return out
        out.append(f"# {len(self.seeds)} seeds at once")
        out += [c.shell() + " &" for c in self.seeds]
        out.append("wait")
        out += [_cp(w / f"s{k}" / "final.zip", s.out / f"s{k}.zip") for k in range(len(self.seeds))]
        out += ["# the leaderboard, then the seeds against the best baseline per scenario",
                self.leaderboard.shell(), self.seeds_table.shell(),
                f"# {self.logs_tgz}: W's *.log teacher*.pkl s*/run.json seeds.*; {self.lb_tgz}: W's lb (no *.png) "
                f"and seeds.md" + ("; seeds.md and seeds.json copied into OUT" if self.run.seeds_to_out else "")]
        return out


def _cp(src: Path, dest: Path) -> str:
    return shlex.join(["cp", str(src), str(dest)])


class PlanError(ValueError):
    """A bad setting for a seed run; ``str(err)`` is one line naming it."""


def _values_at(args: list[str], option: str) -> tuple[int, int] | None:
    """(start, end) of ``option``'s values in ``args`` (the tokens up to the next ``--`` option)."""
    if option not in args:
        return None
    i = args.index(option) + 1
    j = i
    while j < len(args) and not args[j].startswith("--"):
        j += 1
    return i, j


def set_option(args: list[str], option: str, values: tuple[str, ...] | list[str]) -> list[str]:
    """``args`` with ``option``'s values replaced by ``values`` (``option`` added at the end when absent)."""
    at = _values_at(args, option)
    if at is None:
        return [*args, option, *values]
    return [*args[:at[0]], *values, *args[at[1]:]]


def drop_option(args: list[str], option: str) -> list[str]:
    at = _values_at(args, option)
    return args if at is None else [*args[:at[0] - 1], *args[at[1]:]]


def option_values(args: list[str], option: str) -> list[str] | None:
    at = _values_at(args, option)
    return None if at is None else args[at[0]:at[1]]


def _set_env_kwargs(entries: list[str], settings: tuple[str, ...], drop_workloads: tuple[str, ...]) -> list[str]:
    """``--env-kwargs`` entries with ``settings`` (KEY=VALUE) set by key and the ``workloads=``
    entries whose file or generator name contains any of ``drop_workloads`` removed (the value kept a
    comma list or a tuple literal, as it was)."""
    import ast

    out = list(entries)
    if drop_workloads:
        for i, e in enumerate(out):
            if e.startswith("workloads="):
                value = e.split("=", 1)[1]
                items = list(ast.literal_eval(value)) if value.startswith("(") else value.split(",")
                kept = [w for w in items if not any(d in Path(w).name for d in drop_workloads)]
                out[i] = "workloads=" + (repr(tuple(kept)) if value.startswith("(") else ",".join(kept))
    for kv in settings:
        key = kv.split("=", 1)[0] + "="
        hits = [i for i, e in enumerate(out) if e.startswith(key)]
        if hits:
            out[hits[0]] = kv
        else:
            out.append(kv)
    return out


def recipe_of(run: SeedRun) -> Recipe:
    """The recipe ``run`` trains, read now: PENDING's when ``run.pending`` and there is one, else RECIPES'."""
    return (PENDING.get(run.env_id) if run.pending else None) or RECIPES[run.env_id]


def trainer_args(run: SeedRun, s: Settings) -> tuple[str, list[str]]:
    """(trainer module, its arguments for every seed: the recipe's, read now, without ``--seed``,
    with the mode's and the settings' changes; each seed adds its own options)."""
    recipe = recipe_of(run)
    steps_option, _ = TRAINERS[recipe.trainer]
    args = drop_option(recipe_args(run.env_id, recipe), "--seed")
    small = run.small if s.mode == "small" else None
    steps = s.steps if s.steps is not None else (small.steps if small else None)
    if steps is not None:
        if steps_option not in args:
            raise PlanError(f"{run.env_id}'s recipe has no {steps_option}")
        args = set_option(args, steps_option, [str(steps)])
    if small:
        for option, values in small.options:
            args = set_option(args, option, values)
        if small.env_kwargs or small.drop_workloads:
            entries = _set_env_kwargs(option_values(args, "--env-kwargs") or [], small.env_kwargs,
                                      small.drop_workloads)
            args = set_option(args, "--env-kwargs", entries)
    tiers = s.tiers if s.tiers is not None else (run.tiers if s.mode == "tiers" else ())
    if s.n_envs is not None:
        args = set_option(args, "--n-envs", [str(s.n_envs)])
    elif tiers:
        args = set_option(args, "--n-envs", [str(run.envs_per_tier * len(tiers))])
    if s.rl_steps is not None:
        args = set_option(args, "--timesteps", [str(s.rl_steps)])
    if s.env_kwargs:
        args = set_option(args, "--env-kwargs", _set_env_kwargs(option_values(args, "--env-kwargs") or [],
                                                                s.env_kwargs, ()))
    if tiers:
        # One engine per SLO tier: train.py takes no --hardware with --slo-tiers, so the tiers run leaves any
        # recipe's hardware distribution out (HARDWARE with tiers is refused by plan's checks).
        args = set_option(drop_option(args, "--hardware"), "--slo-tiers", list(tiers))
    if s.hardware is not None:
        args = set_option(args, "--hardware", [s.hardware])
    return recipe.trainer, args


def plan(name: str, s: Settings, python: str = sys.executable) -> Plan:
    """The commands of seed run ``name`` (a key of SEED_RUNS) under settings ``s``; the recipe is
    read from ``agents.zoo`` now. Raises PlanError (one line) for an unknown name, a mode or stage
    the run does not have, a setting it does not take, or an ``env_kwargs`` entry the environment's
    config refuses (``agents.cli.parse_env_kwargs``: unknown key, a key twice, a value of the wrong type)."""
    if name not in SEED_RUNS:
        raise PlanError(f"seed run '{name}': one of {', '.join(SEED_RUNS)}")
    run = SEED_RUNS[name]
    if s.mode not in run.modes:
        raise PlanError(f"--mode '{s.mode}': must be {', '.join(run.modes[:-1])} or {run.modes[-1]} for {name}")
    stages = STAGES if run.teacher else STAGES[:1]
    if s.stage not in stages:
        raise PlanError(f"--stage '{s.stage}': must be {' or '.join(stages)} for {name}"
                        + ("" if run.teacher else " (it has no teacher stage)"))
    t = run.teacher
    for value, what in ((s.candidates, "--candidates"), (s.split, "--split"), (s.shard, "--shard"),
                        (s.tiers, "--tiers"), (s.hardware, "--hardware")):
        if value is not None and not (t and t.candidates):
            raise PlanError(f"{what}: {name}'s seed run does not take it (kv_admission's does)")
    if s.candidates is not None and s.candidates not in CANDIDATE_KINDS:
        raise PlanError(f"--candidates '{s.candidates}': must be {', '.join(CANDIDATE_KINDS[:-1])} or "
                        f"{CANDIDATE_KINDS[-1]} (agents.kv_admission_teacher)")
    if s.shard is not None:
        try:
            i_shard, n_shard = (int(x) for x in s.shard.split("/"))
        except ValueError:
            raise PlanError(f"--shard '{s.shard}': must be I/N with integers, e.g. 0/2") from None
        if not 0 <= i_shard < n_shard:
            raise PlanError(f"--shard {s.shard}: must satisfy 0 <= I < N")
    if s.tiers:
        from agents.family_vec import slo_tier_specs
        try:
            slo_tier_specs("mixture", s.tiers)  # the teacher's and trainer's check, before any stage runs
        except ValueError as err:
            raise PlanError(f"--tiers {str(err).removeprefix('--slo-tiers ')}") from None
    if s.hardware is not None:
        from envs.kv_admission.hardware import parse_hardware
        try:
            parse_hardware(s.hardware)  # the teacher's and trainer's check, before any stage runs
        except ValueError as err:
            raise PlanError(str(err)) from None
        if s.tiers or s.mode == "tiers":
            raise PlanError(f"--hardware {s.hardware}: not with SLO tiers (one family per engine)")
    if s.teacher is not None and s.stage != "train":
        raise PlanError(f"--teacher {s.teacher}: only with --stage train")
    if s.stage == "train" and s.teacher is None:
        raise PlanError("--stage train: set TEACHER (--teacher) to the teacher.pkl of the teacher call")
    for value, what in ((s.steps, "--steps"), (s.n_envs, "--n-envs"), (s.ncpu, "--ncpu"), (s.n_seeds, "--n-seeds"),
                        (s.split, "--split")):
        if value is not None and value < 1:
            raise PlanError(f"{what} {value}: must be a positive integer")
    if s.rl_steps is not None and s.rl_steps < 0:
        raise PlanError(f"--rl-steps {s.rl_steps}: must be >= 0")
    for kv in s.env_kwargs or ():
        if "=" not in kv or not kv.split("=", 1)[0].isidentifier():
            raise PlanError(f"--env-kwargs '{kv}': each entry must be KEY=VALUE with KEY a name "
                             "(entries are space-separated: write a tuple without spaces, e.g. drift=(0.005,0.02))")
    trainer, args = trainer_args(run, s)
    if trainer != "agents.train" and (s.n_envs is not None or s.rl_steps is not None or s.env_kwargs):
        raise PlanError(f"--n-envs / --rl-steps / --env-kwargs: {name}'s trainer {trainer} has none of them")
    if s.env_kwargs:
        from agents.cli import UsageError, parse_env_kwargs
        try:  # the trainer's and the teacher's check (unknown key, key twice, wrong type), before any stage runs
            parse_env_kwargs(list(s.env_kwargs), run.env_id)
        except UsageError as err:
            raise PlanError(str(err)) from None
    w, out, py = s.work, s.out, (python, "-m")

    warmup = Command((*py, "agents.zoo.warmup", run.warmup), w / "warm.log")
    teacher = None
    if t is not None and s.stage != "train":
        targs: list[str] = []
        for option in t.recipe_options:
            values = option_values(args, option)
            if values is not None:
                targs += [option, *values]
        if t.candidates:
            for option in ("--slo-tiers", "--hardware"):
                if option in args:
                    targs += [option, *option_values(args, option)]
            split = s.split if s.split is not None else dict(t.split)[s.mode]
            targs += ["--candidates", s.candidates or "transfer", "--split", str(split)]
            if s.shard:
                targs += ["--shard", s.shard]
        teacher = Command((*py, t.module, *targs, "--procs", str(s.ncpu), "--out", str(w / "teacher.pkl")),
                          w / "teacher.log")
    if t is not None:
        args = [*args, "--teacher-data", str(w / "teacher.pkl")]

    _, per_seed = TRAINERS[trainer]
    pin = run.cores_per_seed and s.ncpu >= run.cores_per_seed * s.n_seeds
    seeds = []
    for k in range(s.n_seeds):
        prefix: tuple[str, ...] = ()
        extra: list[str] = []
        if run.cores_per_seed:
            c = run.cores_per_seed
            prefix = ("taskset", "-c", f"{c * k}-{c * k + c - 1}") if pin else ()
            extra = ["--vec-procs", str(c - 1 if pin else 1)]
        seeds.append(Command((*prefix, *py, trainer, *args, *extra, *per_seed, "--seed", str(k), "--out",
                              str(w / f"s{k}")), w / f"train_s{k}.log"))

    zips = [str(out / f"s{k}.zip") for k in range(s.n_seeds)]
    seats = ",".join(f"{r}={p}" for r, p in MULTI_TEAM.items())
    agents = tuple(f"{run.team_seat}={z},{seats}" for z in zips) if run.team_seat else tuple(zips)
    entries = [x for a in agents for x in (("--team", a) if run.team_seat else ("--policy", a))]
    lb_small = run.small.leaderboard if s.mode == "small" else ()
    leaderboard = Command((*py, "agents.leaderboard", "--envs", run.envs, *lb_small, *entries, "--ray", "--num-cpus",
                           str(s.ncpu), "--no-progress", "--out", str(w / "lb")), w / "lb.log")
    seeds_table = Command((*py, "agents.leaderboard_seeds", str(w / "lb" / "leaderboard.json"), "--agent", *agents,
                           "--seeds", *map(str, range(s.n_seeds)), *run.seeds_options, "--json",
                           str(w / "seeds.json")), w / "seeds.md", err=w / "lb.log")

    stage = f" {s.stage}" if t is not None else ""
    start = f"start ({s.mode}{stage}, {s.ncpu} cores, {s.n_seeds} seeds): python -m {trainer} {shlex.join(args)}"
    if teacher is not None:
        start += f"; teacher: python -m {shlex.join(teacher.argv[2:])}"
    if run.team_seat:
        start += f"; seats {run.team_seat}=sK.zip,{seats}"
    return Plan(name, run, s, start, warmup, teacher, s.teacher if s.stage == "train" else None, tuple(seeds),
                leaderboard, seeds_table, f"logs{run.tag}.tgz", f"lb{run.tag}.tgz")
