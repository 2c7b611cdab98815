"""ExpertPlacement's placement algorithms (EPLB, LPT repacking, sticky packing, replication, GPU
loads, the environment's greedy fill) equal, bit for bit, the versions they replaced (issue 16),
kept in tests/reference_expert_placement_algos.py, on random loads with ties and zeros."""

from __future__ import annotations

import numpy as np
import pytest

import reference_expert_placement_algos as R
from envs.expert_placement import algos as A
from envs.expert_placement import kernels as K

SHAPES = [  # experts, slots, groups, nodes, gpus
    (256, 288, 8, 4, 32), (256, 320, 8, 2, 16), (128, 136, 1, 1, 8), (8, 12, 1, 1, 4), (16, 16, 4, 2, 4),
    (64, 96, 8, 3, 8),  # groups not a multiple of nodes: the global policy
]


def _weights(rng, E: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 0:
        return rng.random(E) ** 3
    if kind == 1:
        return rng.integers(0, 5, E).astype(np.float64)  # many ties
    if kind == 2:
        w = rng.gamma(0.3, size=E)
        w[rng.random(E) < 0.3] = 0.0
        return w
    return np.full(E, 2.5)


def _placement(rng, E: int, P: int) -> np.ndarray:
    extra = rng.integers(0, max(1, E // 4), P - E) if rng.random() < 0.5 else rng.integers(0, E, P - E)
    return rng.permutation(np.concatenate([np.arange(E), extra])).astype(np.int64)


@pytest.mark.parametrize("E,P,groups,nodes,G", SHAPES)
def test_algorithms_equal_the_replaced_versions(E, P, groups, nodes, G):
    rng = np.random.default_rng(E * P + G)
    for _ in range(40):
        w = _weights(rng, E)
        cur = _placement(rng, E, P)
        got, want = np.empty(P, np.int64), np.empty(P, np.int64)
        A.eplb(w, P, groups, nodes, G, got)
        R.eplb(w, P, groups, nodes, G, want)
        assert np.array_equal(got, want)
        cg, cw = np.empty(E, np.int64), np.empty(E, np.int64)
        A.replicate(w, P, got, cg)
        R.replicate(w, P, want, cw)
        assert np.array_equal(got, want) and np.array_equal(cg, cw)
        A.lpt_repack(w, cur, G, got)
        R.lpt_repack(w, cur, G, want)
        assert np.array_equal(got, want)
        A.sticky_pack(w, cg, cur, G, got)
        R.sticky_pack(w, cw, cur, G, want)
        assert np.array_equal(got, want)
        lg, lw = np.empty(G), np.empty(G)
        A.gpu_loads(w, cur, G, lg)
        R.gpu_loads(w, cur, G, lw)
        assert np.array_equal(lg, lw)
        fg = rng.integers(1, 4, E)
        fw = fg.copy()
        n = int(rng.integers(0, P - E + 1))
        K._fill(w, fg, n)
        R._fill(w, fw, n)
        assert np.array_equal(fg, fw)
