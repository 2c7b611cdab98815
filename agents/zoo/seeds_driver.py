"""Runs a seed run's plan (``agents.zoo.seeds``): ``python -m agents.zoo seeds NAME --out DIR ...``.

What it writes, as the device scripts it replaced (agents/zoo/train_*.sh, now wrappers of it) did:
OUT/stages.txt (one line per stage, ``SECONDS s: what``, seconds since the start, appended),
OUT/sK.zip (seed K's final checkpoint), OUT/logsTAG.tgz (W's ``*.log``, ``teacher*.pkl``,
``s*/run.json``, ``seeds.*``; rewritten after each stage), OUT/lbTAG.tgz (W's ``lb`` without its
plots, and ``seeds.md``), OUT/teacher.pkl where the run's teacher says so or with ``--stage
teacher``, and OUT/seeds.md and seeds.json where the run says so (the device returns ~8 files).
Every option not given is read from the environment variable in brackets in ``--help``, as the
wrappers' callers set them; one the run does not take is left out with a note on stderr. Exit
status: the leaderboard's; 1 when a stage fails (warm-up, teacher, a seed: its log's tail is
printed); 2 for bad input, before anything is created.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from agents.cli import UsageError, check_output
from agents.zoo.args import REPO_ROOT
from agents.zoo.seeds import (CHILD_ENV, MODES, SEED_RUNS, STAGES, Command, Plan, PlanError, Settings, plan,
                              recipe_of)

# option -> (environment variable, type) read when the option is not given
FROM_ENV = {"out": ("OUT", Path), "work": ("W", Path), "ncpu": ("NCPU", int), "steps": ("STEPS", int),
            "n_envs": ("N_ENVS", int), "rl_steps": ("RL", int), "candidates": ("CANDIDATES", str),
            "split": ("SPLIT", int), "shard": ("SHARD", str), "tiers": ("TIERS", str), "teacher": ("TEACHER", Path),
            "env_kwargs": ("ENV_KWARGS", str), "hardware": ("HARDWARE", str)}
# the variables read only where the run takes them (a wrapper's caller may have any of them set)
_WHERE_TAKEN = {"candidates", "split", "shard", "tiers", "teacher", "n_envs", "rl_steps", "env_kwargs", "hardware"}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("seeds", help="a recipe's seeds at once, then their leaderboard (the device runs)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", help=f"the seed run: {', '.join(SEED_RUNS)}")
    # MODE and STAGE may come as words after NAME (as the agents/zoo/train_*.sh wrappers pass their own
    # arguments on), before or after the options, or as --mode / --stage
    p.add_argument("mode_word", nargs="?", metavar="MODE", help="the same as --mode")
    p.add_argument("stage_word", nargs="?", metavar="STAGE", help="the same as --stage")
    p.add_argument("--mode", help=f"{', '.join(MODES)} (tiers: kv_admission only; default full)")
    p.add_argument("--stage", help=f"{', '.join(STAGES)} (teacher, train: runs with a teacher; default all)")
    p.add_argument("--out", help="output directory [OUT]; required")
    p.add_argument("--work", help="work directory [W]; default the run's (/tmp/w21...)")
    p.add_argument("--ncpu", help="cores for the teacher and the leaderboard [NCPU]; default the usable cores")
    p.add_argument("--n-seeds", default="3", help="seeds 0..N-1, trained at once (default 3)")
    p.add_argument("--steps", help="labelled decisions per seed [STEPS]; default the recipe's (small: the run's)")
    p.add_argument("--n-envs", help="envs per seed, agents.train recipes [N_ENVS]")
    p.add_argument("--rl-steps", help="RL steps after DAgger, agents.train recipes [RL]; default the recipe's")
    p.add_argument("--candidates", help="the teacher's candidates, kv_admission [CANDIDATES]; default transfer")
    p.add_argument("--split", help="teacher jobs per candidate, kv_admission [SPLIT]; default 32, small 4, tiers 16")
    p.add_argument("--shard", help="I/N: replay one shard of the teacher's jobs, kv_admission [SHARD]")
    p.add_argument("--tiers", action="append", help="SLO tiers, space-separated TIER[:LOADS], kv_admission [TIERS]; "
                                   "default none (tiers mode: the run's)")
    p.add_argument("--hardware", help="NAME[:DRAWS[:SEED]]: train and teach on DRAWS engines drawn from a hardware "
                   "distribution (envs.kv_admission.hardware; train.py --hardware), kv_admission [HARDWARE]")
    p.add_argument("--teacher", help="teacher.pkl of the teacher call, --stage train [TEACHER]")
    p.add_argument("--env-kwargs", action="append", help="space-separated KEY=VALUE entries set by key in the "
                   "recipe's --env-kwargs, agents.train recipes [ENV_KWARGS]; repeatable")
    p.add_argument("--dry-run", action="store_true", help="print the commands only; create nothing")
    return p


def settings_from(a: argparse.Namespace, p: argparse.ArgumentParser) -> tuple[str, Settings]:
    """(name, Settings) of the parsed options, unset ones from the environment; p.error (one line,
    exit 2) for a bad or missing value."""
    if a.name not in SEED_RUNS:
        p.error(f"NAME '{a.name}': one of {', '.join(SEED_RUNS)}")
    for key, word, default, allowed in (("mode", "MODE", "full", MODES), ("stage", "STAGE", "all", STAGES)):
        given, as_word = getattr(a, key), getattr(a, f"{key}_word") or None  # '' = unset, as ${1:-full} was
        if given is not None and as_word is not None and given != as_word:
            p.error(f"{word} '{as_word}' and --{key} '{given}': give one")
        value = as_word if as_word is not None else given if given is not None else default
        if value not in allowed:
            p.error(f"{word} / --{key} '{value}': must be {', '.join(allowed[:-1])} or {allowed[-1]}")
        setattr(a, key, value)
    run = SEED_RUNS[a.name]
    takes = {"teacher": a.stage == "train", "candidates": bool(run.teacher and run.teacher.candidates),
             "n_envs": recipe_of(run).trainer == "agents.train"}
    takes.update(split=takes["candidates"], shard=takes["candidates"], tiers=takes["candidates"],
                 hardware=takes["candidates"],
                 rl_steps=takes["n_envs"], env_kwargs=takes["n_envs"])
    values: dict = {}
    for key, (var, typ) in FROM_ENV.items():
        raw, where = getattr(a, key), f"--{key.replace('_', '-')}"
        if isinstance(raw, list):  # --env-kwargs / --tiers given several times: every use counts
            raw = " ".join(raw)
        if raw is None:
            raw, where = os.environ.get(var) or None, var  # empty = unset, as the scripts' ${VAR:-default}
            if raw is not None and key in _WHERE_TAKEN and not takes.get(key, True):
                print(f"note: {var}={raw} not used: {a.name}'s run ({a.mode}, stage {a.stage}) does not take it",
                      file=sys.stderr)
                raw = None
        if raw is None:
            continue
        if typ is int:
            try:
                values[key] = int(raw)
            except ValueError:
                p.error(f"{where} '{raw}': must be an integer")
        else:
            values[key] = typ(raw)
    try:
        n_seeds = int(a.n_seeds)
    except ValueError:
        p.error(f"--n-seeds '{a.n_seeds}': must be an integer")
    if "out" not in values:
        p.error("--out: not given (set OUT to the output directory)")
    if "teacher" in values and a.stage == "train" and not values["teacher"].is_file():
        p.error(f"TEACHER / --teacher {values['teacher']}: no such file")
    tiers = tuple(values.pop("tiers").split()) if "tiers" in values else None
    if tiers == ():
        p.error("--tiers: empty")
    env_kwargs = tuple(values.pop("env_kwargs").split()) if "env_kwargs" in values else None
    if env_kwargs == ():
        p.error("--env-kwargs: empty")
    out = values.pop("out").resolve()
    work = Path(values.pop("work", run.work)).resolve()
    ncpu = values.pop("ncpu", len(os.sched_getaffinity(0)))
    teacher = values.pop("teacher", None)
    return a.name, Settings(out, work, ncpu, a.mode, a.stage, n_seeds, tiers=tiers, env_kwargs=env_kwargs,
                            teacher=teacher.resolve() if teacher else None, **values)


def run_cli(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    name, s = settings_from(a, p)
    try:
        pl = plan(name, s)
    except PlanError as err:
        p.error(str(err))
    if a.dry_run:
        print("\n".join(pl.lines()))
        return 0
    for path, what in ((s.out, "--out / OUT"), (s.work, "--work / W")):
        try:
            check_output(path, what, directory=True)
        except UsageError as err:
            p.error(str(err))
    made = []
    for path, what in ((s.out, "--out / OUT"), (s.work, "--work / W")):
        try:
            if not path.is_dir():
                path.mkdir(parents=True)
                made.append(path)
        except OSError as err:
            for d in reversed(made):  # leave nothing behind for bad input
                shutil.rmtree(d, ignore_errors=True)
            p.error(f"{what} {path}: cannot be created ({err.strerror or err})")
    return execute(pl)


# --- running a plan -------------------------------------------------------------------------------

def _tail(path: Path, n: int | None) -> None:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    print("\n".join(lines if n is None else lines[-n:]), flush=True)


def _start(c: Command) -> subprocess.Popen:
    log = open(c.log, "w")
    err = open(c.err, "a") if c.err else subprocess.STDOUT
    try:
        return subprocess.Popen(c.argv, cwd=REPO_ROOT, env={**os.environ, **CHILD_ENV}, stdout=log, stderr=err,
                                stdin=subprocess.DEVNULL)
    finally:
        log.close()
        if c.err:
            err.close()


def _tgz(path: Path, root: Path, names: list[str], exclude_suffix: str | None = None) -> None:
    """``tar czf path -C root names`` (missing names skipped; nothing written when none exist),
    written beside and renamed so that a stopped run never leaves half an archive."""
    names = [n for n in names if (root / n).exists()]
    if not names:
        return
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for n in names:
            tar.add(root / n, arcname=n,
                    filter=(lambda ti: None if exclude_suffix and ti.name.endswith(exclude_suffix) else ti))
    tmp.replace(path)


class _Run:
    def __init__(self, p: Plan):
        self.p, self.s = p, p.settings
        self.t0 = time.monotonic()
        self.children: list[subprocess.Popen] = []

    def stage(self, msg: str) -> None:
        line = f"{int(time.monotonic() - self.t0)} s: {msg}"
        print(line, flush=True)
        with open(self.s.out / "stages.txt", "a") as f:
            f.write(line + "\n")

    def pack(self) -> None:
        w = self.s.work
        names = sorted({str(x.relative_to(w)) for pat in ("*.log", "teacher*.pkl", "s*/run.json", "seeds.*")
                        for x in w.glob(pat)})
        _tgz(self.s.out / self.p.logs_tgz, w, names)

    def call(self, c: Command) -> int:
        print(f"+ {c.shell()}", flush=True)
        proc = _start(c)
        self.children.append(proc)
        return proc.wait()

    def stop_children(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.children:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)  # the finally below stops the children still running


def execute(p: Plan) -> int:
    """Run plan ``p`` (see the module docstring for what it writes); returns the exit status."""
    s, w = p.settings, p.settings.work
    s.out.mkdir(parents=True, exist_ok=True)
    w.mkdir(parents=True, exist_ok=True)
    r = _Run(p)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _execute(p, r, s, w)
    finally:
        r.stop_children()
        signal.signal(signal.SIGTERM, previous)


def _execute(p: Plan, r: _Run, s: Settings, w: Path) -> int:
    r.stage(p.start)
    # 1. Compile the numba kernels once, before several processes would compile them at the same time.
    if r.call(p.warmup) != 0:
        r.stage("warm-up failed")
        _tail(p.warmup.log, None)
        return 1
    r.stage("numba warm-up")
    # 2. The teacher's replays, once for all seeds (or its file from the teacher call).
    if p.teacher_file is not None:
        dest = w / "teacher.pkl"
        try:
            if not (dest.exists() and filecmp.cmp(p.teacher_file, dest, shallow=False)):
                shutil.copyfile(p.teacher_file, dest)
        except OSError as err:
            r.stage(f"no teacher file {p.teacher_file} ({err})")
            return 1
        r.stage(f"teacher from {p.teacher_file}")
    elif p.teacher is not None:
        if r.call(p.teacher) != 0:
            r.stage("teacher failed")
            _tail(p.teacher.log, 20)
            r.pack()
            return 1
        _tail(p.teacher.log, p.run.teacher.log_tail)
        if p.run.teacher.to_out or s.stage == "teacher":
            shutil.copyfile(w / "teacher.pkl", s.out / "teacher.pkl")
        r.stage("teacher")
        r.pack()
        if s.stage == "teacher":
            return 0
    # 3. The seeds at once, each in its own process.
    procs = []
    for c in p.seeds:
        print(f"+ {c.shell()} &", flush=True)
        procs.append(_start(c))
        r.children.append(procs[-1])
    codes = [proc.wait() for proc in procs]
    for k, (c, rc) in enumerate(zip(p.seeds, codes)):
        _tail(c.log, 3)
        final = w / f"s{k}" / "final.zip"
        if rc != 0 or not final.is_file():
            r.stage(f"seed {k} failed (rc {rc})")
            r.pack()
            return 1
        shutil.copyfile(final, s.out / f"s{k}.zip")
    r.stage("DAgger")
    r.pack()
    # 4. The leaderboard with the N checkpoints, then the seeds against the best baseline per scenario.
    rc = r.call(p.leaderboard)
    _tail(p.leaderboard.log, 5)
    r.stage(f"leaderboard (rc {rc})")
    r.call(p.seeds_table)
    _tail(p.seeds_table.log, None)
    for name in ("seeds.json", "seeds.md"):
        for dest in ([w / "lb"] + ([s.out] if p.run.seeds_to_out else [])):
            if (w / name).is_file() and dest.is_dir():
                shutil.copyfile(w / name, dest / name)
    r.pack()
    _tgz(s.out / p.lb_tgz, w, ["lb", "seeds.md"], exclude_suffix=".png")
    if p.run.headline_lines:
        md = w / "lb" / "leaderboard.md"
        lines = md.read_text().splitlines() if md.is_file() else []
        at = next((i for i, x in enumerate(lines) if x.startswith("## Headline")), len(lines))
        print("\n".join([x for x in lines[at:] if x and not x.startswith("servegym/")][:p.run.headline_lines]))
    return rc
