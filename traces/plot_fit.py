"""Plots of real vs synthetic traces: is each built-in generator faithful to its source?

    python -m traces.plot_fit --out DIR [--traces ../shared/traces] [--seed 0]

Writes azure_conv_fit.png (CDFs of prompt, output, inter-arrival; index of dispersion vs
window), mooncake_conv_fit.png (CDFs; LRU prefix-cache hit ratio vs cache size) and
azure_code.png (synthetic CDFs with the published medians marked; the code file is not here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from traces.fit import AZURE_FILE, DEFAULT_TRACES, IDC_WINDOWS_S, MOONCAKE_FILE, idc  # noqa: E402
from traces.load import load_trace  # noqa: E402
from traces.params import load_params  # noqa: E402
from traces.stats import lru_block_hit_ratio, trace_stats  # noqa: E402
from traces.trace import Trace  # noqa: E402


def _cdf(ax: plt.Axes, x: np.ndarray, label: str, **kw: object) -> None:
    xs = np.sort(x)
    ax.plot(xs, np.arange(1, xs.size + 1) / xs.size, label=label, **kw)


def _cdfs(axes: list[plt.Axes], real: Trace | None, syn: Trace) -> None:
    pairs = (("prompt tokens", lambda t: t.prompt_tokens), ("output tokens", lambda t: t.output_tokens),
             ("inter-arrival (s)", lambda t: np.diff(t.arrival_s)))
    for ax, (name, get) in zip(axes, pairs):
        if real is not None:
            _cdf(ax, get(real), f"real ({real.meta.name})", color="k")
        _cdf(ax, get(syn), f"synthetic ({syn.meta.name})", color="C1", linestyle="--")
        if name.startswith("inter"):
            ax.set_xscale("symlog", linthresh=0.01)  # keeps zero gaps (tied timestamps) visible
        else:
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("CDF")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def plot_azure_conv(traces_dir: Path, seed: int, out: Path) -> Path:
    real = load_trace(traces_dir / AZURE_FILE)
    syn = load_trace("azure_conv", seed=seed)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    _cdfs(list(axes[:3]), real, syn)
    w = np.geomspace(0.1, 600, 25)
    long = load_trace("azure_conv", seed=seed, duration_s=6 * 3600)
    axes[3].loglog(w, [idc(real.arrival_s, x) for x in w], "k-", label="real")
    axes[3].loglog(w, [idc(long.arrival_s, x) for x in w], "C1--", label="synthetic (6 h)")
    axes[3].set_xlabel("window (s)")
    axes[3].set_ylabel("index of dispersion Var/Mean")
    axes[3].axvline(IDC_WINDOWS_S[0], color="0.8", lw=0.5)
    axes[3].legend(fontsize=7)
    axes[3].grid(alpha=0.3)
    fig.suptitle("azure_conv vs Azure LLM inference 2023 conversation trace")
    fig.tight_layout()
    path = out / "azure_conv_fit.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_mooncake(traces_dir: Path, seed: int, out: Path) -> Path:
    real = load_trace(traces_dir / MOONCAKE_FILE)
    syn = load_trace("mooncake_conv", seed=seed)
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    _cdfs(list(axes[:3]), real, syn)
    axes[2].set_title("real timestamps come in 3-s bins", fontsize=8)
    distinct = trace_stats(real)["distinct_blocks"]
    caps = np.unique(np.geomspace(100, distinct, 9).astype(int))
    for tr, style, label in ((real, "k-o", "real"), (syn, "C1--s", "synthetic")):
        inf = trace_stats(tr)["infinite_cache_block_hit_ratio"]
        axes[3].semilogx(caps, [lru_block_hit_ratio(tr, int(c)) for c in caps], style, ms=3, label=f"{label} (inf. {inf:.3f})")
    axes[3].set_xlabel("prefix cache capacity (512-token blocks, LRU)")
    axes[3].set_ylabel("block hit ratio")
    axes[3].legend(fontsize=7)
    axes[3].grid(alpha=0.3)
    fig.suptitle("mooncake_conv vs Mooncake FAST'25 conversation trace")
    fig.tight_layout()
    path = out / "mooncake_conv_fit.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_azure_code(seed: int, out: Path) -> Path:
    syn = load_trace("azure_code", seed=seed)
    p = load_params("azure_code")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    _cdfs(list(axes), None, syn)
    for ax, med in ((axes[0], p["prompt_median"]), (axes[1], p["output_median"])):
        ax.axvline(med, color="k", lw=0.8)
        ax.axhline(0.5, color="k", lw=0.8)
        ax.set_title(f"published median {med:g} (Splitwise)", fontsize=8)
    fig.suptitle("azure_code (no real file here: lognormals from published statistics)")
    fig.tight_layout()
    path = out / "azure_code.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    written = [plot_azure_code(a.seed, a.out)]
    if (a.traces / AZURE_FILE).is_file():
        written.append(plot_azure_conv(a.traces, a.seed, a.out))
    else:
        print(f"skipping azure_conv: {a.traces / AZURE_FILE} not found")
    if (a.traces / MOONCAKE_FILE).is_file():
        written.append(plot_mooncake(a.traces, a.seed, a.out))
    else:
        print(f"skipping mooncake_conv: {a.traces / MOONCAKE_FILE} not found")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
