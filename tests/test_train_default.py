"""train.py's default recipe (agents.training.default_imitation / default_timesteps): what runs when no length is
given, and which options ask for RL steps instead."""

import json

import pytest

from agents import train
from agents.training import DEFAULT_IMITATION

KV = "servegym/KVAdmission-v0"


def resolved(argv):
    a = train.build_parser().parse_args(argv)
    train.resolve_length(a, a.algo or train.DEFAULT_ALGO.get(a.env, "ppo"))
    return a.timesteps, a.imitate, list(a.imitate_kwargs), a.n_envs


def test_no_length_runs_kvadmissions_dagger_recipe():
    recipe = DEFAULT_IMITATION[KV]["maskable-ppo"]
    assert resolved([]) == (0, recipe["imitate"], list(recipe["imitate_kwargs"]), recipe["n_envs"])
    assert resolved(["--n-envs", "8"])[3] == 8  # a given env count is kept


@pytest.mark.parametrize("argv", [["--timesteps", "1000"], ["--imitate", "0"], ["--snapshots", "100"],
                                  ["--critic-warmup", "10"], ["--resume"], ["--init", "x.zip"],
                                  ["--algo", "ppo"], ["--env", "servegym/Routing-v0"]])
def test_anything_asking_for_rl_steps_or_another_recipe_gets_rl_alone(argv):
    timesteps, imitate, kwargs, _ = resolved(argv)
    assert imitate == 0 and kwargs == [] and timesteps > 0


def test_imitate_alone_keeps_the_rl_steps_after_it():
    # --imitate N without --timesteps keeps the environment's RL steps after it (as before the default recipe)
    assert resolved(["--imitate", "4096"])[:2] == (200_000, 4096)


def test_the_default_run_imitates_and_records_it(tmp_path, monkeypatch):
    # the recipe shrunk so that it runs in seconds; the wiring is the default's
    monkeypatch.setitem(DEFAULT_IMITATION, KV, {"maskable-ppo": dict(imitate=96, imitate_kwargs=("epochs=2",), n_envs=4)})
    assert train.main(["--out", str(tmp_path), "--no-eval", "--no-progress"]) == 0
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["timesteps"], run["imitate"], run["imitate_kwargs"], run["n_envs"]) == (0, 96, {"epochs": 2}, 4)
    assert run["imitation"] and (tmp_path / "final.zip").is_file()
