"""The reference continuous-batching engine: the scheduler of ``envs.core.replica`` on a real model.

One call of :meth:`Engine.step` is one engine iteration with the semantics of
``envs/core/replica.py:run_iteration`` (prefix caching off, FCFS, preemption by recompute):

1. running decodes first, oldest first, one token each; when a decode needs a KV block and none is
   free, the newest running request is preempted (its KV freed; it goes back first in line with
   its generated tokens to recompute as prompt), as vLLM's ``Scheduler`` does;
2. ongoing prefills, chunked under the token budget and the free blocks;
3. new requests in arrival order while budget, blocks and ``max_seqs`` allow, none in an
   iteration that preempted (vLLM V1), stopping at the first that does not fit.

KV accounting is in blocks of ``block_size`` tokens, exactly as the simulator counts them. The
physical KV store is a flat buffer per layer in which each admitted request gets one contiguous
range of ``prompt + output`` rows (first fit; see :class:`KVAllocator`), read by FlashAttention's
varlen interface. Should the physical store be too fragmented for a request that the block count
admits, the request waits (head of line) and ``phys_stalls`` counts it: a difference from the
simulator that the records make visible (zero in every committed run).

Execution: the batch is laid out as [decode tokens | prefill tokens], the decodes longest context
first (``decode_order="longest_first"``, the default; "scheduler" keeps the scheduler's oldest-first
order). The order changes no result, only how FlashAttention's decode thread blocks land on the
SMs: the engine's graphs fix max_seqlen_k at max_context, so a sequence far below it is not split
and each of its KV-head blocks reads its whole context alone; in the scheduler's order the
longest sequence's blocks sometimes share SMs, and an iteration of the same batch ran 20.6 or
27.0 ms depending only on that sequence's slot (hwmodels/validate/data/h200_scheduler_order/slot_probe.json,
``python -m hwmodels.validate.slot_probe --report``: 1.46-1.48x between slots in 8 of 9 real
batches, within 7% of the fastest slot with the batch sorted longest first). Launching the longest
work first is the classic longest-processing-time rule (Graham, "Bounds on multiprocessing timing
anomalies", 1969); vLLM avoids the imbalance differently, by splitting the KV (its FlashAttention
num_splits / scheduler metadata). On CUDA every iteration
replays a CUDA graph captured for its padded shape (decode-only: decode sequences padded to a
multiple of 8; mixed: decode sequences padded to a power of two >= 8 (or 0), prefill tokens to a
power of two >= 128, up to 8 prefill sequences); shapes outside the captured set run eagerly and
are marked so. Inputs travel in one pinned int32 buffer (one host-to-device copy) and the sampled
tokens come back in one device-to-host copy: one host synchronisation per iteration.

Records: per request, arrival and every token's time (seconds since the run's start, host clock
after the iteration's synchronisation); per iteration, its start and end on the host clock, its GPU
time (CUDA events), prefill tokens, causal attention pairs, decode sequences, KV tokens read by
decodes (sum of their context lengths incl. the new token, as the simulator counts), the longest
decode context, the longest context of any sequence, prefill sequences, the padded shape and mode.

Imports only torch, numpy and this package (it runs on GPU machines without the simulator).
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import Batch, LlamaWeights, ModelDims, forward, rope_tables

DECODE_PAD = 8  # decode-only graphs: sequences padded to a multiple of this (vLLM's capture sizes)
MIX_DECODE_BUCKETS = (0, 8, 16, 32, 64, 128, 256)
MIX_PREFILL_MIN = 128
MIX_PREFILL_SEQS = 8  # prefill sequences a mixed graph holds
DECODE_ORDERS = ("longest_first", "scheduler")


def _pow2_at_least(x: int, lo: int) -> int:
    p = lo
    while p < x:
        p *= 2
    return p


def padded_shape(n_dec: int, n_pf_tokens: int, max_seqs: int, budget: int) -> tuple[int, int]:
    """(padded decode sequences, padded prefill tokens) of the CUDA graph an iteration replays."""
    if n_pf_tokens == 0:
        return -(-n_dec // DECODE_PAD) * DECODE_PAD, 0
    dp = 0 if n_dec == 0 else _pow2_at_least(n_dec, 8)
    return dp, _pow2_at_least(n_pf_tokens, MIX_PREFILL_MIN)


def graph_shapes(max_seqs: int, budget: int) -> list[tuple[int, int]]:
    """Every (decode, prefill) shape captured for these limits."""
    out = [(d, 0) for d in range(DECODE_PAD, max_seqs + 1, DECODE_PAD)]
    pp = []
    p = MIX_PREFILL_MIN
    while True:
        pp.append(p)
        if p >= budget:
            break
        p *= 2
    for d in MIX_DECODE_BUCKETS:
        if d <= max_seqs:
            out += [(d, p) for p in pp]
    return out


class KVAllocator:
    """First-fit allocator of contiguous row ranges in a flat KV buffer of `rows` rows."""

    def __init__(self, rows: int):
        self.rows = rows
        self.free: list[tuple[int, int]] = [(0, rows)]  # sorted (start, length)

    def alloc(self, n: int) -> int:
        """Start row of a free range of n rows; -1 if none is long enough."""
        for i, (s, ln) in enumerate(self.free):
            if ln >= n:
                if ln == n:
                    self.free.pop(i)
                else:
                    self.free[i] = (s + n, ln - n)
                return s
        return -1

    def release(self, start: int, n: int) -> None:
        i = bisect.bisect_left(self.free, (start, 0))
        self.free.insert(i, (start, n))
        # merge with neighbours
        if i + 1 < len(self.free) and self.free[i][0] + self.free[i][1] == self.free[i + 1][0]:
            self.free[i] = (start, self.free[i][1] + self.free[i + 1][1])
            self.free.pop(i + 1)
        if i > 0 and self.free[i - 1][0] + self.free[i - 1][1] == self.free[i][0]:
            self.free[i - 1] = (self.free[i - 1][0], self.free[i - 1][1] + self.free[i][1])
            self.free.pop(i)


@dataclass
class Request:
    idx: int
    arrival_s: float
    prompt_ids: np.ndarray  # int64 [prompt]
    output_len: int
    seq: int = -1
    target: int = 0
    kv: int = 0
    blocks: int = 0
    start: int = -1  # physical KV row range start (-1: none)
    sched: int = 0  # this iteration: -1 decode, > 0 prefill chunk
    generated: list = field(default_factory=list)
    token_s: list = field(default_factory=list)
    preemptions: int = 0
    done: bool = False

    @property
    def prompt(self) -> int:
        return len(self.prompt_ids)

    def ids(self) -> np.ndarray:
        """Prompt plus generated tokens (what a recompute prefills)."""
        if not self.generated:
            return self.prompt_ids
        return np.concatenate([self.prompt_ids, np.asarray(self.generated, np.int64)])


ITER_FIELDS = ("start_s", "end_s", "gpu_s", "prefill_tokens", "prefill_attn_pairs", "decode_seqs",
               "decode_kv_tokens", "longest_decode_context", "longest_context", "prefill_seqs",
               "pad_decode", "pad_prefill", "graph")


class Engine:
    """Continuous-batching engine over a random-weight Llama (see the module docstring).

    device: "cuda" (bf16, FlashAttention, CUDA graphs) or "cpu" (any dtype, reference attention,
    eager; for tests). capacity_blocks: KV blocks of `block_size` tokens (the scheduler's
    capacity, which the simulator replays). kv_rows: rows of the physical KV store (default twice
    the blocks' tokens, so that whole-request ranges rarely stall; >= the blocks' tokens). max_context: the longest prompt + output any request may have (sizes the RoPE
    table; on CUDA the static max_k of the graphs). Raises ValueError on bad arguments.
    """

    def __init__(self, dims: ModelDims, device: str = "cuda", dtype: torch.dtype | None = None,
                 budget: int = 2048, block_size: int = 16, capacity_blocks: int = 0,
                 max_seqs: int = 256, max_context: int = 32768, kv_rows: int | None = None, seed: int = 0,
                 graphs: bool | None = None, pad: bool = True, decode_order: str = "longest_first", log=print):
        if decode_order not in DECODE_ORDERS:
            raise ValueError(f"Engine: decode_order must be one of {DECODE_ORDERS}, got {decode_order!r}")
        for name, v in (("budget", budget), ("block_size", block_size), ("capacity_blocks", capacity_blocks),
                        ("max_seqs", max_seqs), ("max_context", max_context)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Engine: {name} must be a positive integer, got {v!r}")
        self.dims = dims
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if self.cuda else torch.float32)
        self.budget, self.block_size, self.capacity_blocks = budget, block_size, capacity_blocks
        self.max_seqs, self.max_context, self.pad = max_seqs, max_context, pad
        self.flash = self.cuda
        self.decode_order = decode_order
        self.use_graphs = self.cuda and (graphs is None or bool(graphs))
        self.log = log
        self.w = LlamaWeights(dims, self.device, self.dtype, seed)
        self.rows = 2 * capacity_blocks * block_size if kv_rows is None else kv_rows
        if not isinstance(self.rows, int) or self.rows < capacity_blocks * block_size:
            raise ValueError(f"Engine: kv_rows must be an integer >= capacity_blocks * block_size, got {kv_rows!r}")
        self.scratch = self.rows  # the extra row padded tokens write to
        shape = (self.rows + 1, dims.kv_heads, dims.head_dim)
        self.k_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(dims.layers)]
        self.v_cache = [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(dims.layers)]
        self.cos, self.sin = rope_tables(self.w, max_context + 1)
        max_t = max_seqs + _pow2_at_least(budget, MIX_PREFILL_MIN) + MIX_PREFILL_SEQS
        self.stage_len = 3 * max_t + 3 * (max_seqs + 2) + 3 * (MIX_PREFILL_SEQS + 2) + max_seqs + 2 * MIX_PREFILL_SEQS + 64
        pin = self.cuda
        self.h_stage = torch.zeros(self.stage_len, dtype=torch.int32, pin_memory=pin)
        self.d_stage = torch.zeros(self.stage_len, dtype=torch.int32, device=self.device)
        self.dec_cu_q = torch.arange(max_seqs + 1, dtype=torch.int32, device=self.device)
        self.h_tokens = torch.zeros(max_seqs + MIX_PREFILL_SEQS + 64, dtype=torch.int64, pin_memory=pin)
        self.graphs: dict = {}
        if self.flash:
            self._probe_flash()
        self.reset()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        self.alloc = KVAllocator(self.rows)
        self.free_blocks = self.capacity_blocks
        self.running: list[Request] = []
        self.queued: list[Request] = []
        self.next_seq = 0
        self.iters = {k: [] for k in ITER_FIELDS}
        self.preemptions = 0
        self.phys_stalls = 0

    def enqueue(self, r: Request) -> None:
        if r.prompt + r.output_len > self.max_context:
            raise ValueError(f"request {r.idx}: prompt {r.prompt} + output {r.output_len} exceeds "
                             f"max_context {self.max_context}")
        r.seq = self.next_seq
        self.next_seq += 1
        r.target = r.prompt
        self.queued.append(r)

    def _preempt_newest(self) -> Request:
        r = self.running.pop()
        self.free_blocks += r.blocks
        self.alloc.release(r.start, r.prompt + r.output_len)
        r.blocks = r.kv = r.sched = 0
        r.start = -1
        r.target = r.prompt + len(r.generated)
        r.preemptions += 1
        self.preemptions += 1
        self.queued.append(r)
        return r

    # ---------------------------------------------------------------- scheduler (replica.py)
    def schedule(self) -> tuple[list[Request], list[Request]]:
        """Pick this iteration's decodes and prefill chunks (sets r.sched); envs.core semantics."""
        bs = self.block_size
        left = self.budget
        short = False
        dec: list[Request] = []
        i = 0
        while i < len(self.running) and left > 0:
            r = self.running[i]
            if r.kv < r.target:
                i += 1
                continue
            need = -(-(r.kv + 1) // bs) - r.blocks
            if need > self.free_blocks:
                short = True
                while need > self.free_blocks and self.running[-1] is not r:
                    self._preempt_newest()
                if need > self.free_blocks:
                    self._preempt_newest()
                    break
            r.blocks += need
            self.free_blocks -= need
            r.sched = -1
            left -= 1
            dec.append(r)
            i += 1
        pf: list[Request] = []
        for r in self.running:
            if left <= 0:
                break
            if r.kv >= r.target:
                continue
            chunk = min(r.target - r.kv, left, (r.blocks + self.free_blocks) * bs - r.kv)
            if chunk <= 0:
                continue
            need = max(-(-(r.kv + chunk) // bs) - r.blocks, 0)
            r.blocks += need
            self.free_blocks -= need
            r.sched = chunk
            left -= chunk
            pf.append(r)
        while not short and left > 0 and self.queued and len(self.running) < self.max_seqs:
            r = min(self.queued, key=lambda q: q.seq)
            chunk = min(r.target, left)
            need = -(-chunk // bs)
            if need > self.free_blocks:
                break
            start = self.alloc.alloc(r.prompt + r.output_len)
            if start < 0:
                self.phys_stalls += 1
                break
            self.queued.remove(r)
            r.start = start
            self.running.append(r)
            r.kv = 0
            r.blocks = need
            self.free_blocks -= need
            r.sched = chunk
            left -= chunk
            pf.append(r)
        return dec, pf

    # ---------------------------------------------------------------- one iteration
    def _layout(self, dp: int, pp: int, npf: int) -> dict:
        t = dp + pp
        off, lay = 0, {}
        for name, n in (("ids", t), ("pos", t), ("slot", t), ("dec_cu_k", dp + 1), ("dec_used", dp),
                        ("pf_cu_q", npf + 1), ("pf_cu_k", npf + 1), ("pf_used", npf), ("sample", dp + npf)):
            lay[name] = (off, n)
            off += n
        if off > self.stage_len:
            raise ValueError(f"batch shape ({dp} decodes, {pp} prefill tokens) exceeds the engine's limits")
        return lay

    def _batch(self, dp, pp, npf, max_q, host_lens=None) -> Batch:
        lay = self._layout(dp, pp, npf)
        s = self.d_stage

        def g(name, long=False):
            o, n = lay[name]
            v = s[o:o + n]
            return v.long() if long else v
        return Batch(ids=g("ids", True), pos=g("pos", True), slot=g("slot", True),
                     dec_cu_q=self.dec_cu_q[:dp + 1], dec_cu_k=g("dec_cu_k"), dec_used=g("dec_used"),
                     pf_cu_q=g("pf_cu_q"), pf_cu_k=g("pf_cu_k"), pf_used=g("pf_used"), sample=g("sample", True),
                     n_dec=dp, n_pf_tokens=pp, max_q_pf=max_q, max_k=self.max_context, host_lens=host_lens)

    def _fill_stage(self, dec, pf, dp, pp, npf) -> tuple[dict, tuple]:
        lay = self._layout(dp, pp, npf)
        h = self.h_stage.numpy()
        D, P = len(dec), sum(r.sched for r in pf)
        t = dp + pp
        ids = np.zeros(t, np.int64)
        pos = np.zeros(t, np.int64)
        slot = np.full(t, self.scratch, np.int64)
        dec_cu_k = np.full(dp + 1, self.scratch, np.int64)
        dec_used = np.ones(dp, np.int64)
        for j, r in enumerate(dec):
            ids[j] = r.generated[-1]
            pos[j] = r.kv
            slot[j] = r.start + r.kv
            dec_cu_k[j] = r.start
            dec_used[j] = r.kv + 1
        pf_cu_q = np.full(npf + 1, P, np.int64)
        pf_cu_k = np.full(npf + 1, self.scratch, np.int64)
        pf_used = np.ones(npf, np.int64)
        sample = np.zeros(dp + npf, np.int64)
        sample[:D] = np.arange(D)
        o = 0
        for j, r in enumerate(pf):
            c = r.sched
            a = dp + o
            ids[a:a + c] = r.ids()[r.kv:r.kv + c]
            pos[a:a + c] = np.arange(r.kv, r.kv + c)
            slot[a:a + c] = r.start + pos[a:a + c]
            pf_cu_q[j] = o
            pf_cu_k[j] = r.start
            pf_used[j] = r.kv + c
            o += c
            sample[dp + j] = a + c - 1
        pf_cu_q[len(pf):] = P
        for name, arr in (("ids", ids), ("pos", pos), ("slot", slot), ("dec_cu_k", dec_cu_k),
                          ("dec_used", dec_used), ("pf_cu_q", pf_cu_q), ("pf_cu_k", pf_cu_k),
                          ("pf_used", pf_used), ("sample", sample)):
            off, n = lay[name]
            h[off:off + n] = arr
        host = ((dec_cu_k[:dp].tolist(), dec_used.tolist()),
                ((np.diff(pf_cu_q)).tolist(), pf_cu_k[:npf].tolist(), pf_used.tolist()))
        return lay, host

    def step(self, dec: list[Request], pf: list[Request]) -> tuple[np.ndarray, float, tuple]:
        """Run one iteration on the device; returns (sampled tokens per [decodes..., prefills...],
        GPU seconds or nan, (padded decodes, padded prefill tokens, graph?))."""
        D, P = len(dec), sum(r.sched for r in pf)
        if self.pad:
            dp, pp = padded_shape(D, P, self.max_seqs, self.budget)
            npf = MIX_PREFILL_SEQS if P else 0
        else:
            dp, pp, npf = D, P, len(pf)
        key = (dp, pp)
        graph = self.graphs.get(key) if (self.use_graphs and len(pf) <= npf) else None
        if graph is None and len(pf) > npf:
            npf = len(pf)
        max_q = pp if graph is not None else max([r.sched for r in pf], default=1)
        perm = None
        if self.decode_order == "longest_first" and D > 1:
            perm = sorted(range(D), key=lambda j: (-dec[j].kv, j))
            dec = [dec[j] for j in perm]
        lay, host = self._fill_stage(dec, pf, dp, pp, npf)
        used = sum(n for _, n in lay.values())
        self.d_stage[:used].copy_(self.h_stage[:used], non_blocking=True)
        if self.cuda:
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
        if graph is not None:
            g, out = graph
            g.replay()
        else:
            b = self._batch(dp, pp, npf, max_q, None if self.flash else host)
            out = forward(self.w, self.k_cache, self.v_cache, self.cos, self.sin, b, self.flash)
        n = out.shape[0]
        self.h_tokens[:n].copy_(out, non_blocking=True)
        gpu_s = float("nan")
        if self.cuda:
            e1.record()
            e1.synchronize()  # the iteration's one host synchronisation
            gpu_s = e0.elapsed_time(e1) / 1e3
        toks = self.h_tokens[:n].numpy()
        dtoks = toks[:D]
        if perm is not None:  # back to the scheduler's order
            dtoks = np.empty_like(dtoks)
            dtoks[perm] = toks[:D]
        res = np.concatenate([dtoks, toks[dp:dp + len(pf)]])
        return res, gpu_s, (dp, pp, graph is not None)

    # ---------------------------------------------------------------- CUDA graphs
    def capture_graphs(self) -> int:
        """Capture a CUDA graph for every padded shape (largest first, one shared memory pool)."""
        if not self.use_graphs:
            return 0
        shapes = sorted(graph_shapes(self.max_seqs, self.budget), key=lambda s: -(s[0] + s[1]))
        pool = torch.cuda.graph_pool_handle()
        t0 = time.perf_counter()
        for dp, pp in shapes:
            npf = MIX_PREFILL_SEQS if pp else 0
            self._null_stage(dp, pp, npf)
            b = self._batch(dp, pp, npf, pp)
            st = torch.cuda.Stream()
            st.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(st):
                forward(self.w, self.k_cache, self.v_cache, self.cos, self.sin, b, True)
            torch.cuda.current_stream().wait_stream(st)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=pool):
                b = self._batch(dp, pp, npf, pp)
                out = forward(self.w, self.k_cache, self.v_cache, self.cos, self.sin, b, True)
            self.graphs[(dp, pp)] = (g, out)
        torch.cuda.synchronize()
        self.log(f"captured {len(shapes)} CUDA graphs in {time.perf_counter() - t0:.1f} s")
        return len(shapes)

    def _null_stage(self, dp, pp, npf) -> None:
        lay = self._layout(dp, pp, npf)
        h = self.h_stage.numpy()
        used = sum(n for _, n in lay.values())
        h[:used] = 0
        for name in ("slot", "dec_cu_k", "pf_cu_k"):
            o, n = lay[name]
            h[o:o + n] = self.scratch
        for name in ("dec_used", "pf_used"):
            o, n = lay[name]
            h[o:o + n] = 1
        self.d_stage[:used].copy_(self.h_stage[:used])

    def _probe_flash(self) -> None:
        """FlashAttention varlen with seqused_k against the reference attention, at start-up."""
        torch.manual_seed(0)
        d = self.dims
        kc = torch.randn((300, d.kv_heads, d.head_dim), device=self.device).to(self.dtype)
        vc = torch.randn_like(kc)
        q = torch.randn((7, d.heads, d.head_dim), device=self.device).to(self.dtype)
        qlens, starts, klens = [1, 4, 2], [10, 100, 200], [50, 30, 2]
        cu_q = torch.tensor([0, 1, 5, 7], dtype=torch.int32, device=self.device)
        cu_k = torch.tensor(starts + [299], dtype=torch.int32, device=self.device)
        used = torch.tensor(klens, dtype=torch.int32, device=self.device)
        from .model import _attn_flash, _attn_reference
        got = _attn_flash(q, kc, vc, cu_q, cu_k, used, 4, self.max_context, d.head_dim ** -0.5).double()
        ref = _attn_reference(q.double(), kc.double(), vc.double(), qlens, starts, klens, d.head_dim ** -0.5)
        err = float((got - ref).norm() / ref.norm())
        if not err < 2e-2:
            raise RuntimeError(f"FlashAttention varlen probe failed: relative error {err:.3g}")
        self.log(f"flash varlen probe: relative error {err:.2e}")

    # ---------------------------------------------------------------- a whole run
    def run(self, requests: list[Request], clock: str = "wall", deadline_s: float = float("inf"),
            iter_s: float = 1.0) -> dict:
        """Serve `requests` (sorted by arrival_s) as they arrive; returns the records (JSON-ready).

        clock="wall": arrivals in real seconds. clock="virtual": every iteration takes `iter_s`
        (deterministic schedules for tests). Stops early (truncated=True) past `deadline_s`.
        """
        self.reset()
        reqs = sorted(requests, key=lambda r: (r.arrival_s, r.idx))
        n, nxt, finished = len(reqs), 0, 0
        t0 = time.perf_counter()
        vnow = 0.0
        now_fn = (lambda: time.perf_counter() - t0) if clock == "wall" else (lambda: vnow)
        truncated = False
        while finished < n:
            now = now_fn()
            if now > deadline_s:
                truncated = True
                break
            while nxt < n and reqs[nxt].arrival_s <= now:
                self.enqueue(reqs[nxt])
                nxt += 1
            if not self.running and not self.queued:
                if clock == "wall":
                    wait = reqs[nxt].arrival_s - now_fn()
                    if wait > 2e-3:
                        time.sleep(wait - 1e-3)
                    while now_fn() < reqs[nxt].arrival_s:
                        pass
                else:
                    vnow = reqs[nxt].arrival_s
                continue
            start = now
            dec, pf = self.schedule()
            if not dec and not pf:
                if nxt >= n and not self.running:
                    raise RuntimeError("engine: a queued request can never be scheduled (exceeds KV capacity)")
                if clock == "wall":
                    time.sleep(1e-4)
                else:
                    vnow = reqs[nxt].arrival_s if nxt < n else vnow + iter_s
                continue
            toks, gpu_s, (dp, pp, graphed) = self.step(dec, pf)
            if clock == "virtual":
                vnow += iter_s
            P = sum(r.sched for r in pf)
            rec = self.iters
            rec["prefill_tokens"].append(P)
            rec["prefill_attn_pairs"].append(sum(r.sched * (r.kv + (r.sched + 1) / 2.0) for r in pf))
            rec["decode_seqs"].append(len(dec))
            rec["decode_kv_tokens"].append(sum(r.kv + 1 for r in dec))
            rec["longest_decode_context"].append(max((r.kv + 1 for r in dec), default=0))
            rec["longest_context"].append(max([r.kv + 1 for r in dec] + [r.kv + r.sched for r in pf]))
            rec["prefill_seqs"].append(len(pf))
            rec["pad_decode"].append(dp)
            rec["pad_prefill"].append(pp)
            rec["graph"].append(bool(graphed))
            rec["gpu_s"].append(gpu_s)
            emitted = []
            for j, r in enumerate(dec + pf):
                w = r.sched
                r.sched = 0
                if w == -1:
                    r.kv += 1
                    r.generated.append(int(toks[j]))
                    emitted.append(r)
                else:
                    r.kv += w
                    if r.kv == r.target:
                        r.generated.append(int(toks[j]))
                        emitted.append(r)
            keep = []
            for r in self.running:
                if len(r.generated) >= r.output_len:
                    r.done = True
                    finished += 1
                    self.free_blocks += r.blocks
                    self.alloc.release(r.start, r.prompt + r.output_len)
                    r.blocks = 0
                    r.start = -1
                else:
                    keep.append(r)
            end = now_fn()  # the iteration ends when its outputs are processed (the next one starts)
            for r in emitted:
                r.token_s.append(end)
            rec["start_s"].append(start)
            rec["end_s"].append(end)
            self.running = keep
        return {
            "requests": {
                "arrival_s": [r.arrival_s for r in reqs],
                "prompt_tokens": [r.prompt for r in reqs],
                "output_tokens": [r.output_len for r in reqs],
                "token_s": [[round(t, 6) for t in r.token_s] for r in reqs],
                "preemptions": [r.preemptions for r in reqs],
                "finished": [r.done for r in reqs],
            },
            "iterations": {k: ([round(x, 7) for x in v] if k in ("start_s", "end_s", "gpu_s") else v)
                           for k, v in self.iters.items()},
            "preemptions": self.preemptions,
            "phys_stalls": self.phys_stalls,
            "truncated": truncated,
            "wall_s": round(time.perf_counter() - t0, 3),
        }
