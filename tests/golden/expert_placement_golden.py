"""Golden episodes of ExpertPlacement-v0 (issue 16): what the environment emitted before the speed work.

    PYTHONPATH=$PWD python tests/golden/expert_placement_golden.py --out tests/golden/expert_placement.json
    PYTHONPATH=$PWD python tests/golden/expert_placement_golden.py --check tests/golden/expert_placement.json

Each case plays whole episodes of a seeded batch under a fixed mode, seeded random legal actions
or seeded random actions of the whole space (masked ones replaced by the env), over generated
load (several skews, drifts, phase shifts, both dispatch rules, replica sub-steps, the held-out
split, both oracles) or recorded counts, and records

* ``inputs``: SHA-256 of what the environment reads besides the load (the cost model's FFN table,
  all-to-all time and migration cost, the initial placement): when it differs, the scenario
  changed (hwmodels, config defaults), not the speed work, and the case says so instead of comparing;
* ``counts``: SHA-256 of every episode's expert counts (the load generator's output);
* ``steps``: SHA-256 of every observation, action mask, reward and done flag, by their bytes;
* ``metrics``: every episode metric of every env (``infos[e]["metrics"]``, normalized score with
  its two reference costs included), floats as ``float.hex`` (exact), and the episode return.

``tests/test_expert_placement_golden.py`` compares the current code with ``expert_placement.json``,
recorded on the code of commit 711ea3f (before issue 16's first ExpertPlacement change, 8e6dda0)
for ``envs/expert_placement`` and ``traces/moe.py``, bit for bit. Re-recorded on b8730e7 (issue 21:
the observation gained eight global features in time): only ``steps`` changed (observations); every
case's ``inputs``, ``counts`` and ``metrics`` stayed 711ea3f's, bit for bit. Re-recorded for
expert_load-v2 (2026-12-03: the generator draws with ``traces.portable``, so the counts no longer
depend on the machine's numpy and libm): ``counts``, ``steps`` and ``metrics`` changed, every
``inputs`` stayed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

# inputs, counts and metrics: 711ea3f's; steps (observations): b8730e7's (issue 21's features in time)
RECORDED_ON = "711ea3f (envs/expert_placement, traces/moe.py); steps re-recorded on b8730e7 (observation v0 + time features)"
SMALL = dict(layers=2, interval_steps=8, intervals=4)
# name -> (config overrides, envs, episodes per env, plan, seed, oracle)
# plan: "eplb" / "keep" / "custom" (that mode, FILL on replica sub-steps), "legal" (seeded random
# legal action), "any" (seeded random action of the whole space; masked ones are replaced)
CASES: dict[str, tuple[dict, int, int, str, int, str | None]] = {
    "default_eplb": ({}, 2, 2, "eplb", 0, None),
    "default_legal_random": ({}, 3, 2, "legal", 1, None),
    "replica_substeps_even_phase_shifts": (
        dict(replica_substeps=True, dispatch="even", phase_shift_every=20, zipf_s=1.2, **SMALL), 2, 3, "legal", 2,
        None),
    "test_split_any_action_sequential": (
        dict(split="test", window_order="sequential", candidates=4, **SMALL), 3, 2, "any", 3, None),
    "clairvoyant_oracle": (dict(split="test", **SMALL), 2, 2, "keep", 4, "eplb_clairvoyant"),
    "perfect_balance_oracle": (dict(drift=(0.3, 0.9), layer_corr=0.0, **SMALL), 2, 2, "keep", 5, "perfect_balance"),
    "mixtral_redraws": (  # rows over capacity (an expert above tokens_per_step) redrawn
        dict(model="Mixtral-8x7B", gpus=4, gpus_per_node=4, redundant_slots=4, zipf_s=1.0, tokens_per_gpu=3,
             drift=1.0, replica_substeps=True, **SMALL), 2, 3, "legal", 6, None),
    "qwen_capped_experts_redraws": (  # the top experts' inclusion probability capped at 1, and redraws
        dict(model="Qwen3-30B-A3B", gpus=4, gpus_per_node=4, zipf_s=2.0, tokens_per_gpu=3, drift=0.1,
             phase_shift_every=5, **SMALL), 2, 2, "legal", 9, None),
    "qwen_custom_two_nodes": (
        dict(model="Qwen3-30B-A3B", gpus=16, gpus_per_node=8, zipf_s=0.9, layers=3, interval_steps=16, intervals=5,
             phase_shift_every=37), 2, 2, "custom", 7, None),
    "recorded_counts": (dict(model="Qwen3-30B-A3B", gpus=8, split="all", **SMALL), 2, 3, "legal", 8, None),
}


def _sha(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode()), h.update(str(a.shape).encode()), h.update(a.tobytes())
    return h.hexdigest()


def _exact(v):
    if isinstance(v, (float, np.floating)):
        return float(v).hex()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return repr(v)


def _recorded_counts(directory: Path) -> Path:
    """A fixed counts file for the recorded-trace case (not from the generator under test)."""
    rng = np.random.default_rng(20261201)
    steps, layers, experts = 200, 3, 128
    base = rng.gamma(0.5, size=(layers, experts))
    counts = rng.poisson(base[None] * rng.uniform(5, 60, size=(steps, 1, 1))).astype(np.int64)
    path = directory / "counts.npz"
    np.savez(path, counts=counts)
    return path


def play(name: str) -> dict:
    from envs.expert_placement import kernels as K
    from envs.expert_placement.env import ExpertPlacementVecEnv

    kw, E, episodes, plan, seed, oracle = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        if name == "recorded_counts":
            kw = {**kw, "trace": str(_recorded_counts(Path(tmp)))}
        vec = ExpertPlacementVecEnv(E, seed=seed, **kw)
        vec.set_oracle(oracle)
        cost = vec.sim.cost
        inputs = _sha([cost.ffn_table, np.array([cost.latency, cost.sent_rows, vec._mig_cost]),
                       np.asarray(cost.a2a(np.array([cost.sent_rows, 5000.0]))), vec.sim.init_place])
        rng = np.random.default_rng(seed)
        steps = hashlib.sha256()
        obs = vec.reset()
        counts: list[str] = [_sha([vec.sim.counts[e]]) for e in range(E)]
        steps.update(obs.tobytes())
        metrics: list[dict] = []
        done_eps = np.zeros(E, int)
        fixed = {"eplb": K.EPLB, "keep": K.KEEP, "custom": K.CUSTOM}
        while done_eps.min() < episodes:
            m = vec.action_masks()
            steps.update(m.tobytes())
            if plan in fixed:
                a = np.where(m[:, fixed[plan]], fixed[plan], K.FILL)
            elif plan == "legal":
                a = np.array([rng.choice(np.flatnonzero(m[e])) for e in range(E)], np.int64)
            else:
                a = rng.integers(0, vec.n_actions, size=E)
            obs, rew, done, infos = vec.step(a)
            steps.update(obs.tobytes()), steps.update(rew.tobytes()), steps.update(done.tobytes())
            for e in np.flatnonzero(done):
                if done_eps[e] < episodes:
                    info = infos[e]
                    metrics.append({**{k: _exact(v) for k, v in sorted(info["metrics"].items())},
                                    "return": _exact(info["episode"]["r"]), "length": info["episode"]["l"]})
                    counts.append(_sha([vec.sim.counts[e]]))  # the next episode's, drawn at the auto-reset
                done_eps[e] += 1
    return {"inputs": inputs, "counts": counts, "steps": steps.hexdigest(), "metrics": metrics}


def compare(name: str, got: dict, want: dict) -> list[str]:
    """Differences between a replay and the record; empty when bit-identical."""
    if got["inputs"] != want["inputs"]:
        return [f"{name}: inputs differ (scenario changed), not compared"]
    bad = []
    for ep, (g, w) in enumerate(zip(got["counts"], want["counts"])):
        if g != w:
            bad.append(f"{name}: expert counts of episode draw {ep} differ")
    if len(got["counts"]) != len(want["counts"]):
        bad.append(f"{name}: {len(got['counts'])} episode draws (recorded {len(want['counts'])})")
    for ep, (gm, wm) in enumerate(zip(got["metrics"], want["metrics"])):
        for k in sorted(set(gm) | set(wm)):
            if gm.get(k) != wm.get(k):
                bad.append(f"{name} episode {ep}: metric {k} = {gm.get(k)} (recorded {wm.get(k)})")
    if len(got["metrics"]) != len(want["metrics"]):
        bad.append(f"{name}: {len(got['metrics'])} episodes (recorded {len(want['metrics'])})")
    if got["steps"] != want["steps"]:
        bad.append(f"{name}: observations / masks / rewards / dones differ")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="record every case into this JSON file")
    p.add_argument("--check", help="compare every case with this JSON file; exit 1 on a difference")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    a = p.parse_args(argv)
    got = {name: play(name) for name in a.cases}
    if a.out:
        Path(a.out).write_text(json.dumps({"commit": RECORDED_ON, "cases": got},
                                          indent=1) + "\n")
    if a.check:
        want = json.loads(Path(a.check).read_text())["cases"]
        bad = [b for name in a.cases for b in compare(name, got[name], want[name])]
        print("\n".join(bad) if bad else f"all {len(a.cases)} cases bit-identical")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
