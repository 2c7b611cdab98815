"""The leaderboard's transfer track: workload families held out of the training distribution.

Every transfer scenario's family is outside ``TRAINING_WORKLOADS`` of its environment (whole
families, not only later windows), each environment has two or more held-out families, ids are
versioned, ``--quick`` plays at most one transfer scenario, and a scenario whose episodes replay
a window says so.
"""

from __future__ import annotations

import re

import pytest

import traces
from agents import scenarios as scn
from traces.builtin import resolve_builtin

TRANSFER_ENVS = ("servegym/KVAdmission-v0", "servegym/Routing-v0", "servegym/PrefixEviction-v0",
                 "servegym/Disaggregation-v0")
EP = "servegym/ExpertPlacement-v0"


def test_transfer_families_are_disjoint_from_the_training_distribution():
    for env_id in TRANSFER_ENVS:
        trained = {scn.family_of(w) for w in scn.TRAINING_WORKLOADS[env_id]}
        held_out = {scn.family_of(s.trace) for s in scn.TRANSFER_SCENARIOS
                    if s.env_id == env_id and s not in scn.TRANSFER_SCENARIOS_HW}
        assert held_out and not held_out & trained, (env_id, held_out & trained)
        assert len(held_out) >= 2, env_id
    # Every entry names a current built-in generator or a shared trace file.
    entries = ({w for ws in scn.TRAINING_WORKLOADS.values() for w in ws}
               | {s.trace for s in scn.TRANSFER_SCENARIOS if s not in scn.TRANSFER_SCENARIOS_HW})
    for entry in entries:
        assert "/" in entry or resolve_builtin(entry) is not None, entry


def test_family_of_names_an_unknown_entry():
    with pytest.raises(KeyError, match="no_such-v1"):
        scn.family_of("no_such-v1")


def test_transfer_scenarios_are_versioned_held_out_and_quick_keeps_one():
    ids = [s.id for s in scn.TRANSFER_SCENARIOS]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"v\d+", i.rsplit("/", 1)[1]) and "/transfer/" in i for i in ids)
    assert all(s in scn.SCENARIOS and s.track == "transfer" for s in scn.TRANSFER_SCENARIOS)
    assert sum(s.in_quick for s in scn.TRANSFER_SCENARIOS) == 1
    for s in scn.TRANSFER_SCENARIOS:
        # A held-out family plays whole: no part of it was trained on. ExpertPlacement's generator
        # families also draw held-out generator seeds (split=test), so no latent noise of a training
        # episode reappears under another regime.
        # A hardware scenario on a trained family plays that family's held-out windows (split=test).
        want = "test" if s.trace == "default" and (s.env_id == EP or s in scn.TRANSFER_SCENARIOS_HW) else "all"
        assert s.env_kwargs["split"] == want, s.id
    assert all(s.track == "main" for s in scn.SCENARIOS if s not in scn.TRANSFER_SCENARIOS)
    # every transfer scenario says what it holds out (leaderboard.json's "held_out"), including
    # environments with no TRAINING_WORKLOADS entry (Autoscale's ServeGen days state it themselves)
    for s in (x for x in scn.SCENARIOS if x.track == "transfer"):
        assert scn.transfer_note(s), s.id


def test_generated_transfer_families_hold_distinct_windows_for_every_episode():
    """A held-out part with one window replayed is one sample: each generated family's scenario
    has at least as many distinct windows as episodes (files absent here are checked when run)."""
    for s in scn.TRANSFER_SCENARIOS:
        if "/" in s.trace or s.env_id == EP:  # ExpertPlacement: below
            continue
        tr = traces.load_trace(s.trace, seed=0, **dict(s.env_kwargs.get("trace_params", ())))
        window = 1000 if s.env_id.endswith("PrefixEviction-v0") else 1024
        assert len(tr) // window >= s.episodes, (s.id, len(tr) // window, s.episodes)


def test_expert_placement_families_are_held_out_of_its_training_regime():
    """Each ExpertPlacement transfer family differs from the training regime (the config defaults
    the zoo recipe trains on) in the load process or the model; the recorded-counts file is the
    committed generated one, reproducible by its command, and holds a start for every episode."""
    from envs.expert_placement.sim import ExpertPlacementConfig
    from traces.moe_counts import FILE, STEPS, generated_counts

    eps = [s for s in scn.TRANSFER_SCENARIOS if s.env_id == EP]
    base = ExpertPlacementConfig()
    families = set()
    for s in eps:
        assert s.held_out and "outside training" in s.held_out or "GENERATED" in s.held_out
        changed = {k: v for k, v in s.env_kwargs.items() if k not in ("drift", "split") and getattr(base, k) != v}
        assert changed or s.trace != "default", s.id
        families.add(s.id.split("/")[2])
    assert len(families) >= 2 and any(s.trace == str(FILE) for s in eps)
    drifts = {s.env_kwargs.get("drift") for s in eps if s.trace == "default"}
    assert drifts == {0.01, 0.04, 0.15}  # the main track's held-out drifts
    got = traces.load_expert_counts(FILE)
    assert got.shape == (STEPS, 4, 256) and (got == generated_counts()).all()
    rec = next(s for s in eps if s.trace == str(FILE))
    assert STEPS - 17 * 32 + 1 >= rec.episodes


def test_hardware_transfer_scenarios_hold_out_the_engine_and_keep_the_rest():
    """KVAdmission-v0's hardware rows: an engine (model, GPU) the zoo agent never trained on, one that fits
    and has published step-time checks, on a trained family (held-out windows) and on a held-out one; the
    SLO is the model's own, loads stay relative to the engine's measured capacity, ids are versioned."""
    import hwmodels
    from agents.zoo import RECIPES
    from envs.core.engine import EngineSpec
    from envs.kv_admission.env import KVAdmissionConfig
    from envs.slo import default_slo

    hw = scn.TRANSFER_SCENARIOS_HW
    assert hw and all(s in scn.TRANSFER_SCENARIOS and s.env_id == "servegym/KVAdmission-v0" for s in hw)
    base = KVAdmissionConfig()
    recipe = " ".join(RECIPES["servegym/KVAdmission-v0"].train_args)
    assert "model=" not in recipe and "gpu=" not in recipe  # the zoo agent trains on the config's engine
    assert (base.model, base.gpu) == ("Llama-3.1-8B", "H100")
    engines = set()
    for s in hw:
        kw = s.env_kwargs
        assert (hwmodels.get_gpu(kw["gpu"]).name, kw["model"]) != (hwmodels.get_gpu(base.gpu).name, base.model)
        assert (kw["slo_ttft_s"], kw["slo_tpot_s"]) == default_slo(kw["model"]), s.id
        assert EngineSpec(model=kw["model"], gpu=kw["gpu"]).build().capacity_blocks > 0
        assert re.fullmatch(r"kv_admission/transfer/[^/]+/[a-z0-9.\-]+/mlperf_server/load[0-9.]+/v\d+", s.id), s.id
        assert "hardware" in scn.transfer_note(s) and kw["model"] in scn.transfer_note(s)
        engines.add((kw["model"], kw["gpu"]))
        fam = s.id.split("/")[2]
        if fam == "azure_conv":
            assert s.trace == "default" and kw["split"] == "test"  # a family the agent trains on
        else:
            assert kw["split"] == "all" and scn.family_of(s.trace) not in {
                scn.family_of(w) for w in scn.TRAINING_WORKLOADS["servegym/KVAdmission-v0"]}
    # another GPU and another model, each on a trained and a held-out family
    assert {g for _, g in engines} - {"H100", "H100-SXM"} and {m for m, _ in engines} - {"Llama-3.1-8B"}
    assert len({(s.id.split("/")[2], s.id.split("/")[3]) for s in hw}) == len(engines) * 2


def test_windows_note_says_when_a_window_is_replayed():
    assert scn.windows_note(4, 4) == "" and scn.windows_note(4, None) == ""
    assert "3 episodes replay 1 distinct held-out window(s)" in scn.windows_note(3, 1)


def test_held_out_windows_counts_the_windows_each_sweep_value_replays():
    """Every environment's episodes replay its windows (episode k plays window k mod count): Disaggregation
    builds episodes_per_load windows at each load (its workload rows are windows x loads: 6 here, which
    overstated the distinct episodes of a two-load sweep), Autoscale its held-out days and ExpertPlacement its
    generated episodes (both were None: no replay could be reported)."""
    import envs

    dis = envs.make_vec("servegym/Disaggregation-v0", 1, seed=0, load=(0.5, 0.8), episodes_per_load=3, phases=2,
                        phase_s=60.0)
    assert dis.scenario.workload.arrival_s.shape[0] == 6 and scn.held_out_windows(dis) == 3
    auto = envs.make_vec("servegym/Autoscale-v0", 1, seed=0, trace="bursty", split="test")
    assert scn.held_out_windows(auto) == auto.scenario.arrivals.shape[0] > 0
    ep = envs.make_vec(EP, 1, seed=0)
    assert scn.held_out_windows(ep) == ep.sim.load.n_windows > 8


def test_user_traces_replay_only_main_scenarios(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n")
    out = scn.user_trace_scenarios([str(path)], ["KVAdmission"])
    assert out and all(s.track == "main" and "/transfer/" not in s.id for s in out)


def test_a_scenario_played_whole_does_not_claim_a_train_held_out_split(tmp_path):
    """A --trace file plays whole (split=all), yet its leaderboard entry said 'Training may see: the first 70%
    of the trace's windows (split=train); scored on the last 30%' (its environment's rule for its own traces).
    Scenarios that play a trace whole say none of it is seen; the others keep their environment's rule."""
    from agents import leaderboard as lb

    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 0, "input_length": 100, "output_length": 5}\n')
    whole = [s for s in scn.SCENARIOS if s.kwargs(False).get("split") == "all"]
    for sc in scn.user_trace_scenarios([str(path)], None) + whole:
        said = sc.training_may_see()
        assert "split=all" in said and "70%" not in said and "30%" not in said, (sc.id, said)
        assert sc.kwargs(False)["split"] == "all"
    for sc in (s for s in scn.SCENARIOS if s.kwargs(False).get("split", "test") != "all"):
        assert sc.training_may_see() == scn.SCORING[sc.env_id].training_may_see
    user = scn.user_trace_scenarios([str(path)], ["KVAdmission"])[0]
    (entry,) = lb.build_report([scn.ScenarioResult(user, skipped="x")], "cmd", False, code={})["scenarios"]
    assert entry["scoring"]["training_may_see"] == user.training_may_see()


def test_only_zoo_agents_trained_on_a_distribution_play_the_transfer_track():
    from agents.leaderboard import zoo_on_distribution
    from agents.zoo import RECIPES, Recipe

    assert Recipe("x.zip", ("--env-kwargs", "workloads=a,b", "load=1.1"), "a+b").on_distribution
    assert not Recipe("x.zip", ("--trace", "a.jsonl"), "a.jsonl").on_distribution
    assert zoo_on_distribution("servegym/Routing-v0") == RECIPES["servegym/Routing-v0"].on_distribution
    # Autoscale's agent trains on bursty generator days; ServeGen's real days are held out of it (transfer=True)
    assert zoo_on_distribution("servegym/Autoscale-v0") and not zoo_on_distribution("no/such-v0")
    # Disaggregation's agent trains on the Azure conversation + code phases; agentic and Mooncake are held out
    assert zoo_on_distribution("servegym/Disaggregation-v0")


def test_zoo_commands_resolve_mixture_files_against_the_repository_root():
    from agents.zoo import Recipe
    from agents.zoo.__main__ import REPO_ROOT, recipe_args

    shared = str((REPO_ROOT / "../shared/traces/x.jsonl").resolve())
    comma = recipe_args("E", Recipe("a.zip", ("--env-kwargs", "workloads=azure_conv-v1,../shared/traces/x.jsonl"), "t"))
    assert comma == ["--env", "E", "--env-kwargs", f"workloads=azure_conv-v1,{shared}"]
    tup = recipe_args("E", Recipe("a.zip", ("--env-kwargs", "workloads=('bursty-v1','../shared/traces/x.jsonl')"), "t"))
    assert tup[-1] == "workloads=" + repr(("bursty-v1", shared))
    # a (name or path, trace_params) entry, as envs.core.mixture takes (was pathlib's TypeError on the tuple)
    pair = recipe_args("E", Recipe("a.zip", ("--env-kwargs", "workloads=('mooncake_conv-v1',"
                                             "('../shared/traces/x.jsonl',(('think_time_scale',0.1),)))"), "t"))
    assert pair[-1] == "workloads=" + repr(("mooncake_conv-v1", (shared, (("think_time_scale", 0.1),))))
