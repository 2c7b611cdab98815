"""Digests of everything PrefixEviction-v0 and ExpertPlacement-v0 emit for fixed seeds (issue 16).

    PYTHONPATH=$PWD python tests/golden/record_i16b.py [--check FILE] [--out FILE]

Each case steps a seeded batch with seeded random legal actions and hashes (SHA-256) the
observations, masks, rewards, dones and every info (metrics included, floats by their exact
bytes); kernel cases hash the state arrays after a whole replay; generator cases hash the counts.
The digests recorded on main before the kernel work (``i16b_main.json``) are the contract the
faster paths keep: ``--check i16b_main.json`` prints every case that differs and exits 1. Digests
are of one machine's floating point (libm's log1p may differ elsewhere), so this is a tool to run
beside a change, not a CI test; the tests keep reference paths instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import numpy as np


class Digest:
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def arr(self, a) -> None:
        a = np.ascontiguousarray(a)
        self.h.update(str((a.dtype.str, a.shape)).encode())
        self.h.update(a.tobytes())

    def obj(self, o) -> None:
        if isinstance(o, dict):
            for k in sorted(o, key=str):
                self.h.update(repr(k).encode())
                self.obj(o[k])
        elif isinstance(o, (list, tuple)):
            for x in o:
                self.obj(x)
        elif isinstance(o, np.ndarray):
            self.arr(o)
        elif isinstance(o, (float, np.floating)):
            self.h.update(np.float64(o).tobytes())
        else:
            self.h.update(repr(o).encode())

    def hex(self) -> str:
        return self.h.hexdigest()


def play(vec, steps: int, seed: int) -> str:
    d = Digest()
    rng = np.random.default_rng(seed)
    obs = vec.reset()
    d.arr(obs)
    for _ in range(steps):
        m = vec.action_masks()
        d.arr(m)
        a = np.array([rng.choice(np.flatnonzero(row)) for row in m], np.int64)
        obs, r, done, infos = vec.step(a)
        d.arr(obs), d.arr(r), d.arr(done)
        for i in infos:
            d.obj(i)
    return d.hex()


def pe_cases() -> dict[str, str]:
    from envs.prefix_eviction import env as pe
    from envs.prefix_eviction import kernels as K

    out = {}
    small = {"window_requests": 40, "warmup_requests": 40}
    for name, kw, ranking, native, steps in [
        ("default", {}, None, False, 150),
        ("default_small", small, None, False, 400),
        ("lru_set", {"candidate_set": "lru", **small}, None, False, 400),
        ("flat", {"chain": False, **small}, None, False, 400),
        ("flat_sampled_lru_set", {"chain": False, "candidate_set": "lru", **small}, None, False, 300),
        ("seq", {"window_order": "sequential", "split": "test", **small}, None, False, 300),
    ] + [(f"rank_{r}", small, r, False, 200) for r in pe.RANKINGS] + [
        (f"native_{r}", small, r, True, 12) for r in pe.RANKINGS] + [
        (f"native_flat_{r}", {"chain": False, **small}, r, True, 12) for r in pe.RANKINGS]:
        vec = pe.PrefixEvictionVecEnv(4, seed=3, **kw)
        if ranking:
            vec.set_ranking(ranking, native=native)
        out[f"pe/{name}"] = play(vec, steps, 7)
    # whole replays of the training part by the kernel alone, every ranking, chain and flat
    for chain in (True, False):
        vec0 = pe.PrefixEvictionVecEnv(1, seed=0, capacity_frac=0.05, chain=chain)
        N = len(vec0.built.sc.req_prompt)
        vec = pe.PrefixEvictionVecEnv(1, seed=0, capacity_frac=0.05, chain=chain, window_requests=N,
                                      warmup_requests=0)
        bt = vec.built
        for r, rk in pe.RANKINGS.items():
            vec.set_ranking(r, native=True)
            vec.state.iv[0, K.I_RNG] = 12345
            vec.state.iv[0, K.I_SAMPLED] = 1
            K.reset_env(vec.state, bt.sc, rk, 0, vec.caps[0], 0, 0, N, vec.K, False, vec._obs, vec._mask,
                        vec._cands[0], vec._scratch, bt.block_size, bt.n_tenants)
            d = Digest()
            d.arr(vec.state.iv), d.arr(vec.state.fv), d.arr(vec.state.hit_tok)
            out[f"pe/kernel_{'chain' if chain else 'flat'}_{r}"] = d.hex()
    return out


def ep_cases() -> dict[str, str]:
    from envs.expert_placement.env import ExpertPlacementVecEnv
    import traces

    out = {}
    for name, kw, steps in [
        ("default", {}, 140),
        ("substeps", {"replica_substeps": True, "intervals": 4}, 300),
        ("test_even_shift", {"split": "test", "dispatch": "even", "phase_shift_every": 40, "intervals": 4}, 100),
        ("seq_nodes", {"window_order": "sequential", "gpus": 16, "intervals": 3, "zipf_s": 1.2}, 80),
    ]:
        vec = ExpertPlacementVecEnv(3, seed=5, **kw)
        out[f"ep/{name}"] = play(vec, steps, 11)
    for i, kw in enumerate([
        dict(zipf_s=1.0, drift=0.01, layer_corr=0.5),
        dict(zipf_s=0.0, drift=0.0, layer_corr=0.0),
        dict(zipf_s=0.6, drift=1.0, layer_corr=1.0, phase_shift_every=7),
        dict(zipf_s=2.5, drift=0.05, layer_corr=0.3, phase_shift_every=1),
        dict(zipf_s=1.5, drift=0.2, layer_corr=0.9),
    ]):
        for shape in ((4, 256, 8, 2048), (3, 16, 4, 64), (1, 8, 8, 5)):
            g = traces.ExpertLoadGenerator(*shape, seed=i + 1, **kw)
            d = Digest()
            for n in (0, 1, 37, 120):
                d.arr(g.generate(n))
            out[f"gen/{i}/{shape}"] = d.hex()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--check")
    p.add_argument("--only", choices=("pe", "ep", "gen"))
    a = p.parse_args(argv)
    got = {}
    if a.only in (None, "pe"):
        got.update(pe_cases())
    if a.only in (None, "ep", "gen"):
        got.update({k: v for k, v in ep_cases().items() if a.only is None or k.startswith(a.only)})
    return write_and_check(got, a.out, a.check)


def state_digest(played: str, state, extra=()) -> str:
    """SHA-256 over a run's ``play`` digest, every field of the env's state namedtuple (by name) and the
    ``extra`` arrays (an env's working memory outside its state). Fields named in
    ``envs.core.state.SCRATCH_FIELDS`` are left out: they hold no state (kernels overwrite them before
    reading), so digests recorded before a scratch field was added still compare. The episode gap heap
    (``gap_heap``) is hashed as what it keeps (``kept_gap_rows``), not its array: its layout is free."""
    from envs.core.state import SCRATCH_FIELDS

    d = Digest()
    d.h.update(played.encode())
    for k, v in state._asdict().items():
        if k in SCRATCH_FIELDS:
            continue
        d.h.update(k.encode())
        if k == "gap_heap":
            for kept in kept_gap_rows(state):
                d.arr(kept)
        else:
            d.arr(v)
    for a in extra:
        d.arr(a)
    return d.hex()


def kept_gap_rows(state) -> list[np.ndarray]:
    """Each env's kept episode gaps, ascending (float64): the multiset the gap heap holds, the same for every
    layout that keeps the same gaps. ``envs.core.state.kept_gaps`` reads the (gap, count) heap; a tree from
    before it (main up to 519a9c1) kept a plain min-heap of G gaps, float64 [E, G], its first min(C_GAPS, G)
    entries in use: read here so that digests of the two layouts compare (issue 16's eleventh pass)."""
    from envs.core import state as S

    n = state.counters[:, S.C_GAPS]
    if hasattr(S, "kept_gaps"):
        return [S.kept_gaps(state.gap_heap[e], int(n[e])) for e in range(len(n))]
    G = state.gap_heap.shape[1]
    return [np.sort(state.gap_heap[e, : min(int(n[e]), G)]) for e in range(len(n))]


def cli(cases, argv=None) -> int:
    """``--out FILE`` / ``--check FILE`` over the digests ``cases()`` returns (``write_and_check``)."""
    p = argparse.ArgumentParser()
    p.add_argument("--out")
    p.add_argument("--check")
    a = p.parse_args(argv)
    return write_and_check(cases(), a.out, a.check)


def write_and_check(got: dict[str, str], out: str | None, check: str | None) -> int:
    """Write the digests to ``out``; compare them with the file ``check`` (each differing case
    printed): exit code 1 if any differs, else 0."""
    if out:
        with open(out, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
    if check:
        want = json.load(open(check))
        bad = [k for k in got if want.get(k) != got[k]]
        for k in bad:
            print("DIFFERS:", k)
        print(f"{len(got) - len(bad)}/{len(got)} cases identical")
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
