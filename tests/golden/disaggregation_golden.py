"""Golden episodes of Disaggregation-v0 (issue 17): what the kernels emitted before the speed work.

    PYTHONPATH=$PWD python tests/golden/disaggregation_golden.py --out tests/golden/disaggregation.json
    PYTHONPATH=$PWD python tests/golden/disaggregation_golden.py --check tests/golden/disaggregation.json

Each case plays whole episodes of a seeded batch, under fixed roles or seeded random legal
actions (role changes: drains and warm-ups; both dispatch rules), and records

* ``inputs``: SHA-256 of what the kernels read (workload arrays, engine coefficients and scalars,
  Params): when it differs, the scenario changed (trace generation, hwmodels, config defaults),
  not the kernel, and the case says so instead of comparing;
* ``steps``: SHA-256 of every observation, action mask, reward and done flag, floats by their bytes;
* ``metrics``: every episode metric of every env, floats as ``float.hex`` (exact);
* ``requests``: SHA-256 of each episode's per-request records (TTFT, E2E, TPOT, fate, SLO met).

``tests/test_disaggregation_golden.py`` compares the current kernels with ``disaggregation.json``,
recorded at commit 0151d4d (before issue 17's kernel work), bit for bit; re-recorded at 84fa820 when
the observation gained the SLO headroom features, after checking that every case's metrics and
per-request records equal the 0151d4d record (only the observations and inputs differ).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

# name -> (config overrides, envs, episodes per env, action plan, seed)
# plan: "5p3d" / "colocated" / "random" (seeded random legal actions, one draw per step)
CASES: dict[str, tuple[dict, int, int, str, int]] = {
    "small_random_decode_first": (
        dict(instances=4, phases=2, phase_s=30.0, interval_s=5.0, load=(0.5, 0.9), episodes_per_load=2,
             drain_s=30.0, switch_s=3.0), 2, 2, "random", 1),
    "small_random_prefill_first_no_layerwise_cross_node": (
        dict(instances=4, phases=2, phase_s=30.0, interval_s=5.0, load=0.8, episodes_per_load=2, drain_s=30.0,
             switch_s=2.0, first_token="prefill", layerwise_transfer=False, gpus_per_node=2, capacity_blocks=1500,
             queue_slots=64), 2, 2, "random", 2),
    "small_5p3d_tight_kv": (
        dict(instances=8, phases=2, phase_s=30.0, interval_s=10.0, load=0.9, episodes_per_load=1, drain_s=20.0,
             capacity_blocks=1200, queue_slots=64), 1, 2, "5p3d", 3),
    "default_5p3d": ({}, 1, 2, "5p3d", 0),
    "default_colocated": ({}, 1, 1, "colocated", 0),
    "default_random": ({}, 2, 1, "random", 4),
}
FAST = ("small_random_decode_first", "small_random_prefill_first_no_layerwise_cross_node", "small_5p3d_tight_kv")


def _hash_arrays(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def inputs_digest(vec) -> str:
    sc = vec.scenario
    arrays = [np.asarray(x) for x in sc.workload] + [np.asarray(x) for x in sc.engine] + \
             [np.asarray(x) for x in vec.params]
    return _hash_arrays(arrays)


def _exact(v):
    if isinstance(v, (float, np.floating)):
        return float(v).hex()
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return repr(v)


def play(name: str) -> dict:
    from envs.disaggregation import DisaggregationVecEnv
    from envs.disaggregation import kernels as K

    kw, E, episodes, plan, seed = CASES[name]
    vec = DisaggregationVecEnv(E, seed=seed, **kw)
    R = vec.R
    fixed = {"5p3d": [K.ROLE_PREFILL] * (5 * R // 8) + [K.ROLE_DECODE] * (R - 5 * R // 8),
             "colocated": [K.ROLE_COLOCATED] * R}
    rng = np.random.default_rng(seed)
    steps = hashlib.sha256()
    obs = vec.reset()
    steps.update(obs.tobytes())
    metrics: list[dict] = []
    requests: list[str] = []
    done_eps = np.zeros(E, int)
    while done_eps.min() < episodes:
        m = vec.action_masks()
        steps.update(m.tobytes())
        if plan == "random":
            a = np.empty((E, R + 1), np.int64)
            for e in range(E):
                a[e, :R] = [rng.choice(np.flatnonzero(m[e, 3 * r: 3 * r + 3])) for r in range(R)]
                a[e, R] = rng.integers(0, 2)
        else:
            a = np.tile(np.array(fixed[plan] + [seed % 2], np.int64), (E, 1))
        obs, rew, done, infos = vec.step(a)
        steps.update(obs.tobytes()), steps.update(rew.tobytes()), steps.update(done.tobytes())
        for e in np.flatnonzero(done):
            if done_eps[e] < episodes:
                info = infos[e]
                metrics.append({k: _exact(v) for k, v in sorted(info["metrics"].items())})
                rq = info["requests"]
                requests.append(_hash_arrays([rq[k] for k in sorted(rq)]))
            done_eps[e] += 1
    return {"inputs": inputs_digest(vec), "steps": steps.hexdigest(), "metrics": metrics, "requests": requests}


def compare(name: str, got: dict, want: dict) -> list[str]:
    """Differences between a replay and the record; empty when bit-identical."""
    if got["inputs"] != want["inputs"]:
        return [f"{name}: inputs differ (scenario changed), kernel not compared"]
    bad = []
    for ep, (gm, wm) in enumerate(zip(got["metrics"], want["metrics"])):
        for k in sorted(set(gm) | set(wm)):
            if gm.get(k) != wm.get(k):
                bad.append(f"{name} episode {ep}: metric {k} = {gm.get(k)} (recorded {wm.get(k)})")
    if len(got["metrics"]) != len(want["metrics"]):
        bad.append(f"{name}: {len(got['metrics'])} episodes (recorded {len(want['metrics'])})")
    for ep, (g, w) in enumerate(zip(got["requests"], want["requests"])):
        if g != w:
            bad.append(f"{name} episode {ep}: per-request records differ")
    if got["steps"] != want["steps"]:
        bad.append(f"{name}: observations / masks / rewards / dones differ")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", help="record every case into this JSON file")
    p.add_argument("--check", help="compare every case with this JSON file; exit 1 on a difference")
    p.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    p.add_argument("--note", default="", help="why the record was (re-)recorded, kept in the file")
    a = p.parse_args(argv)
    got = {name: play(name) for name in a.cases}
    if a.out:
        import subprocess

        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        Path(a.out).write_text(json.dumps({"commit": head, "note": a.note, "cases": got}, indent=1) + "\n")
    if a.check:
        want = json.loads(Path(a.check).read_text())["cases"]
        bad = [b for name in a.cases for b in compare(name, got[name], want[name])]
        print("\n".join(bad) if bad else f"all {len(a.cases)} cases bit-identical")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
