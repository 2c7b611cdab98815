"""Shared fixtures: the real traces beside the project, and small hand-made traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from traces.trace import Trace, TraceMeta

SHARED_TRACES = Path(__file__).resolve().parents[1].parent / "shared" / "traces"


@pytest.fixture
def shared_traces() -> Path:
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"real traces not found at {SHARED_TRACES} (they live in ../shared/traces)")
    return SHARED_TRACES


def make_trace(
    n: int,
    rate: float,
    prompt: int | np.ndarray,
    output: int | np.ndarray,
    seed: int = 0,
    poisson: bool = True,
    name: str = "test",
) -> Trace:
    """A trace with Poisson (or evenly spaced) arrivals and given lengths."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, n) if poisson else np.full(n, 1.0 / rate)
    t = np.cumsum(gaps) - gaps[0]
    p = np.broadcast_to(np.asarray(prompt, np.int64), (n,)).copy()
    o = np.broadcast_to(np.asarray(output, np.int64), (n,)).copy()
    return Trace(t.astype(np.float64), p, o, TraceMeta(name, "tests", "n/a"))


def pytest_collection_modifyitems(session, config, items):
    """Run the tests that wait for the background bounds-checked fuzz run last (their order among
    themselves and everyone else's kept), so that its compilation has the whole session to overlap."""
    waiting = [i for i in items if getattr(getattr(i, "function", None), "boundscheck_envs", None)]
    if waiting:
        items[:] = [i for i in items if i not in waiting] + waiting


def pytest_collection_finish(session):
    """Start the bounds-checked fuzz run of the selected ``test_fuzz.py`` tests that read it (their
    ``boundscheck_envs``) in a background subprocess now, so that its compilation overlaps the rest
    of the session (``boundscheck_runs``); nothing starts under ``--collect-only``."""
    if session.config.option.collectonly:
        return
    wanted: list[str] = []
    for item in session.items:
        for env_id in getattr(getattr(item, "function", None), "boundscheck_envs", ()):
            if env_id not in wanted:
                wanted.append(env_id)
    if wanted:
        import boundscheck_runs

        boundscheck_runs.start(wanted)


def pytest_sessionfinish(session, exitstatus):
    import boundscheck_runs

    boundscheck_runs.stop()
