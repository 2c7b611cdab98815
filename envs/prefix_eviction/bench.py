"""PrefixEviction-v0 throughput: cache references simulated per second.

    python -m envs.bench --env servegym/PrefixEviction-v0 [--sizes 1 16 256] [--repeats 3] [--json F]

Rows (one core, medians over ``--repeats``, every ratio from figures of this one run):
- ``native_steps_per_s`` / ``dummy_steps_per_s``: decisions per second of the native VecEnv and
  of SB3's DummyVecEnv over Gymnasium copies, both evicting LRU's victim (candidate 0);
- ``refs_per_s_lru``: block references per second through the VecEnv under LRU (decisions
  round-trip through Python); ``python -m agents.bench_learned`` adds ``refs_per_s_learned``
  under the zoo agent through SB3/torch and ``refs_per_s_learned_onnx`` under the same agent
  exported to ONNX (forward passes included), through ``bench_rows``'s ``policies``;
- ``refs_per_s_kernel``: references per second of the kernel alone replaying the trace with
  LRU victims and no decision stops (the ceiling the Python round trip is compared with);
- ``kernel_vs_libcachesim``: per ranking (LRU, FIFO, LFU, S3-FIFO) the kernel's references/s over
  the whole training part, in chain mode and in flat mode (every reference an independent object),
  and libCacheSim's ``process_trace`` (the libcachesim package, if installed) over the same flat
  stream at the same capacity, with both hit counts (equal).
Scenario: the default (mooncake_conv, training part), capacity_frac 0.05, chain semantics.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from envs.bench import bench_parser, machine, now, row_steps, start, steady_state, steps_timed, write_json
from envs.prefix_eviction import env as pe
from envs.prefix_eviction import kernels as K
from envs.options import Parser

KW = {"capacity_frac": 0.05}




def _run(vec, act, steps: int, repeats: int) -> tuple[float, float]:
    """Median decisions/s and references/s of ``steps`` calls."""
    obs = vec.reset()
    vec.step(act(obs, vec.action_masks()))
    d_rates, r_rates = [], []
    for _ in range(repeats):
        refs0 = _ref_count(vec)
        t = now()
        for _ in range(steps):
            obs, _, _, _ = vec.step(act(obs, vec.action_masks()))
        dt = now() - t
        d_rates.append(steps * vec.num_envs / dt)
        r_rates.append((_ref_count(vec) - refs0) / dt)
    return float(np.median(d_rates)), float(np.median(r_rates))


def _ref_count(vec) -> int:
    """References replayed so far by every env of ``vec`` (monotone within an episode)."""
    sc, iv = vec.built.sc, vec.state.iv
    return int(vec._ref_total + sum(sc.req_off[iv[e, K.I_REQ]] + max(iv[e, K.I_J], 0)
                                    - sc.req_off[vec._win[e, 0]] for e in range(vec.num_envs)))


class _Counting(pe.PrefixEvictionVecEnv):
    """Counts the references of episodes that ended, so rates span resets."""

    _ref_total = 0

    def _reset_env(self, e: int) -> None:
        if self._episodes_started[e] > 0:
            self._ref_total += int(self.state.iv[e, K.I_REF_BLOCKS])
        super()._reset_env(e)


def _lru(obs, mask):
    return mask.argmax(1)


def bench_kernel(repeats: int) -> float:
    """References/s of the kernel alone: the whole training part as warm-up (no stops)."""
    vec = pe.PrefixEvictionVecEnv(1, seed=0, **KW)
    bt = vec.built
    N = len(bt.sc.req_prompt)
    rates = []
    for _ in range(repeats + 1):
        t = now()
        K.reset_env(vec.state, bt.sc, K.R_LRU, 0, vec.caps[0], 0, N, N, vec.K, False, vec._obs,
                    vec._mask, vec._cands[0], vec._scratch, bt.block_size, bt.n_tenants)
        rates.append(len(bt.sc.ref_block) / (now() - t))
    return float(np.median(rates[1:]))


# Rankings compared with libCacheSim (its class of the same policy; hit-for-hit equal on a flat stream).
LIBCACHESIM = {"lru": "LRU", "fifo": "FIFO", "lfu": "LFU", "s3fifo": "S3FIFO"}


def _replay(vec: pe.PrefixEvictionVecEnv, ranking: str, repeats: int) -> tuple[float, int]:
    """Median references/s of the kernel replaying the whole part scored under ``ranking`` (its
    own victims, no decision stops) and the block hits of the replay."""
    bt = vec.built
    N = len(bt.sc.req_prompt)
    vec.set_ranking(ranking, native=True)
    rates = []
    for _ in range(repeats + 1):  # the first replay compiles
        t = now()
        K.reset_env(vec.state, bt.sc, pe.RANKINGS[ranking], 0, vec.caps[0], 0, 0, N, vec.K, False, vec._obs,
                    vec._mask, vec._cands[0], vec._scratch, bt.block_size, bt.n_tenants)
        rates.append(len(bt.sc.ref_block) / (now() - t))
    return float(np.median(rates[1:])), int(vec.state.iv[0, K.I_HIT_BLOCKS])


def _libcachesim_replay(lcs, ref_block: np.ndarray, capacity: int, ranking: str, repeats: int,
                        tmp: Path) -> tuple[float, int]:
    """Median references/s of libCacheSim's ``process_trace`` over the same reference string (one
    object per block id, size 1, read from an oracleGeneral binary file in the page cache) and its
    hits."""
    path = tmp / "refs.oracleGeneral.bin"
    if not path.exists():
        rec = np.zeros(len(ref_block), np.dtype([("t", "<u4"), ("id", "<u8"), ("size", "<u4"), ("next", "<i8")]))
        rec["t"] = np.arange(len(ref_block))
        rec["id"] = ref_block.astype(np.uint64) + 1  # 0 is libCacheSim's "no object"
        rec["size"] = 1
        rec["next"] = -1
        rec.tofile(path)
    reader = lcs.TraceReader(str(path), lcs.TraceType.ORACLE_GENERAL_TRACE)
    rates, miss = [], 1.0
    for _ in range(repeats + 1):
        cache = getattr(lcs, LIBCACHESIM[ranking])(cache_size=capacity)
        t = now()
        miss = cache.process_trace(reader)[0]
        rates.append(len(ref_block) / (now() - t))
    return float(np.median(rates[1:])), int(round(len(ref_block) * (1.0 - miss)))


def bench_against_libcachesim(repeats: int) -> dict:
    """Per ranking of ``LIBCACHESIM``: references/s of the kernel over the default scenario's
    training part in chain mode (the environment's semantics) and in flat mode (each reference an
    independent object: the textbook stream), and of libCacheSim's ``process_trace`` over that
    same flat stream at the same capacity, with both hit counts (equal: the tests check it too).
    libCacheSim's rows are absent (``None``) where the package is not installed."""
    try:
        import libcachesim as lcs
    except ImportError:
        lcs = None
    vec = {chain: pe.PrefixEvictionVecEnv(1, seed=0, **KW, chain=chain, warmup_requests=0,
                                          window_requests=len(pe.PrefixEvictionVecEnv(1, **KW).built.sc.req_prompt))
           for chain in (True, False)}
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LIBCACHESIM:
            row = {}
            row["chain_refs_per_s"], row["chain_hits"] = _replay(vec[True], name, repeats)
            row["flat_refs_per_s"], row["flat_hits"] = _replay(vec[False], name, repeats)
            row["libcachesim_refs_per_s"] = row["libcachesim_hits"] = None
            if lcs is not None:
                row["libcachesim_refs_per_s"], row["libcachesim_hits"] = _libcachesim_replay(
                    lcs, vec[False].built.sc.ref_block, vec[False].caps[0], name, repeats, Path(tmp))
                row["flat_over_libcachesim"] = row["flat_refs_per_s"] / row["libcachesim_refs_per_s"]
            out[name] = row
            lc = (f"libCacheSim {row['libcachesim_refs_per_s']:12,.0f} refs/s ({row['libcachesim_hits']} hits), "
                  f"kernel/libCacheSim {row['flat_over_libcachesim']:5.1f}x" if lcs is not None
                  else "libCacheSim not installed")
            print(f"{name:7s} kernel chain {row['chain_refs_per_s']:12,.0f} refs/s  flat {row['flat_refs_per_s']:12,.0f} "
                  f"refs/s ({row['flat_hits']} hits)  {lc}", flush=True)
    return {"capacity_blocks": vec[False].caps[0], "references": int(len(vec[False].built.sc.ref_block)),
            "rankings": out}


# A policy under test: called with the VecEnv it will act in, returns act(obs, mask) -> actions.
PolicyFactory = Callable[[pe.PrefixEvictionVecEnv], Callable[[np.ndarray, np.ndarray], np.ndarray]]


def bench_rows(sizes: list[int], steps_budget: int, repeats: int,
               policies: dict[str, PolicyFactory] | None = None) -> list[dict]:
    """One row per batch size E in ``sizes``: native and DummyVecEnv decisions/s, references/s
    under LRU and, for each ``policies`` entry NAME, ``refs_per_s_NAME`` (a tenth of the steps)."""
    rows = []
    for E in sizes:
        steps, dummy_steps = row_steps(E, steps_budget, 10)
        native, refs_lru = _run(_Counting(E, seed=0, **KW), _lru, steps, repeats)
        dummy_vec = DummyVecEnv([lambda: pe.PrefixEvictionEnv(**KW) for _ in range(E)])
        dummy_vec.action_masks = lambda v=dummy_vec: np.stack([en.action_masks() for en in v.envs])
        dummy, _ = _run_dummy(dummy_vec, dummy_steps, repeats)
        row = {"n_envs": E, "native_steps_per_s": native, "dummy_steps_per_s": dummy,
               "ratio": native / dummy, "refs_per_s_lru": refs_lru}
        for name, factory in (policies or {}).items():
            vec = _Counting(E, seed=0, **KW)
            _, row[f"refs_per_s_{name}"] = _run(vec, factory(vec), max(10, steps // 10), repeats)
        rows.append(row)
        extra = "".join(f"  {k[11:]} {v:10,.0f}" for k, v in row.items() if k.startswith("refs_per_s_")
                        and k != "refs_per_s_lru")
        print(f"E={E:4d}  native {native:10,.0f} decisions/s  dummy {dummy:8,.0f}  ratio {native / dummy:6.1f}x  "
              f"refs/s LRU {refs_lru:11,.0f}{extra}", flush=True)
    return rows


def build_parser(prog: str = "python -m envs.bench --env " + pe.ENV_ID) -> Parser:
    return bench_parser(prog, __doc__, [1, 16, 256], 3, 40_000, "native decisions per timed run")


def main(argv: list[str] | None = None, policies: dict[str, PolicyFactory] | None = None,
         prog: str = "python -m envs.bench --env " + pe.ENV_ID) -> int:
    a = build_parser(prog).parse_args(argv)
    start(a)
    rows = bench_rows(a.sizes, a.steps, a.repeats, policies)
    kernel = bench_kernel(a.repeats)
    print(f"kernel alone (LRU, no decision stops): {kernel:,.0f} references/s", flush=True)
    vs_lcs = bench_against_libcachesim(a.repeats)
    report = {"env": pe.ENV_ID, "rows": rows, "refs_per_s_kernel": kernel, "kernel_vs_libcachesim": vs_lcs,
              "scenario": KW,
              "steady_state": steady_state(
                  "timed decisions after one warm step: a decision (an eviction) only arises once the cache "
                  "is full, so every timed step is in steady state; refs_per_s_lru says what the decisions "
                  "simulate; the kernel row replays the whole training part", 1,
                  steps_timed(a.sizes, a.steps, 10),
                  a.repeats, steps_timed_is="per row: [native, dummy] steps of each env per timed run",
                  action="LRU's victim (candidate 0)"),
              "repeats": a.repeats, "clock": a.clock,
              "machine": machine()}
    write_json(a.json, report)
    return 0


def _run_dummy(vec, steps: int, repeats: int) -> tuple[float, float]:
    vec.reset()
    rates = []
    for _ in range(repeats):
        t = now()
        for _ in range(steps):
            vec.step(vec.action_masks().argmax(1))
        rates.append(steps * vec.num_envs / (now() - t))
    return float(np.median(rates)), 0.0


if __name__ == "__main__":
    sys.exit(main())
