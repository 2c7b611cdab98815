"""Every policy on every scenario, one score that means the same thing everywhere.

    python -m agents.leaderboard [--quick] [--trace PATH ...] [--envs NAME ...] [--track main|transfer]
        [--scenarios GLOB ...] [--seeds N] [--policy CHECKPOINT_OR_ONNX ...] [--team SPEC ...] [--readme README.md]
        --out DIR
    python -m agents.leaderboard --check DIR

For each scenario of ``agents.scenarios`` (held-out windows only), every registered heuristic and
oracle of its environment, ``random``, the reference learned agent (``zoo``) and any checkpoint
or ONNX file given with ``--policy`` play the same episodes (episode i = held-out window i).
The transfer track (``--track transfer``; ids ``<env>/transfer/<family>/...``) plays workload
families that the training distribution of ``agents.scenarios.TRAINING_WORKLOADS`` never
contains; its zoo column holds only agents whose recipe trains on a distribution
(``agents.zoo.Recipe.on_distribution``; the others stay empty there), and its
scenario entries say how many distinct held-out windows their episodes hold (``distinct_windows``;
a ``note`` where fewer than the episodes). A main-track entry whose episodes replay windows (``--seeds``
past the windows of a ``--trace`` file, say) has both too, and a ``warning:`` line on stderr says so: a
window played three times is one sample (issue 21). ``--quick`` plays
one transfer scenario.
``--trace`` files are checked before any run (:func:`check_user_traces`): an environment that cannot
replay the kind of trace a file is has its scenarios on it skipped (recorded as such), unless ``--envs``
names it. Scores: the main metric raw, and normalized (0 = the naive reference, 100 = the oracle or bound),
each with a 95% paired bootstrap interval over episodes; rank within each scenario.

Writes ``leaderboard.json`` (one row per scenario x policy, every metric; identical for the same
command on the same machine and commit; ``code`` records the git commit), ``leaderboard.md``, ``leaderboard.html`` (self-contained, tables and
plots) with the plots as PNG under ``plots/``, and ``timing.json`` (wall times and decision
latencies, which vary run to run and so stay out of the JSON).
"""

from __future__ import annotations

import fnmatch
import json
import math
import shlex
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Collection, Iterator

import numpy as np

import envs
from agents import team
from agents.evaluate import training_part_search
from agents.policy import ZOO, heuristic_names, make_policy
from agents.rollout import run_episodes
from agents.provenance import code_version, platform_record
from agents.scenarios import (
    SCORING,
    PolicyRun,
    Scenario,
    ScenarioResult,
    Scoring,
    TraceNameClash,
    held_out_windows,
    scenarios_for,
    transfer_note,
    user_trace_scenarios,
    windows_note,
)
from envs.metrics import aggregate
from envs.options import env_ids, is_multi_agent

VERSION = 2  # 2: bootstrap intervals seeded by the scenario id (1: by its index in the run)
BOOTSTRAP = 2000


def policies_for(env_id: str, extra: list[str]) -> list[str]:
    """What plays a scenario of ``env_id``: random, every heuristic and oracle, the zoo agent and
    ``extra`` files; on a multi-agent environment the teams of ``agents.team.default_teams`` and the
    ``extra`` entries that are team specs (``ROLE=POLICY[,...]``, ``--team``; files do not take part there,
    team specs nowhere else)."""
    if is_multi_agent(env_id):
        teams = team.default_teams()
        return teams + [t for t in extra if "=" in t and t not in teams]  # --team SPEC
    names = ["random", *heuristic_names(env_id)]
    if env_id in ZOO:
        names.append("zoo")
    return names + [p for p in extra if "=" not in p]


def _env_kwargs(sc: Scenario, quick: bool) -> dict[str, Any]:
    return {"split": "test", **sc.kwargs(quick), "trace": sc.trace, "window_order": "sequential"}


def _held_out_vec(sc: Scenario, quick: bool, episodes: int | None) -> Any:
    """The batch of ``sc``'s held-out episodes (env i plays episode i), seeded by the scenario."""
    return envs.make_vec(sc.env_id, episodes or sc.n_episodes(quick), seed=sc.seed, **_env_kwargs(sc, quick))


class TraceTooShort(ValueError):
    """A scenario's trace (a ``--trace`` file, for the user-trace scenarios) holds fewer requests than
    one of the windows the scenario replays: ``scenario`` (its id), ``trace`` (the file or built-in
    name), ``requests`` it has (as ``envs.core.workload.TooFewRequests`` counts them), ``window``
    (requests per window). ``str()`` is the one line :func:`too_short_line` builds; the leaderboard
    ends with it (exit 2) on the sequential and the Ray path alike (it pickles with its fields)."""

    def __init__(self, scenario: str, trace: str, requests: int, window: int) -> None:
        super().__init__(scenario, str(trace), int(requests), int(window))
        self.scenario, self.trace, self.requests, self.window = scenario, str(trace), int(requests), int(window)

    def __str__(self) -> str:
        return too_short_line(self.scenario, self.trace, self.requests, self.window)


def too_short_line(scenario: str, trace: str, requests: int, window: int) -> str:
    """The leaderboard's one-line error for ``trace`` (``requests`` requests) shorter than one window of
    ``window`` requests of scenario ``scenario``: names the option (``--trace`` for a user-trace
    scenario, ``<family>/user:<file>/...``), the file, the scenario and what to do."""
    return (f"{'--trace' if is_user_trace(scenario) else 'trace'} {trace}: has {_requests(requests)}, fewer than "
            f"one window of scenario {scenario} (it replays windows of {_requests(window)}): give a longer trace, "
            f"or leave {scenario.split('/')[0]} out with --envs")


def _requests(n: int) -> str:
    return f"{n} request{'' if n == 1 else 's'}"


def is_user_trace(scenario: str) -> bool:
    """Whether the scenario id ``scenario`` replays a ``--trace`` file (``<family>/user:<file>/...``,
    ``agents.scenarios.user_trace_scenarios``)."""
    parts = scenario.split("/")
    return len(parts) > 1 and parts[1].startswith("user:")


class TraceRefused(ValueError):
    """A ``--trace`` file that a user-trace scenario's environment refuses for another reason than its
    length (a ``ValueError`` at construction, e.g. a ``traces.TraceError`` for a malformed file, no prefix
    block ids for PrefixEviction-v0, a trace shorter than Autoscale-v0's episode): ``scenario`` (its id),
    ``trace`` (the file), ``reason`` (the environment's message, one line). Raised by
    :func:`check_user_traces`, before any run; ``str()`` is the leaderboard's one line (exit 2)."""

    def __init__(self, scenario: str, trace: str, reason: str) -> None:
        super().__init__(scenario, str(trace), str(reason))
        self.scenario, self.trace, self.reason = scenario, str(trace), " ".join(str(reason).split())

    def __str__(self) -> str:
        return (f"--trace {self.trace}: scenario {self.scenario} refuses it: {self.reason}; give another trace, "
                f"or leave {self.scenario.split('/')[0]} out with --envs")


class TraceUnreadable(ValueError):
    """A ``--trace`` file its reader cannot parse (``traces.TraceError``): ``trace`` (the file), ``reason``
    (the reader's one line, which names the line and field at fault, without its leading path). Raised by
    :func:`check_user_traces` before any environment is built; ``str()`` is the leaderboard's one line
    (exit 2): ``--trace F: line 2, field 'input_length': expected an integer, got 'x'``."""

    def __init__(self, trace: str, reason: str) -> None:
        super().__init__(str(trace), str(reason))
        text = " ".join(str(reason).split())
        self.trace = str(trace)
        self.reason = text[len(self.trace) + 2:] if text.startswith(f"{self.trace}: ") else text

    def __str__(self) -> str:
        return f"--trace {self.trace}: {self.reason}"


class TraceUnusable(ValueError):
    """A ``--trace`` file that every environment of the run that would replay it cannot use, for the kind
    of trace it is (``envs.core.workload.TraceUnsuited``: no prefix block ids, too short for an episode),
    none of them named with ``--envs``: ``trace`` (the file), ``reasons`` (``(scenario id, reason)`` of
    each of its scenarios, reason ``needs ..., the file ...``). ``str()`` is the leaderboard's one line (exit 2),
    each environment's first reason once."""

    def __init__(self, trace: str, reasons: list[tuple[str, str]]) -> None:
        super().__init__(str(trace), [tuple(r) for r in reasons])
        self.trace, self.reasons = str(trace), [(str(sc), str(why)) for sc, why in reasons]

    def __str__(self) -> str:
        first: dict[str, str] = {}
        for sc, why in self.reasons:
            first.setdefault(sc.split("/")[0], why)
        each = "; ".join(f"{env} {why}" for env, why in first.items())
        return f"--trace {self.trace}: no environment of this run can use it ({each}): give another trace"


# What the leaderboard ends with as one line (exit 2) rather than a traceback, raised in this process or
# in a Ray run alike (agents.leaderboard_ray.run_on_ray re-raises them as they were raised).
USER_ERRORS: tuple[type[Exception], ...] = (TraceTooShort, TraceRefused, TraceUnreadable, TraceUnusable)


@contextmanager
def _named_scenario(sc: Scenario) -> Iterator[None]:
    """The block's ``TooFewRequests`` (``sc``'s trace shorter than one window) raised as
    :class:`TraceTooShort` naming ``sc`` and its trace."""
    from envs.core.workload import TooFewRequests

    try:
        yield
    except TooFewRequests as err:
        raise TraceTooShort(sc.id, sc.trace, err.requests, err.window) from None


def run_policy(sc: Scenario, spec: str, quick: bool, episodes: int | None,
               shards: list[Any] | None = None) -> PolicyRun:
    """One policy's held-out episodes on one scenario (a fresh env and policy: independent of
    what ran before, so runs can go in any order or in parallel with the same results).
    ``shards``: results of ``run_shard`` for a ``Sharded`` policy, computed elsewhere first.
    :class:`TraceTooShort` where the scenario's trace is shorter than one window."""
    with _named_scenario(sc):
        t = time.perf_counter()
        extras: list[dict[str, Any]] = []
        windows = None
        if is_multi_agent(sc.env_id):  # a team (agents.team)
            eps, call_s = team.run_episodes(spec, episodes or sc.n_episodes(quick), sc.seed, _env_kwargs(sc, quick))
        else:
            vec = _held_out_vec(sc, quick, episodes)
            windows = held_out_windows(vec)
            policy = make_policy(spec, vec, sc.env_id, seed=sc.seed)
            if shards is not None:
                policy.preload(shards)
            eps, call_s = run_episodes(vec, policy, extras)
            vec.close()
        return PolicyRun(spec, eps, extras, call_s, time.perf_counter() - t, windows)


def run_shard(sc: Scenario, spec: str, quick: bool, episodes: int | None, index: int) -> Any:
    """Shard ``index`` of the ``Sharded`` policy ``spec`` on ``sc``'s held-out episodes (the same
    env and policy ``run_policy`` builds, reset so that each env holds its episode);
    :class:`TraceTooShort` as ``run_policy``."""
    with _named_scenario(sc):
        vec = _held_out_vec(sc, quick, episodes)
        vec.reset()
        out = make_policy(spec, vec, sc.env_id, seed=sc.seed).run_shard(index)
        vec.close()
        return out


def run_scenario(sc: Scenario, policies: list[str], quick: bool, episodes: int | None,
                 progress: Any = None) -> ScenarioResult:
    out = ScenarioResult(sc)
    for spec in policies:
        out.runs.append(run_policy(sc, spec, quick, episodes))  # TraceTooShort names the scenario
        if progress is not None:
            progress.update(1)
    return out


def check_user_traces(plan: list[tuple[Scenario, list[str], str]], quick: bool,
                      named_envs: Collection[str] = ()) -> dict[str, str]:
    """Check each planned scenario that replays a ``--trace`` file (:func:`is_user_trace`) before any run:
    parse each file once with its reader, then build each such scenario once, with one env. Returns
    ``{scenario id: why it is skipped}`` for the scenarios whose environment cannot use the file for the
    kind of trace it is (``envs.core.workload.TraceUnsuited``: no prefix block ids, fewer requests than one
    window, a shorter span than an episode), the reason a line ``needs ..., the file ...; use --envs to
    choose environments``, unless that environment is one of ``named_envs`` (env ids the user named with
    ``--envs``: asked for, so refused). Raises, each naming the file: :class:`TraceUnreadable` where the
    reader cannot parse it (before any environment is built); :class:`TraceTooShort` (too few requests)
    or :class:`TraceRefused` (any other kind) where a scenario of a named environment cannot use it;
    :class:`TraceRefused` where an environment refuses it for another reason (a ``ValueError``);
    :class:`TraceUnusable` where every scenario that would replay it is skipped. Before this check the
    built-in scenarios ran first (110 s for ``--quick --envs kv_admission``), with ``--ray`` on a worker.
    Costs one parse per file (then ``traces.cache``) and one environment construction per user-trace
    scenario: 1-6 s for the 20 of one file (``--quick`` or not) on the dev box."""
    import traces
    from envs.core.workload import TooFewRequests, TraceUnsuited

    named = set(named_envs)
    user = [sc for sc, policies, _ in plan if policies and is_user_trace(sc.id)]
    files = list(dict.fromkeys(sc.trace for sc in user))
    for path in files:
        if Path(path).is_file():  # a ServeGen folder is generated, with its environment's parameters
            try:
                traces.load_trace(path)
            except traces.TraceError as err:
                raise TraceUnreadable(path, str(err)) from None
    unfit: dict[str, str] = {}  # scenario id -> "needs ..., the file ..."
    for sc in user:
        try:
            core = envs.options.build(sc.env_id, 1, seed=sc.seed, **_env_kwargs(sc, quick))
            if training_part_search(sc.env_id):  # built as its heuristics build it: a traceback mid-run, where
                # the trace's training part is too short for their search though the scenario's part is not
                if hasattr(core, "close"):
                    core.close()
                core = envs.options.build(sc.env_id, 1, seed=sc.seed, **{**_env_kwargs(sc, quick), "split": "train"})
        except TraceUnsuited as err:
            if sc.env_id in named and isinstance(err, TooFewRequests):
                raise TraceTooShort(sc.id, sc.trace, err.requests, err.window) from None
            if sc.env_id in named:
                raise TraceRefused(sc.id, sc.trace, str(err)) from None
            unfit[sc.id] = f"needs {err.needs}, the file {err.has}"
            continue
        except ValueError as err:
            raise TraceRefused(sc.id, sc.trace, str(err)) from None
        if hasattr(core, "close"):
            core.close()
    for path in files:
        if all(sc.id in unfit for sc in user if sc.trace == path):
            raise TraceUnusable(path, [(sc.id, unfit[sc.id]) for sc in user if sc.trace == path])
    return {sc: f"{why}; use --envs to choose environments" for sc, why in unfit.items()}


# --- scoring -----------------------------------------------------------------------------------

def _bootstrap_idx(n: int, scenario_id: str) -> np.ndarray:
    """Resampled episode indices, [BOOTSTRAP, n], seeded by the scenario id alone, so that a
    scenario's intervals do not depend on which other scenarios the run holds (``--envs``,
    ``--track``, ``--quick``) or in what order they finish."""
    return np.random.default_rng(zlib.crc32(scenario_id.encode())).integers(0, n, size=(BOOTSTRAP, n))


def _ci(samples: np.ndarray) -> list[float | None]:
    s = samples[np.isfinite(samples)]
    if s.size == 0:
        return [None, None]
    return [float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5))]


def score_scenario(res: ScenarioResult) -> list[dict[str, Any]]:
    """Rows (one per policy) with raw and normalized main metric, CIs, rank and all metrics."""
    sc, scoring = res.scenario, SCORING[res.scenario.env_id]
    key = scoring.main_metric
    raw = {r.policy: np.array([ep[key] for ep in r.episodes], np.float64) for r in res.runs}
    n = min(len(v) for v in raw.values())
    idx = _bootstrap_idx(n, sc.id)
    boot = {p: v[:n][idx].mean(axis=1) for p, v in raw.items()}

    def normalized(values: dict[str, np.ndarray], p: str) -> np.ndarray | float:
        if scoring.normalized_metric:
            return values[p]
        lo = values[scoring.naive]
        hi = values[scoring.bound] if scoring.bound else scoring.bound_value
        span = hi - lo
        with np.errstate(divide="ignore", invalid="ignore"):
            return 100.0 * (values[p] - lo) / span

    if scoring.normalized_metric:
        nm = scoring.normalized_metric
        norm_raw = {r.policy: np.array([ep[nm] for ep in r.episodes], np.float64)[:n] for r in res.runs}
        norm_boot = {p: v[idx].mean(axis=1) for p, v in norm_raw.items()}
        norm_mean = {p: float(v.mean()) for p, v in norm_raw.items()}
    else:
        means = {p: np.float64(v[:n].mean()) for p, v in raw.items()}
        norm_mean = {p: float(normalized(means, p)) for p in raw}
        norm_boot = {p: np.asarray(normalized(boot, p)) for p in raw}

    sign = 1.0 if scoring.higher_is_better else -1.0
    order = sorted(raw, key=lambda p: (-sign * float(raw[p][:n].mean()), p))
    rows = []
    rank = 0
    prev = None
    for i, p in enumerate(order):
        value = float(raw[p][:n].mean())
        if value != prev:
            rank, prev = i + 1, value
        run = next(r for r in res.runs if r.policy == p)
        rows.append({
            "scenario": sc.id,
            "env": sc.env_id,
            "policy": p,
            "rank": rank,
            "main_metric": key,
            "main": {"value": value, "ci95": _ci(boot[p])},
            "normalized": {"value": _finite(norm_mean[p]), "ci95": _ci(norm_boot[p])},
            "episodes": n,
            "metrics": {k: _finite(v) for k, v in aggregate(run.episodes).items()
                        if not k.startswith("decision_latency")},
        })
    return rows


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


# --- the run -----------------------------------------------------------------------------------

def build_report(results: list[ScenarioResult], command: str, quick: bool,
                 code: dict[str, Any] | None = None) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    scenarios = []
    for res in results:
        sc = res.scenario
        scoring = SCORING[sc.env_id]
        entry = {"id": sc.id, "env": sc.env_id, "trace": sc.trace, "env_kwargs": sc.kwargs(quick),
                 "seed": sc.seed, "scoring": {**asdict(scoring), "training_may_see": sc.training_may_see()}}
        if res.skipped:
            entry["skipped"] = res.skipped
        else:
            entry["episodes"] = len(res.runs[0].episodes)
            windows = res.runs[0].windows
            note = windows_note(entry["episodes"], windows)
            # the transfer track always says what is held out and how many samples it holds; a main-track
            # entry says so where its episodes replay windows (--seeds past a --trace file's windows; issue 21)
            if sc.track != "main":
                entry["track"] = sc.track
                entry["held_out"] = transfer_note(sc)
            if sc.track != "main" or note:
                entry["distinct_windows"] = min(entry["episodes"], windows) if windows is not None else None
            if note:
                entry["note"] = note
            rows += score_scenario(res)
        scenarios.append(entry)
    return {"version": VERSION, "command": command, "code": code_version() if code is None else code,
            "platform": platform_record(), "quick": quick, "scenarios": scenarios, "rows": rows}


def timing(results: list[ScenarioResult], wall_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"wall_s": wall_s, "scenarios": {}}
    for res in results:
        out["scenarios"][res.scenario.id] = {
            r.policy: {
                "wall_s": r.wall_s,
                "decision_latency_us_p50": float(np.percentile(r.call_s, 50)) * 1e6 / len(r.episodes),
                "decision_latency_us_p99": float(np.percentile(r.call_s, 99)) * 1e6 / len(r.episodes),
            } for r in res.runs
        }
        if res.shard_s:  # --ray: the shards run ahead of the Sharded policies (agents.leaderboard_ray)
            out.setdefault("shards", {})[res.scenario.id] = {
                g: {"n": len(w), "wall_s": w} for g, w in res.shard_s.items()}
    return out


def zoo_on_distribution(env_id: str) -> bool:
    """Whether ``env_id``'s zoo recipe trains on a workload distribution (then it plays the
    transfer track)."""
    from agents.zoo import RECIPES

    return env_id in RECIPES and RECIPES[env_id].on_distribution


def plan_runs(scenarios: list[Scenario], extra_policies: list[str]) -> list[tuple[Scenario, list[str], str]]:
    """(scenario, its policies, why skipped) in leaderboard order; no policies when skipped."""
    plan = []
    for sc in scenarios:
        ok, why = sc.trace_available()
        if sc.env_id not in env_ids():
            ok, why = False, f"environment {sc.env_id} is not registered"
        policies = policies_for(sc.env_id, extra_policies) if ok else []
        if sc.track == "transfer" and not zoo_on_distribution(sc.env_id):
            policies = [p for p in policies if p != "zoo"]  # a one-trace agent is not a transfer entry
        plan.append((sc, policies, why))
    return plan


def run(scenarios: list[Scenario], extra_policies: list[str], quick: bool, episodes: int | None,
        progress: bool = True, ray: bool = False, address: str | None = None,
        num_cpus: int | None = None, hints: dict[str, Any] | None = None,
        named_envs: Collection[str] = ()) -> list[ScenarioResult]:
    """Every planned (scenario, policy) run, sequentially or on Ray workers (``ray=True``:
    ``agents.leaderboard_ray``, same results in the same order; ``hints``, a previous run's
    ``timing.json``, only orders the Ray runs longest first). Scenarios whose trace file is missing, or
    whose environment cannot use a ``--trace`` file for the kind of trace it is (:func:`check_user_traces`;
    ``named_envs``: the env ids named with ``--envs``, whose refusals end the run instead), are skipped with
    a line on stderr and their reason in their ``ScenarioResult.skipped``."""
    from tqdm import tqdm

    plan = plan_runs(scenarios, extra_policies)
    skips = check_user_traces(plan, quick, named_envs)  # before any run, on either path
    plan = [(sc, [] if sc.id in skips else policies, skips.get(sc.id, why)) for sc, policies, why in plan]
    for sc, policies, why in plan:
        if not policies:
            print(f"skipping {sc.id}: {why}", file=sys.stderr)
    total = sum(len(p) for _, p, _ in plan)
    bar = tqdm(total=total, desc="leaderboard", unit="run", disable=not progress, file=sys.stderr)
    try:
        if ray:
            from agents.leaderboard_ray import run_on_ray

            return run_on_ray(plan, quick, episodes, bar, run_policy, address, num_cpus, hints, run_shard,
                              user_errors=USER_ERRORS)  # raised as raised: the same one line as sequentially
        results = []
        for sc, policies, why in plan:
            bar.set_postfix_str(sc.id)
            if not policies:
                results.append(ScenarioResult(sc, skipped=why))
                continue
            results.append(run_scenario(sc, policies, quick, episodes, bar))
        return results
    finally:
        bar.close()


def recorded_command(argv: list[str]) -> str:
    """The command written into leaderboard.json, without the options that choose where it
    runs (``--ray``, ``--address``, ``--num-cpus``), which never change a result: the JSON of a
    Ray run equals the sequential one byte for byte."""
    kept, skip = [], False
    for tok in argv:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in ("--address", "--num-cpus"):
            skip = "=" not in tok
            continue
        if tok == "--ray":
            continue
        kept.append(tok)
    return shlex.join(["python", "-m", "agents.leaderboard", *kept])


def main(argv: list[str] | None = None) -> int:
    from agents import cli
    from agents.scenarios import SCENARIOS

    p = cli.make_parser("python -m agents.leaderboard", __doc__, env_kwargs=False, env_option="--envs",
                        trace_option="the scenarios' generators; --trace takes a trace file's path only")
    p.epilog = (p.epilog or "") + "\n\nscenarios (--envs selects them by environment):\n" + "\n".join(
        f"  {sc.id}" for sc in SCENARIOS)
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument("--quick", action="store_true", help="every environment, few seeds, short windows")
    p.add_argument("--trace", action="append", default=[], metavar="PATH",
                   help="also score every policy on this trace file (repeatable), on each environment that can "
                        "replay it: the others' scenarios on it are skipped with a line saying why, unless --envs "
                        "names them (then the run is refused)")
    p.add_argument("--track", choices=("main", "transfer"),
                   help="only the scenarios of this track (default: both; transfer = workload families held "
                        "out of the training distribution, agents.scenarios.TRAINING_WORKLOADS)")
    p.add_argument("--envs", nargs="+", metavar="ENV",
                   help="environment ids, short names or package names (default: all)")
    p.add_argument("--scenarios", nargs="+", metavar="GLOB",
                   help="only the scenarios whose id matches one of these shell patterns (fnmatch), e.g. "
                        "'disaggregation/*load0.8*'")
    p.add_argument("--seeds", type=int, help="held-out episodes per scenario (default: the scenario's)")
    p.add_argument("--policy", action="append", default=[], metavar="PATH",
                   help="an extra SB3 checkpoint or ONNX file to score (repeatable)")
    p.add_argument("--team", action="append", default=[], metavar="SPEC",
                   help="an extra team for the multi-agent scenarios, ROLE=POLICY[,ROLE=POLICY ...] "
                        "(agents.team; e.g. router=runs/s1/final.zip,admission=sarathi; repeatable)")
    p.add_argument("--readme", type=Path, help="rewrite this README's headline table section")
    p.add_argument("--check", type=Path, metavar="DIR", help="validate a leaderboard output directory")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--ray", action="store_true",
                   help="run scenario x policy pairs on Ray worker actors (embedded Ray on this machine's "
                        "cores unless --address; an earlier timing.json in --out orders them longest "
                        "first); same outputs as the sequential run")
    p.add_argument("--address", help="Ray cluster to run on: auto or HOST:PORT (implies --ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all cores)")
    a = p.parse_args(argv)
    from agents import leaderboard_report as report_io

    if a.check:
        if not a.check.is_dir():  # listed every missing file as if the directory held a damaged run
            p.error(f"--check {a.check}: {'not a directory' if a.check.exists() else 'no such directory'}")
        problems = report_io.check(a.check)
        for msg in problems:
            print(f"{a.check}: {msg}", file=sys.stderr)
        print(f"{a.check}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if a.out is None:
        p.error("--out DIR is required (unless --check)")
    try:
        cli.check_output(a.out, "--out", directory=True)  # was a traceback at the write, after every scenario ran
    except cli.UsageError as err:
        p.error(str(err))
    problem = a.readme and report_io.readme_problem(a.readme)
    if problem:  # was a traceback at the rewrite, after every scenario ran
        p.error(f"--readme {a.readme}: {problem}")
    try:  # a bad SERVEGYM_COMMIT was a traceback when the report was built, after every scenario ran
        code = code_version()  # taken once, before the run: the commit the scenarios ran
    except ValueError as err:
        p.error(str(err))
    if a.seeds is not None and a.seeds < 1:
        p.error("--seeds must be >= 1")
    # --num-cpus without --ray was ignored (the run went sequential); the ones Ray refuses were caught only
    # once it started, exit 1
    if a.num_cpus is not None:
        if not (a.ray or a.address is not None):
            p.error(f"--num-cpus {a.num_cpus}: sizes the embedded Ray of --ray; without --ray the run is sequential")
        if a.num_cpus < 1:
            p.error(f"--num-cpus {a.num_cpus}: must be >= 1")
        if a.address is not None:
            p.error(f"--num-cpus {a.num_cpus} --address {a.address}: --num-cpus sizes the embedded Ray only; a "
                    "cluster has the CPUs its nodes were started with")
    records = {}  # --policy file -> its observation record (None: it records none)
    for path in a.policy:
        if Path(path).suffix not in (".zip", ".onnx") or not Path(path).is_file():
            p.error(f"--policy {path}: expected an existing SB3 checkpoint (.zip) or ONNX file (.onnx)")
        try:  # trained on another observation version, or unreadable: refused before any scenario runs
            records[path] = cli.check_policy_file(path)
        except ValueError as err:
            p.error(f"--policy {err}")
    for spec in a.team:
        if "=" not in spec:
            p.error(f"--team {spec!r}: expected ROLE=POLICY[,ROLE=POLICY ...] (default teams play anyway)")
        try:
            team.parse_team(spec)
        except ValueError as err:  # the message starts with the spec
            p.error(f"--team {err}")
    try:
        scenarios = scenarios_for(a.envs) + user_trace_scenarios(a.trace, a.envs)
        named = [envs.options.resolve_env_id(name) for name in a.envs or []]  # asked for: never skipped
        every = scenarios
        if a.quick:  # the quick run keeps every main scenario and one of the transfer track
            scenarios = [sc for sc in scenarios if sc.in_quick]
        if a.track:
            scenarios = [sc for sc in scenarios if sc.track == a.track]
        if a.scenarios:
            unmatched = [g for g in a.scenarios if not any(fnmatch.fnmatchcase(sc.id, g) for sc in scenarios)]
            if unmatched:
                left = [f for f, on in (("--quick", a.quick), (f"--track {a.track}", a.track)) if on]
                why = (f"{' and '.join(left)} leave{'s' if len(left) == 1 else ''} out every scenario it matches"
                       if left and all(any(fnmatch.fnmatchcase(sc.id, g) for sc in every) for g in unmatched)
                       else "python -m agents.leaderboard --help lists the ids")
                p.error(f"--scenarios {' '.join(unmatched)}: no scenario of this run matches ({why})")
            scenarios = [sc for sc in scenarios if any(fnmatch.fnmatchcase(sc.id, g) for g in a.scenarios)]
    except (FileNotFoundError, TraceNameClash) as err:  # a --trace file: the line names it (before ValueError)
        p.error(str(err))
    except ValueError as err:
        p.error(f"--envs {' '.join(a.envs or [])}: {err}")
    # --quick, --track or --scenarios that left an environment asked for (or the whole run) without a scenario
    # wrote an empty leaderboard and exit status 0
    empty = [e for e in named if not any(sc.env_id == e for sc in scenarios)]
    if empty or not scenarios:
        left = [f for f, on in (("--quick", a.quick), (f"--track {a.track}", a.track),
                                (f"--scenarios {' '.join(a.scenarios or [])}", a.scenarios)) if on]
        what = f"--envs {' '.join(envs.options.short_name(e) for e in empty)}" if empty else "this run"
        p.error(f"{what}: no scenario left after {' '.join(left) or 'the selection'} "
                f"(python -m agents.leaderboard --help lists the ids)")
    # a --team plays only the multi-agent scenarios and a --policy file only the others: given to a run without
    # any, it was ignored without a word (the leaderboard written without it, exit status 0)
    if a.team and not any(is_multi_agent(sc.env_id) for sc in scenarios):
        p.error(f"--team {a.team[0]}: no multi-agent scenario in this run (teams play only "
                f"{', '.join(e for e in env_ids() if is_multi_agent(e))}'s; add it with --envs)")
    if a.policy and all(is_multi_agent(sc.env_id) for sc in scenarios):
        p.error(f"--policy {a.policy[0]}: no single-agent scenario in this run (a file plays only those; seat it "
                f"in a team with --team ROLE={a.policy[0]})")
    # a --policy file plays every single-agent scenario of the run: one recorded for another environment's
    # observation was an ObservationRecordError traceback at the first such scenario, after the runs before it
    from agents.obs_version import check_env

    for path, rec in records.items():
        for sc in (sc for sc in scenarios if not is_multi_agent(sc.env_id)):
            try:
                check_env(path, rec, sc.env_id)
            except ValueError as err:
                p.error(f"--policy {err} (scenario {sc.id}; choose the file's environment with --envs)")
    # a checkpoint or ONNX file in a seat whose layout it does not fit was a PolicyMismatch traceback
    # after the scenarios before it had run: each --team is seated once on each multi-agent scenario
    # picked (about 2 s each on the dev box)
    if a.team:
        from agents.policy_base import PolicyMismatch
        from envs.multi.env import MultiCluster

        for sc in (sc for sc in scenarios if is_multi_agent(sc.env_id)):
            core = MultiCluster(1, seed=sc.seed, **_env_kwargs(sc, a.quick))
            for spec in a.team:
                try:
                    team.make_team(spec, core, sc.seed)
                except PolicyMismatch as err:
                    p.error(f"--team {spec}: {sc.id}: {err}")
    command = recorded_command(list(argv if argv is not None else sys.argv[1:]))
    hints = None  # the previous run's wall times in --out order the Ray runs, longest first
    ray = a.ray or a.address is not None
    if ray and (a.out / "timing.json").is_file():
        try:
            hints = json.loads((a.out / "timing.json").read_text())
        except ValueError:
            hints = None  # a damaged timing file only loses the ordering; it is rewritten below
    t = time.perf_counter()
    try:  # a --trace file shorter than a scenario's window (or refused by it) was a traceback after the
        # built-in scenarios had run (with --ray: a RuntimeError naming the run)
        results = run(scenarios, a.policy + a.team, a.quick, a.seeds, progress=not a.no_progress,
                      ray=ray, address=a.address, num_cpus=a.num_cpus,
                      hints=hints, named_envs=named)
    except USER_ERRORS as err:
        p.error(str(err))
    wall = time.perf_counter() - t
    report = build_report(results, command, a.quick, code)
    for entry in report["scenarios"]:  # replayed windows: said where it happens, besides the JSON and .md
        if entry.get("note"):
            print(f"warning: {entry['id']}: {entry['note']}", file=sys.stderr)
    report_io.write_all(a.out, report, results, timing(results, wall))
    print(report_io.headline_markdown(report))
    print(f"\nwrote {a.out}/leaderboard.json, .md, .html and plots/ in {wall:.0f} s wall")
    if a.readme:
        report_io.update_readme(a.readme, report)
        print(f"updated the headline table in {a.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["USER_ERRORS", "Scoring", "TraceRefused", "TraceTooShort", "TraceUnreadable", "TraceUnusable",
           "build_report", "check_user_traces", "is_user_trace", "main", "run", "score_scenario", "too_short_line"]
