"""MoE expert-load generator and measured-count loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces import ExpertLoadGenerator, TraceError, load_expert_counts
from traces import portable
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
    # a request trace: said so (numpy's guess was 'This file contains pickled (object) data')
    r = tmp_path / "requests.jsonl"
    r.write_text('{"timestamp": 0, "input_length": 600, "output_length": 20}\n')
    with pytest.raises(TraceError) as e:
        load_expert_counts(r)
    assert str(e.value).startswith(f"{r}: a request trace (mooncake format), not expert-load counts; expert-load "
                                   "counts are an .npz archive with key 'counts' [steps, layers, experts]")
    assert "pickled" not in str(e.value)


def _reference_advance(g: ExpertLoadGenerator) -> None:
    """One step of the latent scores, as ExpertLoadGenerator._advance was before issue 16."""
    d = g.drift
    if d > 0:
        g._z = np.sqrt(1 - d * d) * g._z + d * g._layer_noise()
    g._step += 1
    if g.phase_shift_every and g._step % g.phase_shift_every == 0:
        g._z = g._z[:, portable.permutation(g._rng, g.n_experts)]


def _multinomial(rng: np.random.Generator, n: int, q: np.ndarray) -> np.ndarray:
    """``rng.multinomial(n, q)``'s shape and row order over q [..., d], each row by portable's sampler."""
    out = np.zeros(q.shape, np.int64)
    for idx in np.ndindex(q.shape[:-1]):
        portable.multinomial_row(rng, n, q[idx], out[idx])
    return out


def _reference_generate(g: ExpertLoadGenerator, steps: int) -> np.ndarray:
    """generate() one step at a time, as it was before issue 16 (commit 711ea3f): each step's
    popularity() then the advance; the counts drawn afterwards, row after row (numpy's order for
    ``rng.multinomial(slots, q)``), with ``traces.portable``'s multinomial since expert_load-v2."""
    T, k = g.tokens_per_step, g.top_k
    full = g._pi_rank >= 1.0
    slots = T * (k - int(full.sum()))
    pis = np.empty((steps, g.n_layers, g.n_experts))
    for s in range(steps):
        pis[s] = g.popularity()
        _reference_advance(g)
    out = np.zeros((steps, g.n_layers, g.n_experts), dtype=np.int64)
    is_full = pis >= 1.0
    out[is_full] = T
    q = np.where(is_full, 0.0, pis)
    if slots > 0 and steps:
        q /= q.sum(axis=2, keepdims=True)
        out += _multinomial(g._rng, slots, q)
        for _ in range(1000):
            bad = (out > T).any(axis=2)
            if not bad.any():
                break
            out[bad] = np.where(is_full[bad], T, 0) + _multinomial(g._rng, slots, q[bad])
    return out


@pytest.mark.parametrize("kw", [
    dict(zipf_s=1.0, drift=0.01, layer_corr=0.5),
    dict(zipf_s=0.0, drift=0.0, layer_corr=0.0, phase_shift_every=3),
    dict(zipf_s=0.6, drift=1.0, layer_corr=1.0, phase_shift_every=7),
    dict(zipf_s=2.5, drift=0.05, layer_corr=0.3, phase_shift_every=1),  # capped experts, redraws
    dict(zipf_s=1.5, drift=0.2, layer_corr=0.9, phase_shift_every=40),
])
@pytest.mark.parametrize("shape", [(4, 64, 8, 2048), (1, 8, 8, 5), (3, 16, 2, 50)])
def test_batched_generate_equals_the_one_step_reference(kw, shape) -> None:
    """Counts, and the generator's state after them, equal stepping one step at a time, over a
    sequence of calls that start and end between phase shifts."""
    fast, ref = ExpertLoadGenerator(*shape, seed=3, **kw), ExpertLoadGenerator(*shape, seed=3, **kw)
    for n in (0, 1, 5, 37, 2, 60):
        assert np.array_equal(fast.generate(n), _reference_generate(ref, n)), n
        assert np.array_equal(fast._z, ref._z) and fast._step == ref._step
    assert np.array_equal(fast.popularity(), ref.popularity())


def test_redraw_limit_raises() -> None:
    """A row that stays over tokens_per_step after 1000 redraws is an error, as before."""
    g = ExpertLoadGenerator(1, 4, 3, 1, zipf_s=0.0, drift=0.0, seed=0)
    g._pi_rank = np.array([0.9, 1e-300, 1e-300, 1e-300])  # 3 slots, 1 token: all 3 go to one expert
    with pytest.raises(TraceError, match="within tokens_per_step"):
        g.generate(2)


def test_env_sized_generate_equals_the_one_step_reference() -> None:
    """ExpertPlacement's default episode (DeepSeek-V3: 256 experts, top-8, 32 x 256 tokens, 4 layers,
    544 steps): counts equal the one-step reference's over two episodes' worth of calls."""
    kw = dict(zipf_s=0.6, drift=0.02, layer_corr=0.5, seed=123456789)
    fast, ref = ExpertLoadGenerator(4, 256, 8, 8192, **kw), ExpertLoadGenerator(4, 256, 8, 8192, **kw)
    for n in (544, 544):
        assert np.array_equal(fast.generate(n), _reference_generate(ref, n))
    assert np.array_equal(fast._z, ref._z)


def test_moe_counts_refuses_an_out_it_would_not_write_in_one_line(tmp_path, capsys):
    # was: a FileNotFoundError traceback for a missing directory, and "wrote X" while numpy wrote X.npz
    from traces.moe_counts import main

    for out, says in ((tmp_path / "counts", "must end in .npz"), (tmp_path / "no" / "c.npz", "no such directory")):
        with pytest.raises(SystemExit) as exit_:
            main(["--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and f"--out {out}: {says}" in err[-1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    # review rv3: the slot count T * top_k wrapped around int64 (row sums 0 or negative), or overflowed in numba
    (dict(tokens_per_step=2**61, top_k=8), r"tokens_per_step \* top_k = 18446744073709551616 exceeds int64"),
    (dict(tokens_per_step=2**63, top_k=1), "exceeds int64"),
    (dict(tokens_per_step=np.int64(2**62), top_k=np.int64(2)), "exceeds int64"),
    # a TypeError from numpy / '<=' before
    (dict(zipf_s="1"), "zipf_s must be a real number, got '1'"),
    (dict(drift=None), "drift must be a real number, got None"),
    (dict(layer_corr="0.5"), "layer_corr must be a real number"),
])
def test_extreme_parameters_are_one_line_trace_errors(kwargs: dict, match: str) -> None:
    a = dict(n_layers=2, n_experts=8, top_k=2, tokens_per_step=16) | kwargs
    with pytest.raises(TraceError, match=match) as e:
        ExpertLoadGenerator(**a).generate(2)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("T", [1, 3, 10**9, 2**40])
@pytest.mark.parametrize("zipf_s", [0.0, 3.0, 1070.0])
@pytest.mark.parametrize("drift", [0.0, 1.0])
@pytest.mark.parametrize("E, k", [(1, 1), (8, 8), (8, 2)])
def test_extreme_shapes_keep_exact_row_sums(T: int, zipf_s: float, drift: float, E: int, k: int) -> None:
    g = ExpertLoadGenerator(2, E, k, T, zipf_s=zipf_s, drift=drift, phase_shift_every=2, seed=1)
    out = g.generate(4)
    assert (out.sum(-1) == T * k).all() and (out >= 0).all() and (out <= T).all()
    assert np.isfinite(g.popularity()).all()


def test_inclusion_probs_take_the_limit_where_the_zipf_weights_underflow() -> None:
    # review rv3: weights r^-s past the capped rank underflowed to 0 and 0 / 0 gave nan probabilities
    for s in (1100.0, 1e308):
        assert inclusion_probs(8, 2, s).tolist() == [1.0, 1.0] + [0.0] * 6
        assert inclusion_probs(8, 8, s).tolist() == [1.0] * 8
    assert inclusion_probs(8, 1, 1e308).tolist() == [1.0] + [0.0] * 7
