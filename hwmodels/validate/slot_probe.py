"""``python -m hwmodels.validate.slot_probe --out FILE.json``: does a sequence's slot set decode attention time?

Issue 15: in the committed Mooncake load runs of the engine's scheduler order
(hwmodels/validate/data/h200_scheduler_order/h200), decode-only iterations
padded to 16 sequences with the same ~28k longest context ran 27.0 or 20.6 ms, switching exactly when
a request left the batch, independent of the KV totals. Hypothesis: where FlashAttention-2's thread
blocks land on the SMs (two heavy CTAs of the long sequence sharing an SM run at half speed), which
depends on the long sequence's slot in the batch. This probe times decode attention alone, with the
engine's exact call (``model._attn_flash``: ``torch.ops.aten._flash_attention_forward`` varlen, one
query row per sequence, ``cu_seqlens_k`` = start row of each sequence in a flat KV buffer,
``seqused_k`` = its context, is_causal=True, max_seqlen_k = the run's ``max_context``, bf16, padded
to a multiple of 8 with 1-token sequences reading the scratch row, q a strided view of a fused QKV
output, as ``model.forward`` passes it), for:

  real       the iterations behind the 21/27 ms example: one iteration per stretch of constant
             decode_seqs (decode-only, padded to 16, longest context 27-29k tokens) of every
             Mooncake load run, contexts rebuilt by ``measured.decode_contexts`` in batch order
             (engine.py batches running requests oldest first), as recorded ("recorded"), with the
             longest sequence moved to every slot ("long@s") and sorted ("ascending", "descending");
  synthetic  one 28k sequence and n-1 of 2k, n = 8..16, the long one at every slot.

Each configuration is one CUDA graph replay of LAYERS (32, Llama-3.1-8B) attention calls cycling over
KV_BUFFERS distinct KV buffers (so the L2 cache does not serve a call from the previous one's reads,
as in the engine where every layer has its own cache); each sequence keeps its KV rows whatever its
slot, so only the batch order changes. Replays of all configurations are interleaved, `repeats`
rounds after `warmup` rounds; the JSON holds every replay's time (ms, CUDA events), the environment
(torch, CUDA, driver, GPU, SM count, clocks) and the recorded iteration times.
``--report FILE.json`` prints the spread over slots and whether it explains the 27/20.6 split.

Imports torch only inside the CUDA path (the batch construction is tested on CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

LAYERS = 32  # Llama-3.1-8B num_hidden_layers (hwmodels catalogue; engine runs one attention call per layer)
HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128  # Llama-3.1-8B config.json (num_attention_heads, num_key_value_heads, head_dim)
DECODE_PAD = 8  # engine.DECODE_PAD (kept in sync by the test; engine.py imports torch at module level)
KV_BUFFERS = 4
SYNTH_LONG, SYNTH_SHORT = 28160, 2048
SYNTH_N = tuple(range(8, 17))
MAX_CONTEXT_DEFAULT = 87843  # settings.max_context of the committed h200 runs
REAL_LONGEST = (27000, 29000)


def padded(n: int) -> int:
    """Decode sequences of the CUDA graph the engine replays for n decodes (engine.padded_shape)."""
    if n < 1:
        raise ValueError(f"slot_probe.padded: need n >= 1 sequences, got {n}")
    return -(-n // DECODE_PAD) * DECODE_PAD


def kv_starts(contexts: list[int]) -> tuple[list[int], int]:
    """Contiguous KV rows for `contexts` in the given order: (start row of each, rows incl. the
    scratch row at the end). The scratch row index is rows - 1."""
    if not contexts or any(int(c) < 1 for c in contexts):
        raise ValueError(f"slot_probe.kv_starts: contexts must be positive, got {contexts!r}")
    starts = np.concatenate([[0], np.cumsum(contexts)[:-1]]).astype(int).tolist()
    return starts, int(sum(contexts)) + 1


def batch_arrays(contexts: list[int], starts: list[int], scratch: int) -> tuple[list[int], list[int]]:
    """(cu_seqlens_k [P + 1], seqused_k [P]) of one decode call, P = padded(len(contexts)), exactly as
    engine._fill_stage builds them: sequence j reads rows [starts[j], starts[j] + contexts[j]);
    padding sequences and the final entry point at the scratch row and read 1 token."""
    if len(starts) != len(contexts):
        raise ValueError(f"slot_probe.batch_arrays: {len(contexts)} contexts but {len(starts)} starts")
    p = padded(len(contexts))
    cu = [scratch] * (p + 1)
    used = [1] * p
    for j, (s, c) in enumerate(zip(starts, contexts)):
        cu[j] = int(s)
        used[j] = int(c)
    return cu, used


def slot_orders(contexts: list[int]) -> list[tuple[str, list[int]]]:
    """Batch orders to time, as permutations of range(B): "recorded"; "long@s" for s = 0..B-1 (the
    longest sequence, first if tied, moved to slot s, the others in recorded order); "ascending" and
    "descending" (stable sorts by context)."""
    b = len(contexts)
    li = int(np.argmax(contexts))
    rest = [i for i in range(b) if i != li]
    out = [("recorded", list(range(b)))]
    for s in range(b):
        out.append((f"long@{s}", rest[:s] + [li] + rest[s:]))
    order = sorted(range(b), key=lambda i: contexts[i])
    out.append(("ascending", order))
    out.append(("descending", sorted(range(b), key=lambda i: -contexts[i])))
    return out


def select_real(runs) -> list[dict]:
    """One decode-only iteration (the middle one) per stretch of constant decode_seqs with pad_decode
    16 and the longest context in REAL_LONGEST, in every Mooncake load run; contexts in batch order."""
    from .measured import decode_contexts

    out = []
    for r in runs:
        if "mooncake" not in r.window or r.kind != "load":
            continue
        it = r.it
        m = ((it["prefill_tokens"] == 0) & (it["pad_decode"] == 16)
             & (it["longest_decode_context"] >= REAL_LONGEST[0]) & (it["longest_decode_context"] <= REAL_LONGEST[1]))
        idx = np.nonzero(m)[0]
        if not len(idx):
            continue
        ctx = decode_contexts(r)
        segs, cur = [], [idx[0]]
        for j in idx[1:]:
            if j == cur[-1] + 1 and it["decode_seqs"][j] == it["decode_seqs"][cur[-1]]:
                cur.append(j)
            else:
                segs.append(cur)
                cur = [j]
        segs.append(cur)
        for seg in segs:
            j = int(seg[len(seg) // 2])
            c = ctx[j]
            if len(c) != int(it["decode_seqs"][j]) or max(c) != int(it["longest_decode_context"][j]):
                raise ValueError(f"{r.file} {r.label} iteration {j}: rebuilt contexts disagree with the records")
            out.append({"file": r.file, "run": r.label, "iteration": j, "stretch": [int(seg[0]), int(seg[-1])],
                        "decode_seqs": len(c), "pad_decode": int(it["pad_decode"][j]),
                        "recorded_gpu_ms": [round(float(it["gpu_s"][k]) * 1e3, 4) for k in seg],
                        "max_context": int(r.settings["max_context"]), "contexts": c})
    return out


def configs(real: list[dict], synth_n=SYNTH_N, long=SYNTH_LONG, short=SYNTH_SHORT) -> list[dict]:
    """Every configuration to time: {group, batch, order, contexts (slot order), starts (rows of each
    slot's sequence; a sequence keeps its rows under every order), rows, max_k}."""
    out = []
    for bi, rb in enumerate(real):
        c = rb["contexts"]
        starts, rows = kv_starts(c)
        for name, perm in slot_orders(c):
            out.append({"group": "real", "batch": bi, "order": name, "contexts": [c[i] for i in perm],
                        "starts": [starts[i] for i in perm], "rows": rows, "max_k": rb["max_context"]})
    for n in synth_n:
        c = [long] + [short] * (n - 1)
        starts, rows = kv_starts(c)
        for s in range(n):
            perm = list(range(1, s + 1)) + [0] + list(range(s + 1, n))
            out.append({"group": "synthetic", "batch": n, "order": f"long@{s}", "contexts": [c[i] for i in perm],
                        "starts": [starts[i] for i in perm], "rows": rows, "max_k": MAX_CONTEXT_DEFAULT})
    return out


def environment() -> dict:
    import torch

    p = torch.cuda.get_device_properties(0)
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": p.name, "sm_count": p.multi_processor_count,
           "memory_gib": round(p.total_memory / 2 ** 30, 1), "python": sys.version.split()[0]}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        env["nvidia_smi"] = f"unavailable: {e}"
    return env


def run_probe(cfgs: list[dict], repeats: int = 21, warmup: int = 2, layers: int = LAYERS,
              buffers: int = KV_BUFFERS, seed: int = 0, log=print) -> dict:
    """Time every configuration on CUDA (see the module docstring): per configuration the list of
    `repeats` replay times in ms (each `layers` attention calls). RuntimeError without CUDA."""
    import torch

    from .model import _attn_flash, _attn_reference

    if not torch.cuda.is_available():
        raise RuntimeError("slot_probe: CUDA is not available")
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(seed)
    rows = max(c["rows"] for c in cfgs)
    # at least 64 MiB of K+V per buffer, so consecutive calls never find their KV in the L2 cache
    # (50 MB on the H100 SXM / H200: NVIDIA H100 Tensor Core GPU Architecture whitepaper, 2022)
    rows = max(rows, (64 << 20) // (2 * KV_HEADS * HEAD_DIM * 2) + 1)
    kc = [torch.randn((rows, KV_HEADS, HEAD_DIM), generator=g, device=dev, dtype=torch.bfloat16) for _ in range(buffers)]
    vc = [torch.randn((rows, KV_HEADS, HEAD_DIM), generator=g, device=dev, dtype=torch.bfloat16) for _ in range(buffers)]
    scale = HEAD_DIM ** -0.5
    pads = sorted({padded(len(c["contexts"])) for c in cfgs})
    max_ks = sorted({c["max_k"] for c in cfgs})
    static, graphs = {}, {}
    for p in pads:
        qkv = torch.randn((p, (HEADS + 2 * KV_HEADS) * HEAD_DIM), generator=g, device=dev, dtype=torch.bfloat16)
        q = qkv[:, :HEADS * HEAD_DIM].view(p, HEADS, HEAD_DIM)  # a strided view, as model.forward passes it
        cu_q = torch.arange(p + 1, dtype=torch.int32, device=dev)
        cu_k = torch.full((p + 1,), rows - 1, dtype=torch.int32, device=dev)
        used = torch.ones(p, dtype=torch.int32, device=dev)
        static[p] = (q, cu_q, cu_k, used)
    # correctness of the call on this layout: the first configuration against the reference attention
    c0 = cfgs[0]
    p0 = padded(len(c0["contexts"]))
    q, cu_q, cu_k, used = static[p0]
    cu, us = batch_arrays(c0["contexts"], c0["starts"], rows - 1)
    cu_k.copy_(torch.tensor(cu, dtype=torch.int32))
    used.copy_(torch.tensor(us, dtype=torch.int32))
    got = _attn_flash(q, kc[0], vc[0], cu_q, cu_k, used, 1, c0["max_k"], scale).float()
    ref = _attn_reference(q.float(), kc[0].float(), vc[0].float(), [1] * p0, cu[:p0], us, scale)
    err = float((got - ref).norm() / ref.norm())
    if not err < 2e-2:
        raise RuntimeError(f"slot_probe: FlashAttention output differs from the reference (relative error {err:.3g})")
    log(f"flash varlen check on {c0['group']} {c0['batch']} {c0['order']}: relative error {err:.2e}")
    pool = torch.cuda.graph_pool_handle()
    for p in pads:
        for mk in max_ks:
            q, cu_q, cu_k, used = static[p]
            cu_k.fill_(rows - 1)
            used.fill_(1)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for li in range(layers):
                    _attn_flash(q, kc[li % buffers], vc[li % buffers], cu_q, cu_k, used, 1, mk, scale)
            torch.cuda.current_stream().wait_stream(s)
            gr = torch.cuda.CUDAGraph()
            with torch.cuda.graph(gr, pool=pool):
                for li in range(layers):
                    _attn_flash(q, kc[li % buffers], vc[li % buffers], cu_q, cu_k, used, 1, mk, scale)
            graphs[(p, mk)] = gr
    torch.cuda.synchronize()
    inputs = []
    for c in cfgs:
        cu, us = batch_arrays(c["contexts"], c["starts"], rows - 1)
        inputs.append((torch.tensor(cu, dtype=torch.int32, device=dev), torch.tensor(us, dtype=torch.int32, device=dev)))
    events = [[] for _ in cfgs]
    t0 = time.perf_counter()
    for rnd in range(warmup + repeats):
        for i, c in enumerate(cfgs):
            p = padded(len(c["contexts"]))
            _, _, cu_k, used = static[p]
            cu_k.copy_(inputs[i][0])
            used.copy_(inputs[i][1])
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            graphs[(p, c["max_k"])].replay()
            e1.record()
            if rnd >= warmup:
                events[i].append((e0, e1))
        if rnd == 0:
            torch.cuda.synchronize()
            est = (time.perf_counter() - t0) * (warmup + repeats)
            log(f"round 1 of {warmup + repeats}: {time.perf_counter() - t0:.1f} s (estimate {est:.0f} s in all)")
    torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    for c, ev in zip(cfgs, events):
        c["replay_ms"] = [round(a.elapsed_time(b), 5) for a, b in ev]
    return {"flash_check_rel_err": err, "timing_wall_s": round(wall, 2), "kv_rows": rows}


def argv_has(argv: list[str] | None, *flags: str) -> bool:
    """Whether the command line (``argv``, default ``sys.argv[1:]``) names one of ``flags``."""
    args = sys.argv[1:] if argv is None else argv
    return any(x == f or x.startswith(f + "=") for x in args for f in flags)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwmodels.validate.slot_probe", description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the timings (JSON) here (needs CUDA)")
    ap.add_argument("--report", help="print the analysis of a probe JSON (CPU)")
    ap.add_argument("--repeats", type=int, default=21, help="timed rounds (>= 20; default 21)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    ap.add_argument("--quick", action="store_true", help="2 real batches, n = 8 and 16 only, 5 repeats (a smoke test)")
    a = ap.parse_args(argv)
    if a.report and (a.out or a.quick or argv_has(argv, "--repeats", "--warmup")):
        # they were ignored: --report only reads a probe JSON
        ap.error("--report FILE.json reads a probe's timings: --out, --quick, --repeats and --warmup do not apply")
    if a.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {a.warmup}")
    if a.report:
        from .slot_probe_report import report
        try:
            text = report(a.report)
        except ValueError as err:
            ap.error(str(err))
        print(text)
        return 0
    if not a.out:
        ap.error("give --out FILE.json (time on CUDA) or --report FILE.json")
    if a.repeats < 20 and not a.quick:
        ap.error(f"--repeats must be >= 20 (medians of at least 20), got {a.repeats}")
    import torch

    if not torch.cuda.is_available():  # before any plan line: one line says why nothing ran
        print("slot_probe: --out needs CUDA, which is not available here (--report FILE.json runs on CPU)",
              file=sys.stderr)
        return 2
    from .measured import SCHEDULER_ORDER_DIR, load_runs

    real = select_real(load_runs(SCHEDULER_ORDER_DIR))
    synth = SYNTH_N
    repeats = a.repeats
    if a.quick:
        real, synth, repeats = real[:2], (8, 16), 5
    cfgs = configs(real, synth)
    print(f"{len(real)} real batches, {len(cfgs)} configurations, {repeats} repeats x {LAYERS} calls", flush=True)
    t0 = time.perf_counter()
    try:
        meta = run_probe(cfgs, repeats=repeats, warmup=a.warmup, log=lambda s: print(s, flush=True))
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 2
    out = {"environment": environment(), "layers": LAYERS, "kv_buffers": KV_BUFFERS, "repeats": repeats,
           "warmup": a.warmup, "decode_pad": DECODE_PAD, "synthetic": {"long": SYNTH_LONG, "short": SYNTH_SHORT},
           "real_batches": real, "configs": cfgs, **meta, "total_wall_s": round(time.perf_counter() - t0, 2)}
    with open(a.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {a.out} ({meta['timing_wall_s']:.1f} s of timing)")
    from .slot_probe_report import report
    print(report(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
