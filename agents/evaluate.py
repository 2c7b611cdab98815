"""Score policies on the same scenarios: held-out windows, same seeds, same load levels.

    python -m agents.evaluate --env servegym/KVAdmission-v0 --trace default \\
        --policy vllm_fcfs --policy sarathi --episodes 8 --seed 0 --env-kwargs load=1.1 --json out.json

Every policy replays the same windows in the same order (``window_order=sequential``, env i
starts with held-out window i), so differences come from the policy alone. ``--json FILE`` is
byte-identical for the same command on the same machine; what varies run to run (wall times,
the policies' decision latencies) goes to ``FILE`` with ``.timing.json`` for ``.json``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

import envs
from agents import cli, team, units
from agents.policy import heuristic_names, make_policy
from agents.policy_base import PolicyMismatch
from agents.rollout import RETURN_METRIC, run_episodes
from agents.scenarios import held_out_windows, windows_note
from envs import options
from envs.config_check import SPLITS
from envs.metrics import aggregate


def evaluate(
    env_id: str,
    policies: list[str],
    trace: str = "default",
    episodes: int = 8,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    split: str = "test",
    progress: bool = True,
    capacity: bool = False,
    capacity_target: float = 0.9,
    timing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation JSON of ../shared/DESIGN.md for ``policies`` on ``env_id``.

    Each policy plays ``episodes`` held-out episodes at every value of the environment's swept
    knob (``vec.sweep()``: load levels, cache capacities ...); metrics are means over episodes,
    per sweep value under ``by_<knob>`` and over all of them under ``metrics``. The report is a
    function of the arguments alone; what varies run to run goes into ``timing`` when given:
    ``timing[policy] = {"wall_s", "decision_latency_us_p50", "decision_latency_us_p99"}`` (wall
    seconds of the policy's episodes; microseconds per decision, one call deciding for the batch:
    ``episodes`` envs, or ``episodes x`` sweep values where ``_play_sweep`` plays the sweep in one
    batch: a row-independent policy's figure is then per call / that larger batch, lower than one
    batch per value gives and not comparable with timing files written before 5f47989).
    ``distinct_windows``: the windows of the split each sweep value's episodes play (episode e
    plays window e mod their number; None for an environment without windows); where it is below
    ``episodes`` the report's ``note`` and a ``warning:`` line on stderr say that the replays are
    no new samples (issue 21; not an error: a stochastic policy may replay a window on purpose).
    Raises ``RepeatedSweepValue`` for a sweep that lists a value twice.
    """
    kwargs = _eval_kwargs(trace, env_kwargs, split)
    multi = options.is_multi_agent(env_id)
    if multi:  # policies are teams (agents.team)
        knob, values = team.sweep(kwargs)
        table_metrics: tuple[str, ...] = team.TABLE_METRICS
        core = options.build(env_id, 1, seed=seed, **kwargs)
        slo = slo_of(SimpleNamespace(config=core.config.routing, scenario=core.scenario))
        windows = held_out_windows(core)
    else:
        probe = envs.make_vec(env_id, 1, seed=seed, **kwargs)
        knob, values = probe.sweep()
        table_metrics = tuple(probe.table_metrics)
        slo = slo_of(probe)
        windows = held_out_windows(probe)
        probe.close()
    # episode e plays window e mod windows (window_order=sequential): more episodes than windows replay some
    note = windows_note(episodes, windows, SPLIT_PART.get(kwargs["split"], str(kwargs["split"])))
    if note:  # on stderr whatever progress says: it qualifies every figure of the report
        print(f"warning: {env_id} split={kwargs['split']}: {note}", file=sys.stderr, flush=True)
    repeated = repeated_sweep_values(values)
    if repeated:  # by_<knob> would keep one of them and metrics would count its episodes twice
        raise RepeatedSweepValue(f"{knob}={tuple(values)}: sweep value(s) {', '.join(repeated)} given more "
                                 f"than once ({env_id})")
    results = []
    for spec in policies:
        per_value: dict[str, dict[str, float]] = {}
        episodes_all: list[dict[str, float]] = []
        t_policy = time.perf_counter()
        played = _play_sweep(env_id, spec, episodes, seed, kwargs, knob, values, multi)
        for value, eps in zip(values, played.episodes):
            per_value[sweep_label(value)] = aggregate(eps)
            episodes_all += eps
            if progress:
                m = per_value[sweep_label(value)]
                shown = ", ".join(f"{k} {m[k]:.4g}" for k in table_metrics[:2] if k in m)
                print(f"  {spec:>18} {knob} {sweep_label(value)}: {shown}", file=sys.stderr, flush=True)
        metrics = aggregate(episodes_all)
        if timing is not None:
            # One call decides for the whole batch; per decision = per call / batch size.
            timing[spec] = {
                "wall_s": time.perf_counter() - t_policy,
                "decision_latency_us_p50": float(np.percentile(played.call_s, 50)) * 1e6 / played.batch,
                "decision_latency_us_p99": float(np.percentile(played.call_s, 99)) * 1e6 / played.batch,
            }
        metrics.pop(knob, None)
        entry: dict[str, Any] = {"policy": spec, "metrics": metrics}
        if capacity:
            from agents.capacity_search import effective_capacity

            found = effective_capacity(env_id, spec, episodes, seed, kwargs, capacity_target,
                                       progress=progress)
            metrics["effective_capacity_rps"] = found["offered_rps"]
            entry["capacity_search"] = found
        if len(values) > 1:
            entry[f"by_{knob}"] = per_value
        results.append(entry)
    report = {
        "env": env_id,
        "trace": trace if isinstance(trace, str) else "<Trace>",
        "env_kwargs": {k: v for k, v in kwargs.items() if k != "trace"},
        "seed": seed,
        "episodes": episodes,
        "distinct_windows": None if windows is None else min(episodes, windows),
        "split": kwargs["split"],
        "sweep": {"key": knob, "values": [sweep_label(v) for v in values]},
        "table_metrics": list(table_metrics),
        "results": results,
    }
    if note:
        report["note"] = note
    if slo is not None:
        report["slo"] = slo
    return report


def _eval_kwargs(trace: Any, env_kwargs: dict[str, Any] | None, split: str) -> dict[str, Any]:
    """The config fields every env of an evaluation is built with: ``env_kwargs``, ``split`` unless they set it,
    sequential windows and ``trace``."""
    kwargs = dict(env_kwargs or {})
    kwargs.setdefault("split", split)
    kwargs["window_order"] = "sequential"
    kwargs["trace"] = trace
    return kwargs


def metric_names(env_id: str, trace: Any = "default", env_kwargs: dict[str, Any] | None = None, seed: int = 0,
                 split: str = "test", play: bool = False) -> list[str]:
    """The metric names (sorted) that :func:`evaluate` reports for the single-agent environment ``env_id`` with
    these arguments: each result's ``metrics`` keys (``--capacity``'s ``effective_capacity_rps`` aside).

    ``play=False``: read from one env built as :func:`evaluate` builds its probe, just reset, no episode played
    (its ``episode_metrics`` keys and ``agents.rollout.RETURN_METRIC``, less the swept knob), in well under a
    second once the scenario is built: the names every episode reports. A name that an episode reports only once
    something happened in it is missing then (``block_hit_ratio`` after a prefix-cache lookup, in KVAdmission-v0
    and Disaggregation-v0); ``play=True`` runs :func:`evaluate` itself (``random``, one episode at every sweep
    value) and returns what it reports. Raises what building the env raises for a bad config (``ValueError``
    naming the field).
    """
    if play:
        report = evaluate(env_id, ["random"], trace, 1, seed, env_kwargs, split, progress=False)
        return sorted(report["results"][0]["metrics"])
    probe = envs.make_vec(env_id, 1, seed=seed, **_eval_kwargs(trace, env_kwargs, split))
    try:
        knob, _ = probe.sweep()
        probe.reset()
        return sorted((set(probe.episode_metrics(0)) | {RETURN_METRIC}) - {knob})
    finally:
        probe.close()


SPLIT_PART = {"test": "held-out", "train": "training", "all": "whole-trace"}  # windows_note's words per split


class RepeatedSweepValue(ValueError):
    """A sweep that lists a value twice (``load=1.1,1.1``; values equal as ``sweep_label`` writes
    them). The CLI reports it as a usage error."""


@dataclass
class Played:
    """One policy's episodes at each sweep value (``episodes[i]``: the value ``values[i]``), its
    wall time per call (seconds, ``call_s``) and the envs one call decided for (``batch``)."""

    episodes: list[list[dict[str, float]]]
    call_s: np.ndarray
    batch: int


def _play_sweep(env_id: str, spec: str, episodes: int, seed: int, kwargs: dict[str, Any], knob: str,
                values: tuple[Any, ...], multi: bool) -> Played:
    """``spec``'s ``episodes`` episodes at every sweep value: env e (seed ``seed + e``) plays the
    sequential episode e of a batch of ``episodes`` at that value.

    A policy that declares ``row_independent`` (env e's action depends on env e's observation,
    mask and history alone: the SB3 and ONNX agents, pure heuristics) plays every value in one batch
    of ``episodes x values`` envs, each seeded, numbered (``NativeVecEnv.number_episodes``) and
    given its value (a reset option) as in its value's own batch: the same episodes in a third of
    the calls at three values (issue 16: train.py's held-out evaluation), where the environment's
    episodes do not depend on the other values of the sweep (``NativeVecEnv.episodes_independent_of_sweep``).
    Any other policy (random, oracles, stateful heuristics), environment (Disaggregation), a
    multi-agent team, or a knob that is not the env's episode knob (Routing's ``rate_scale``) plays
    one batch per value."""
    cls = None if multi else options.vec_class(env_id)
    if cls is not None and len(values) > 1 and knob == cls.episode_knob and cls.episodes_independent_of_sweep:
        index = [e for _ in values for e in range(episodes)]
        vec = envs.make_vec(env_id, episodes * len(values), seed=seed, **{**kwargs, knob: tuple(values)})
        vec.seed_each([seed + e for e in index])
        vec.number_episodes(index, episodes)
        vec.set_options([{knob: v} for v in values for _ in range(episodes)])
        policy = make_policy(spec, vec, env_id, seed=seed)
        if getattr(policy, "row_independent", False):
            eps, lat = run_episodes(vec, policy)
            vec.close()
            return Played([eps[i * episodes:(i + 1) * episodes] for i in range(len(values))], lat, vec.num_envs)
        vec.close()
    played, call_s = [], []
    for value in values:
        if multi:
            eps, lat = team.run_episodes(spec, episodes, seed, {**kwargs, knob: value})
        else:
            vec = envs.make_vec(env_id, episodes, seed=seed, **{**kwargs, knob: value})
            eps, lat = run_episodes(vec, make_policy(spec, vec, env_id, seed=seed))
            vec.close()
        played.append(eps)
        call_s.append(lat)
    return Played(played, np.concatenate(call_s), episodes)


def slo_of(vec: Any) -> dict[str, Any] | None:
    """The SLO an environment counts (``{"metric", "ttft_s", "tpot_s"}``, seconds), or None for
    environments without one: ``config.slo_metric`` and the limits its scenario resolved."""
    metric = getattr(getattr(vec, "config", None), "slo_metric", None)
    if metric is None:
        return None
    sc = getattr(vec, "scenario", None)
    eng = getattr(sc, "engine", sc)
    return {"metric": metric, "ttft_s": float(eng.slo_ttft), "tpot_s": float(eng.slo_tpot)}


def repeated_sweep_values(values: Any) -> list[str]:
    """The labels (``sweep_label``) that ``values`` (one value or a tuple of them) lists more than
    once, sorted; empty for a sweep ``evaluate`` can report."""
    labels = [sweep_label(v) for v in (values if isinstance(values, (tuple, list)) else (values,))]
    return sorted({x for x in labels if labels.count(x) > 1})


def sweep_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _replayed(report: dict[str, Any]) -> str:
    """`` (N distinct windows)`` where the episodes replay fewer windows than episodes, else empty."""
    n = report.get("distinct_windows")
    return f" ({n} distinct windows)" if n is not None and n < report["episodes"] else ""


# Metrics of a policy as a whole, not of one sweep value (``--capacity``'s search varies the rate itself).
POLICY_LEVEL = ("effective_capacity_rps",)


def format_table(report: dict[str, Any], value: str | None = None) -> str:
    """Markdown table of the report (at one sweep value when ``value`` is given), each quantity in
    a readable unit named in its header (``agents.units``); the report itself stays in SI units."""
    cols = report["table_metrics"]
    by = f"by_{report['sweep']['key']}"
    # A policy's effective capacity is searched over the rate knob, not per sweep value: each value's table
    # shows it (it showed '–' in every one of a load sweep's tables, the figure only in the JSON).
    picked = [{**r[by][value], **{k: r["metrics"][k] for k in POLICY_LEVEL if k in r["metrics"]}}
              if value is not None and by in r else r["metrics"] for r in report["results"]]
    shown = {k: units.column(k, [m.get(k) for m in picked]) for k in cols}
    head = "| policy | " + " | ".join(shown[k].header for k in cols) + " |"
    rows = [head, "|" + "---|" * (len(cols) + 1)]
    for r, m in zip(report["results"], picked):
        cells = [units.cell(k, m.get(k), shown[k]) for k in cols]
        rows.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def print_tables(report: dict[str, Any], file: Any = None) -> None:
    """One table per sweep value (a single table when the sweep has one value)."""
    knob, values = report["sweep"]["key"], report["sweep"]["values"]
    for v in values:
        print(f"\n{report['env']}  trace={report['trace']}  {knob}={v}  split={report['split']}  "
              f"episodes={report['episodes']}{_replayed(report)}  seed={report['seed']}", file=file)
        print(format_table(report, v if len(values) > 1 else None), file=file)


def report_json(report: Any) -> str:
    """``report`` as strict JSON (RFC 8259, what ``jq`` and browsers parse): a metric with no value
    (the TPOT percentiles of episodes where no request decoded a second token, say) is ``null``, not
    ``NaN``; numpy scalars and arrays become numbers and lists. Raises TypeError for other objects."""

    def clean(x: Any) -> Any:
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        if isinstance(x, np.ndarray):
            return clean(x.tolist())
        if isinstance(x, (bool, np.bool_)):
            return bool(x)
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, (float, np.floating)):
            return float(x) if np.isfinite(x) else None
        if x is None or isinstance(x, str):
            return x
        raise TypeError(f"report_json: cannot write {type(x).__name__} {x!r}")

    return json.dumps(clean(report), indent=2, allow_nan=False)


def timing_path(json_path: Path) -> Path:
    """Where the timing of ``--json FILE`` goes: ``FILE`` with ``.timing.json`` for ``.json``."""
    stem = json_path.name[:-5] if json_path.name.endswith(".json") else json_path.name
    return json_path.with_name(stem + ".timing.json")


def training_part_search(env_id: str) -> tuple[str, ...]:
    """The heuristics of ``env_id`` that search their setting on the trace's training part (``split="train"``)
    whatever part is played (Disaggregation-v0's ``agents.heuristics.disaggregation.TRAINING_PART_SEARCH``): a
    trace too short there fails them though the played part is long enough (``main``'s and
    ``agents.leaderboard.check_user_traces``' checks); () for the other environments."""
    from agents.heuristics import disaggregation

    return disaggregation.TRAINING_PART_SEARCH if env_id == disaggregation.ENV_ID else ()


def build_parser() -> cli.Parser:
    p = cli.make_parser("python -m agents.evaluate", __doc__)
    p.add_argument("--env", type=cli.env_arg, default="servegym/KVAdmission-v0",
                   help="environment id, short name or package name (listed below)")
    p.add_argument("--trace", default=None,
                   help="built-in trace name (listed below) or path to a trace file (default: the "
                        "environment's own, 'default'); --env-kwargs trace=... is the same setting")
    p.add_argument("--policy", action="append", required=False,
                   help="heuristic or oracle name, random, zoo, or an SB3 checkpoint (.zip) or "
                        "ONNX file (repeatable); default: random and every heuristic. On the "
                        "multi-agent servegym/MultiCluster-v0 a team: 'team' (the heuristic team), "
                        "'zoo' (the trained team), 'random' or ROLE=POLICY[,ROLE=POLICY] (agents/team.py)")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config fields of the environment (listed below per environment)")
    p.add_argument("--split", default=None, choices=SPLITS,
                   help="windows to replay (default test: the held-out ones); --env-kwargs split=... "
                        "is the same setting")
    p.add_argument("--json", type=Path,
                   help="write the results here (and wall times and decision latencies to "
                        "FILE.timing.json)")
    p.add_argument("--capacity", action="store_true",
                   help="also search each policy's effective capacity (highest rate with SLO "
                        "attainment >= --capacity-target; environments with a capacity_knob)")
    p.add_argument("--capacity-target", type=float, default=None,
                   help="SLO attainment the --capacity search holds (default 0.9; only with --capacity)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)

    def body() -> int:
        if a.episodes < 1:
            raise cli.UsageError(f"--episodes {a.episodes}: must be >= 1")
        if a.seed < 0:  # was reported as "--env-kwargs ...: expected non-negative integer"
            raise cli.UsageError(f"--seed {a.seed}: must be >= 0")
        if a.capacity_target is not None and not a.capacity:  # was ignored without a word
            raise cli.UsageError(f"--capacity-target {a.capacity_target}: only with --capacity (no capacity "
                                 "search runs without it)")
        if a.capacity_target is None:
            a.capacity_target = 0.9
        if not 0 < a.capacity_target <= 1:
            raise cli.UsageError(f"--capacity-target {a.capacity_target}: must be in (0, 1]")
        kwargs = cli.parse_env_kwargs(a.env_kwargs, a.env)
        # both settings were taken silently: --env-kwargs split won over --split, window_order became sequential;
        # --env-kwargs trace=... was ignored for --trace's default
        a.split = cli.take_env_kwarg(kwargs, "split", "--split", a.split, "test", SPLITS)
        a.trace = cli.take_env_kwarg(kwargs, "trace", "--trace", a.trace, "default")
        if kwargs.get("window_order", "sequential") != "sequential":
            raise cli.UsageError(f"--env-kwargs window_order={kwargs['window_order']}: the evaluation replays "
                                 "the windows in order (sequential), the same ones for every policy")
        if options.is_multi_agent(a.env):
            policies = a.policy or team.default_teams()
            for spec in policies:
                try:
                    team.parse_team(spec)
                except ValueError as err:
                    raise cli.UsageError(f"--policy {err}") from None
        else:
            policies = a.policy or ["random", *heuristic_names(a.env)]
            cli.check_policies(a.env, policies)
            for spec in policies:  # a corrupt file was a line only after the policies before it had played
                if Path(spec).suffix in (".zip", ".onnx"):
                    try:
                        cli.check_policy_file(spec)
                    except ValueError as err:
                        raise cli.UsageError(f"--policy: {err}") from None
        cli.check_env(a.env, kwargs, a.trace, a.seed, split=a.split)
        searching = [p for p in policies if p in training_part_search(a.env)]
        if searching and a.split != "train":  # built as they build it (was a traceback after the policies before)
            try:
                cli.check_env(a.env, kwargs, a.trace, a.seed, split="train")
            except cli.UsageError as err:
                raise cli.UsageError(f"--policy {searching[0]} (searches on the trace's training part, "
                                     f"split=train): {err}") from None
        if a.json:
            cli.check_output(a.json, "--json")  # before the run, not a traceback at its end
        if a.capacity:
            from envs.options import vec_class

            if getattr(vec_class(a.env), "capacity_knob", None) is None:
                raise cli.UsageError(f"--capacity: {a.env} has no capacity_knob (no arrival "
                                     "rate to search over)")
        timing: dict[str, Any] = {}
        t = time.perf_counter()
        try:
            report = evaluate(a.env, policies, a.trace, a.episodes, a.seed, kwargs, a.split,
                              capacity=a.capacity, capacity_target=a.capacity_target, timing=timing)
        except PolicyMismatch as err:
            raise cli.UsageError(f"--policy: {err}") from None
        except RepeatedSweepValue as err:
            raise cli.UsageError(f"--env-kwargs {err}") from None
        print_tables(report)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(report_json(report))
            timing_path(a.json).write_text(json.dumps(
                {"wall_s": time.perf_counter() - t, "policies": timing}, indent=2))
        return 0

    return cli.run_main(p, body)


if __name__ == "__main__":
    sys.exit(main())
