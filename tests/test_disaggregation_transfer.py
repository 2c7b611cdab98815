"""Disaggregation-v0's transfer track (issue 21): held-out workload families on the 8B x 8 H100 cluster.

The zoo agent trains on the main track's Azure conversation + code phases only; the transfer scenarios play
other families whole (split=all), every phase from the held-out family, in distinct windows, and the
leaderboard plays them with the heuristics, the oracles and the zoo agent.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from agents import leaderboard as lb
from agents import scenarios as scn
from envs.disaggregation.config import DEFAULT_SHIFT_TRACE, DEFAULT_TRACE, DisaggregationConfig
from envs.disaggregation.env import DisaggregationVecEnv
from traces.builtin import versioned_name
from traces.errors import TraceError

DG = "servegym/Disaggregation-v0"
DG_TRANSFER = [s for s in scn.TRANSFER_SCENARIOS if s.env_id == DG]


def _skip_without_trace(sc: scn.Scenario) -> None:
    ok, why = sc.trace_available()
    if not ok:
        pytest.skip(f"{sc.id}: {why} (the Mooncake conversation trace lives in ../shared/traces)")


def test_training_families_are_the_recipe_and_the_main_tracks_phases():
    """TRAINING_WORKLOADS[Disaggregation] is what the zoo recipe trains on: the config's default phase traces,
    which every main-track scenario plays (no trace override), and --scenarios reaches only the main track."""
    from agents.family_vec import family_specs
    from agents.zoo import RECIPES

    trained = scn.TRAINING_WORKLOADS[DG]
    assert trained == (versioned_name(DEFAULT_TRACE), versioned_name(DEFAULT_SHIFT_TRACE))
    recipe = RECIPES[DG]
    assert recipe.trace == "+".join(trained) and recipe.transfer and recipe.on_distribution
    main = [s for s in scn.SCENARIOS if s.env_id == DG and s.track == "main"]
    assert main and all(s.trace == "default" and not {"trace", "shift_trace"} & set(s.env_kwargs) for s in main)
    glob = recipe.train_args[recipe.train_args.index("--scenarios") + 1]
    assert {f.name for f in family_specs(DG, [glob])} == {s.id for s in main}  # no transfer scenario trained on


def test_transfer_scenarios_hold_out_whole_families_at_two_loads():
    trained = {scn.family_of(w) for w in scn.TRAINING_WORKLOADS[DG]}
    by_family: dict[str, set[float]] = {}
    for s in DG_TRANSFER:
        assert re.fullmatch(r"disaggregation/transfer/[^/]+/llama3\.1-8b-h100x8/load[0-9.]+/slo_[a-z_]+/v\d+", s.id)
        kw = s.env_kwargs
        assert kw["split"] == "all" and kw["shift_trace"] is None  # no trained phase in between
        cfg = DisaggregationConfig(**kw)
        assert (cfg.model, cfg.gpu, cfg.instances, cfg.tp) == ("Llama-3.1-8B", "H100", 8, 1)
        assert not s.in_quick and s.track == "transfer"
        fam = scn.family_of(s.trace)
        assert fam not in trained, s.id
        assert fam in scn.transfer_note(s) and "outside the training distribution" in scn.transfer_note(s)
        by_family.setdefault(fam, set()).add(kw["load"])
    assert len(by_family) >= 2 and all(len(loads) >= 2 for loads in by_family.values()), by_family


@pytest.mark.parametrize("sc", DG_TRANSFER, ids=lambda s: s.id)
def test_transfer_episodes_are_distinct_windows_of_the_held_out_family(sc):
    """Each episode the leaderboard plays is its own window (no two equal, none replayed cyclically), and
    every phase comes from the held-out family."""
    _skip_without_trace(sc)
    env = DisaggregationVecEnv(1, **lb._env_kwargs(sc, quick=False))
    built = env.scenario
    windows = scn.held_out_windows(env)
    assert windows is not None and windows >= sc.episodes and scn.windows_note(sc.episodes, windows) == ""
    assert built.wrapped == 0 and built.trace_names == (sc.trace,)
    assert (built.phase_source == 0).all()
    wl = built.workload
    rows = [(wl.arrival_s[w, :wl.n_requests[w]], wl.prompt[w, :wl.n_requests[w]]) for w in range(sc.episodes)]
    for i in range(len(rows)):
        for j in range(i):
            same = rows[i][0].shape == rows[j][0].shape and (rows[i][1] == rows[j][1]).all()
            assert not same, (sc.id, i, j)


def test_the_leaderboard_plays_a_transfer_scenario_with_heuristics_oracles_and_the_zoo_agent():
    """A tiny quick variant of the agentic row (2 phases of 60 s, one episode) through the leaderboard's own
    plan and runs: the zoo agent takes part, the oracles rank above every static heuristic, and the report
    says what is held out and how many distinct windows the episodes hold."""
    sc = next(s for s in DG_TRANSFER if s.trace == "agentic-v1")
    (_, policies, why), = lb.plan_runs([sc], [])
    assert not why and "zoo" in policies and {"static_best", "oracle_dp"} <= set(policies)
    played = ("colocated", "distserve", "splitwise", "static_best", "oracle_dp", "zoo")
    runs = {p: lb.run_policy(sc, p, quick=True, episodes=None) for p in played}
    good = {p: r.episodes[0]["goodput_per_gpu"] for p, r in runs.items()}
    assert all(np.isfinite(v) and v >= 0 for v in good.values()), good
    assert good["static_best"] >= max(good["colocated"], good["distserve"], good["splitwise"]) - 1e-9
    assert good["oracle_dp"] >= good["static_best"] - 1e-9
    report = lb.build_report([scn.ScenarioResult(sc, list(runs.values()))], "test", quick=True, code={})
    entry, = report["scenarios"]
    assert entry["track"] == "transfer" and "agentic" in entry["held_out"] and entry["distinct_windows"] == 1
    assert {r["policy"] for r in report["rows"]} == set(played)


def test_a_held_out_trace_that_does_not_exist_is_a_one_line_error():
    with pytest.raises(TraceError, match="no_such_family") as err:
        DisaggregationVecEnv(1, trace="no_such_family", shift_trace=None, split="all")
    assert "\n" not in str(err.value)


def test_shift_trace_none_is_spelled_none_on_the_command_line():
    from agents.cli import parse_env_kwargs

    assert parse_env_kwargs(["shift_trace=none", "split=all", "trace=agentic-v1"], DG) == {
        "shift_trace": None, "split": "all", "trace": "agentic-v1"}
