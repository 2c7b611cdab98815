"""Teams on the multi-agent cluster through agents.evaluate and the leaderboard."""

from __future__ import annotations

import numpy as np
import pytest
from test_routing import chain_trace

from agents import cli, team
from agents.evaluate import evaluate
from agents.heuristics import multi as mh
from envs import options
from envs.multi import env as M

R = 4


def kw(trace, **more):
    base = {"split": "all", "replicas": R, "window_requests": len(trace), "capacity_blocks": 4096,
            "rate_scale": 1.0}
    base.update(more)
    return base


def test_the_cluster_is_reachable_by_every_name_form():
    for form in ("servegym/MultiCluster-v0", "MultiCluster", "multi", "multicluster-v0"):
        assert options.resolve_env_id(form) == team.ENV_ID
    names = {f.name for f in options.config_fields(team.ENV_ID)}
    assert {"n_routers", "cost_weight", "load", "replicas", "trace"} <= names  # own + RoutingConfig's
    assert cli.parse_env_kwargs(["n_routers=3", "load=0.6,0.8"], team.ENV_ID) == {"n_routers": 3, "load": (0.6, 0.8)}


def test_team_specs():
    assert team.parse_team("team") == {"router": "jsq", "admission": "vllm_fcfs", "autoscaler": "hpa"}
    assert team.parse_team("router=p2c") == {"router": "p2c", "admission": "vllm_fcfs", "autoscaler": "hpa"}
    assert set(team.parse_team("random").values()) == {"random"}
    for bad, says in (("router=lru", "router takes one of random, round_robin"), ("pilot=jsq", "no role 'pilot'"),
                      ("jsq", "expected 'team'"), ("router=jsq,router=p2c", "given twice")):
        with pytest.raises(ValueError, match=says):
            team.parse_team(bad)
    specs = team.default_teams()
    assert specs[:2] == ["random", "team"] and "router=round_robin" in specs


def test_heuristic_team_rollout_equals_run_team():
    """agents.team's rollout plays the same episodes as envs.multi's own run_team."""
    tr = chain_trace(48, rate=10.0)
    args = {**kw(tr), "trace": tr, "window_order": "sequential"}
    eps, lat = team.run_episodes("team", 2, 0, args)
    ref = M.run_team(2, mh.team(), seed=0, **args)
    assert len(eps) == 2 and lat.size > 0 and (lat > 0).all()
    for a, b in zip(eps, ref):
        assert a["return_mean"] == b["return"]
        assert a["slo_attainment"] == b["slo_attainment"] and a["cost_usd"] == b["cost_usd"]


def test_evaluate_scores_teams_deterministically():
    tr = chain_trace(48, rate=10.0)
    rep = evaluate(team.ENV_ID, ["team", "router=round_robin", "random"], tr, 2, 0, kw(tr, load=0.8),
                   split="all", progress=False)
    again = evaluate(team.ENV_ID, ["team", "router=round_robin", "random"], tr, 2, 0, kw(tr, load=0.8),
                     split="all", progress=False)
    assert rep["results"] == again["results"]
    assert rep["table_metrics"][0] == "slo_attainment"
    for r in rep["results"]:
        m = r["metrics"]
        assert 0 <= m["slo_attainment"] <= 1 and m["cost_usd"] > 0 and np.isfinite(m["return_mean"])


def test_evaluate_cli_refuses_a_bad_team_in_one_line(capsys):
    from agents.evaluate import main

    with pytest.raises(SystemExit) as exit_:
        main(["--env", "multi", "--policy", "router=lru"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "--policy 'router=lru': router takes one of" in err[0]
    from agents.leaderboard import main as lb_main

    for bad, says in (("router=lru", "--team 'router=lru': router takes one of"), ("jsq", "--team 'jsq': expected ROLE")):
        with pytest.raises(SystemExit) as exit_:  # each CLI names its own option, not another's
            lb_main(["--team", bad, "--out", "unused"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and says in err[0] and "--policy" not in err[0]
    from agents.train import main as train_main

    with pytest.raises(SystemExit) as exit_:
        train_main(["--env", "MultiCluster"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and "is multi-agent" in err[0]


def test_leaderboard_scores_team_scenarios():
    from agents import leaderboard as lb
    from agents.scenarios import SCORING, Scenario, scenarios_for

    assert scenarios_for(["multi"]) and all(s.env_id == team.ENV_ID for s in scenarios_for(["multi"]))
    assert SCORING[team.ENV_ID].naive in lb.policies_for(team.ENV_ID, [])
    tr = chain_trace(48, rate=10.0)
    sc = Scenario(id="multi_cluster/test/v1", env_id=team.ENV_ID, trace=tr, env_kwargs=kw(tr, load=0.8),
                  episodes=2)
    res = lb.run_scenario(sc, ["team", "router=round_robin", "random"], quick=False, episodes=None)
    rows = lb.score_scenario(res)
    by = {r["policy"]: r for r in rows}
    assert by["router=round_robin"]["normalized"]["value"] in (0.0, None)  # None: naive already at the bound
    assert sorted(r["rank"] for r in rows)[0] == 1


def test_headline_tells_learned_teams_from_heuristic_teams():
    from agents.leaderboard_report import _is_learned

    assert _is_learned("router=zoo") and _is_learned("admission=runs/x/final.zip,router=jsq")
    assert not _is_learned("router=p2c") and not _is_learned("team") and _is_learned("zoo")
