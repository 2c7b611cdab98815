"""ExpertPlacement-v0 throughput at E=256 experts (DeepSeek-V3 on 32 H200s, the default scenario).

    python -m envs.bench --env servegym/ExpertPlacement-v0 [--sizes 1 16 64] [--repeats 3] [--json FILE]

Per batch size, timed over whole episodes (load generation, resets and the episode's
normalized-score references included): sub-steps per second of the native VecEnv and of SB3's
DummyVecEnv over the Gymnasium view, under EPLB (one sub-step per layer per rebalance) and under
custom + fill (two per layer); rebalance decisions per second (a rebalance = every simulated layer
decided and the next interval of 32 batch steps played); and the cluster model alone: simulated
batch steps per second (each step = every simulated MoE layer: dispatch, FFN, all-to-all), and the
seconds one episode's load generation and its two reference costs (round-robin, clairvoyant EPLB)
take. One core; medians over ``--repeats`` episodes; ratios from the same run.
"""

from __future__ import annotations

import sys

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import bench_parser, machine, now, start, steady_state, write_json
from envs.expert_placement import kernels as K
from envs.expert_placement.env import ENV_ID, ExpertPlacementEnv, ExpertPlacementVecEnv
from envs.expert_placement.sim import make_config
from envs.options import Parser




def _policy_actions(vec, mode: int) -> np.ndarray:
    """``mode`` on mode sub-steps; FILL (every remaining replica by EPLB's greedy rule) on
    replica sub-steps: 4 layers x 2 sub-steps per rebalance for custom."""
    mask = np.asarray(vec.env_method("action_masks")) if isinstance(vec, DummyVecEnv) else vec.action_masks()
    return np.where(mask[:, mode], mode, K.FILL)


def _rate(vec, mode: int, repeats: int) -> tuple[float, float]:
    """Median (sub-steps/s, rebalances/s) over whole episodes of every env of ``vec`` (so episode
    resets, load generation and the episode's reference costs are inside the timing)."""
    vec.reset()
    rates, rebal = [], []
    for rep in range(repeats + 1):  # the first episode warms up (compilation)
        steps = n_reb = 0
        t = now()
        while True:
            _, r, d, _ = vec.step(_policy_actions(vec, mode))
            steps += 1
            n_reb += int(np.count_nonzero(r))
            if d.all():
                break
        dt = now() - t
        if rep:
            rates.append(steps * vec.num_envs / dt)
            rebal.append(n_reb / dt)
    return float(np.median(rates)), float(np.median(rebal))


def bench_sim(n: int, repeats: int) -> dict:
    """The cluster model alone: one interval of every env per call."""
    v = ExpertPlacementVecEnv(n, seed=0)
    v.reset()
    sim = v.sim
    envs = np.arange(n)
    rates = []
    for _ in range(repeats):
        sim.interval[:] = 0
        place = sim.place.copy()
        t = now()
        for _ in range(v.config.intervals):
            sim.run_interval(envs, place)
        dt = now() - t
        rates.append(n * v.config.intervals * v.config.interval_steps / dt)
    r = float(np.median(rates))
    gen, refs = [], []
    for rep in range(repeats):
        t = now()
        sim.load.episode(rep, v.config.drifts()[0])
        gen.append(now() - t)
        t = now()
        for kind in ("round_robin", "eplb_clairvoyant"):
            sim.reference_cost(0, kind)
        refs.append(now() - t)
    return {"n_envs": n, "batch_steps_per_s": r, "generator_s_per_episode": float(np.median(gen)),
            "references_s_per_episode": float(np.median(refs)),
            "episode_batch_steps": sim.load.steps, "layer_steps_per_s": r * v.sh.L, "experts": v.sh.E,
            "gpus": v.sh.G, "layers": v.sh.L}


def build_parser() -> Parser:
    return bench_parser("python -m envs.bench --env " + ENV_ID, __doc__, [1, 16, 64], 3)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    start(a)
    rows = []
    for E in a.sizes:
        row: dict = {"n_envs": E}
        for name, mode in (("eplb", K.EPLB), ("custom", K.CUSTOM)):
            native, reb = _rate(ExpertPlacementVecEnv(E, seed=0), mode, a.repeats)
            dummy, _ = _rate(DummyVecEnv([lambda: ExpertPlacementEnv() for _ in range(E)]), mode, a.repeats)
            row[f"{name}_native_steps_per_s"] = native
            row[f"{name}_rebalances_per_s"] = reb
            row[f"{name}_dummy_steps_per_s"] = dummy
            row[f"{name}_ratio"] = native / dummy
            print(f"E={E:4d} {name:6s}: native {native:9,.0f} sub-steps/s ({reb:7,.1f} rebalances/s), "
                  f"dummy {dummy:9,.0f}, ratio {native / dummy:5.1f}x", flush=True)
        # What the decisions simulate: every rebalance plays the next interval's batch steps (every
        # simulated MoE layer of each), each step tokens_per_gpu x gpus tokens.
        cfg = make_config()
        for name in ("eplb", "custom"):
            row[f"{name}_batch_steps_per_s"] = row[f"{name}_rebalances_per_s"] * cfg.interval_steps
            row[f"{name}_tokens_per_s"] = row[f"{name}_batch_steps_per_s"] * cfg.tokens_per_gpu * cfg.gpus
        row["batch_steps_per_s"] = row["eplb_batch_steps_per_s"]
        row["tokens_per_s"] = row["eplb_tokens_per_s"]
        row["native_steps_per_s"] = row["eplb_native_steps_per_s"]
        row["dummy_steps_per_s"] = row["eplb_dummy_steps_per_s"]
        row["ratio"] = row["eplb_ratio"]
        rows.append(row)
    sim = [bench_sim(n, a.repeats) for n in sorted({1, max(a.sizes)})]
    for s in sim:
        print(f"cluster model, {s['n_envs']} envs, E={s['experts']} on {s['gpus']} GPUs: "
              f"{s['batch_steps_per_s']:,.0f} batch steps/s ({s['layer_steps_per_s']:,.0f} layer-steps/s); "
              f"load generator {s['generator_s_per_episode']:.3f} s per episode of {s['episode_batch_steps']} steps, "
              f"reference costs {s['references_s_per_episode']:.3f} s per episode")
    report = {"env": ENV_ID, "rows": rows, "simulator": sim, "repeats": a.repeats, "clock": a.clock,
              "steady_state": steady_state(
                  "whole episodes (load generation, resets and the episode's references inside the timing); "
                  "the first episode warms up and is not counted", "one episode", "whole episodes", a.repeats,
                  action="EPLB, and custom + fill",
                  work="batch_steps_per_s / tokens_per_s: simulated MoE batch steps (every simulated layer) and "
                       "the tokens they route, per wall second, through the native VecEnv under EPLB"),
              "machine": machine()}
    write_json(a.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
