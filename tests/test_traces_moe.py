"""MoE expert-load generator and measured-count loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces import ExpertLoadGenerator, TraceError, load_expert_counts
from traces.moe import inclusion_probs


def test_shape_sums_and_capacity() -> None:
    g = ExpertLoadGenerator(4, 16, 2, 512, zipf_s=1.2, seed=0)
    c = g.generate(50)
    assert c.shape == (50, 4, 16) and c.dtype == np.int64
    assert (c.sum(axis=2) == 512 * 2).all() and (c >= 0).all() and (c <= 512).all()
    assert g.generate(0).shape == (0, 4, 16)


def test_deterministic_and_seeded() -> None:
    a = ExpertLoadGenerator(3, 8, 2, 100, seed=5).generate(20)
    b = ExpertLoadGenerator(3, 8, 2, 100, seed=5).generate(20)
    c = ExpertLoadGenerator(3, 8, 2, 100, seed=6).generate(20)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_zipf_skew_matches_inclusion_probabilities() -> None:
    g = ExpertLoadGenerator(1, 32, 4, 4096, zipf_s=1.0, drift=0.0, layer_corr=0.0, seed=1)
    c = g.generate(200)[:, 0, :]
    pi = g.popularity()[0]
    np.testing.assert_allclose(c.mean(axis=0), 4096 * pi, rtol=0.05, atol=3)
    order = np.sort(c.mean(axis=0))[::-1]
    assert order[0] / order[-1] > 10  # skewed
    flat = ExpertLoadGenerator(1, 32, 4, 4096, zipf_s=0.0, seed=1).generate(100)[:, 0, :]
    assert flat.mean(axis=0).max() / flat.mean(axis=0).min() < 1.1


def test_inclusion_probs_capped_by_water_filling() -> None:
    pi = inclusion_probs(16, 8, 2.0)
    assert pi.sum() == pytest.approx(8) and pi.max() == 1.0 and (np.diff(pi) <= 1e-12).all()
    g = ExpertLoadGenerator(2, 16, 8, 300, zipf_s=2.0, seed=3)
    c = g.generate(30)
    full = g.popularity() >= 1.0
    assert full.any()
    assert (c.sum(axis=2) == 2400).all() and (c <= 300).all()


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_drift_and_phase_shifts() -> None:
    frozen = ExpertLoadGenerator(2, 64, 2, 100, drift=0.0, seed=0)
    p0 = frozen.popularity()
    frozen.generate(300)
    assert np.array_equal(frozen.popularity(), p0)
    drifting = ExpertLoadGenerator(2, 64, 2, 100, drift=0.1, seed=0)
    q0 = drifting.popularity()[0]
    drifting.generate(20)
    near = _rank_corr(q0, drifting.popularity()[0])
    drifting.generate(600)
    far = _rank_corr(q0, drifting.popularity()[0])
    assert near > 0.8 and far < 0.5
    shifting = ExpertLoadGenerator(2, 64, 2, 100, drift=0.0, phase_shift_every=10, seed=0)
    s0 = shifting.popularity()
    shifting.generate(9)
    assert np.array_equal(shifting.popularity(), s0)
    shifting.generate(1)
    s10 = shifting.popularity()
    assert not np.array_equal(s10, s0) and np.array_equal(np.sort(s10, axis=1), np.sort(s0, axis=1))


def test_layer_correlation() -> None:
    def mean_adjacent(rho: float) -> float:
        vals = []
        for seed in range(10):
            pop = ExpertLoadGenerator(8, 64, 2, 100, layer_corr=rho, seed=seed).popularity()
            vals += [_rank_corr(pop[i], pop[i + 1]) for i in range(7)]
        return float(np.mean(vals))

    assert mean_adjacent(0.9) > 0.75 and abs(mean_adjacent(0.0)) < 0.1


@pytest.mark.parametrize("kwargs, match", [
    (dict(top_k=20), "top_k=20 exceeds"),
    (dict(drift=1.5), "drift"),
    (dict(layer_corr=-0.1), "layer_corr"),
    (dict(phase_shift_every=0), "phase_shift_every"),
    (dict(tokens_per_step=0), "tokens_per_step"),
])
def test_bad_parameters(kwargs: dict, match: str) -> None:
    base = dict(n_layers=2, n_experts=8, top_k=2, tokens_per_step=10)
    with pytest.raises(TraceError, match=match):
        ExpertLoadGenerator(**{**base, **kwargs})


def test_load_expert_counts_round_trip(tmp_path: Path) -> None:
    c = ExpertLoadGenerator(2, 8, 2, 64, seed=0).generate(5)
    p = tmp_path / "counts.npz"
    np.savez(p, counts=c.astype(np.int32))
    out = load_expert_counts(p)
    assert out.dtype == np.int64 and np.array_equal(out, c)
    np.savez(p, counts=c.astype(np.float64))
    assert np.array_equal(load_expert_counts(p), c)


@pytest.mark.parametrize("arrays, match", [
    (dict(other=np.zeros((1, 1, 1))), "no key 'counts'"),
    (dict(counts=np.zeros((3, 4))), "must be 3-D"),
    (dict(counts=np.array([[[1, -2]]])), r"'counts'\[0, 0, 1\] = -2 is negative"),
    (dict(counts=np.array([[[1.0, 2.5]]])), r"'counts'\[0, 0, 1\] = 2.5 is not a whole number"),
    (dict(counts=np.array([[["a"]]])), "must hold integers"),
    (dict(counts=np.array([[[True]]])), "must hold integers"),
])
def test_load_expert_counts_errors(tmp_path: Path, arrays: dict, match: str) -> None:
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(TraceError, match=match) as e:
        load_expert_counts(p)
    assert str(p) in str(e.value)


def test_load_expert_counts_not_npz(tmp_path: Path) -> None:
    p = tmp_path / "x.npz"
    p.write_bytes(b"garbage")
    with pytest.raises(TraceError, match="not a readable .npz"):
        load_expert_counts(p)
    q = tmp_path / "y.npy"
    np.save(q, np.zeros((1, 1, 1), dtype=np.int64))
    with pytest.raises(TraceError, match="bare .npy"):
        load_expert_counts(q)
    with pytest.raises(TraceError, match="no such file"):
        load_expert_counts(tmp_path / "missing.npz")
