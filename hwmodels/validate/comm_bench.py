"""``python -m hwmodels.validate comm``: NCCL all-reduce and all-to-all on the GPUs of one host.

One process per GPU (torch.distributed, NCCL backend). For each buffer size (per GPU, bf16,
2 KiB .. 256 MiB, the sizes the environments use: a TP all-reduce moves tokens x hidden x 2 bytes
per layer, an EP all-to-all tokens x top_k x hidden x 2 bytes), `reps` back-to-back collectives
are captured in a CUDA graph (as engines run them) and replayed; the time per collective is the
median over `samples` replays of (replay time / reps), from CUDA events on rank 0. Where graph
capture fails the loop runs eagerly and the row says so.

NVLink multicast (NVLS) is kept off: NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1,
NVSHMEM_DISABLE_NVLS=1 are set explicitly for every process.

Writes ``<out>/comm.csv`` (op, gpus, buffer_bytes, median_s, min_s, reps, samples, mode) and
``<out>/comm_environment.json`` (GPUs, driver, torch, NCCL version, ``nvidia-smi topo -m``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path

NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
SIZES = [2048 << i for i in range(18)]  # 2 KiB .. 256 MiB


def _worker(rank: int, world: int, out: str, port: int, samples: int) -> None:
    os.environ.update(NO_MULTICAST)
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=torch.device("cuda", rank))
    rows = []
    for op in ("all_reduce", "all_to_all"):
        for nbytes in SIZES:
            n = nbytes // 2
            # all-reduce of zeros stays finite however often it repeats; values do not change NCCL's time
            x = (torch.zeros(n, device="cuda", dtype=torch.bfloat16) if op == "all_reduce"
                 else torch.randn(n, device="cuda", dtype=torch.float32).to(torch.bfloat16))
            y = torch.empty_like(x)
            reps = 20 if nbytes <= (8 << 20) else 5

            def body():
                for _ in range(reps):
                    if op == "all_reduce":
                        dist.all_reduce(x)
                    else:
                        dist.all_to_all_single(y, x)
            mode = "graph"
            try:
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    body()
                torch.cuda.current_stream().wait_stream(s)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    body()
                fn = g.replay
            except Exception:  # noqa: BLE001 - recorded as mode=eager
                torch.cuda.synchronize()
                mode, fn = "eager", body
            fn()
            torch.cuda.synchronize()
            ts = []
            for _ in range(samples):
                dist.barrier()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                ts.append(e0.elapsed_time(e1) / 1e3 / reps)
            rows.append(dict(op=op, gpus=world, buffer_bytes=nbytes, median_s=statistics.median(ts),
                             min_s=min(ts), reps=reps, samples=samples, mode=mode))
            if rank == 0:
                print(f"{op} {nbytes:>10d} B: {statistics.median(ts) * 1e6:9.1f} us ({mode})", flush=True)
            del x, y
    if rank == 0:
        with open(Path(out) / "comm.csv", "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
    dist.barrier()
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hwmodels.validate comm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpus", type=int, default=0, help="GPUs to use (default: all visible)")
    p.add_argument("--samples", type=int, default=15)
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    os.environ.update(NO_MULTICAST)
    import torch
    import torch.multiprocessing as mp

    from hwmodels.calibrate_measure import _sh

    world = args.gpus or torch.cuda.device_count()
    if world < 2:
        raise SystemExit(f"comm: needs >= 2 GPUs, found {torch.cuda.device_count()}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = {"gpus": [torch.cuda.get_device_name(i) for i in range(world)], "torch": torch.__version__,
           "nccl": ".".join(map(str, torch.cuda.nccl.version())), "env": NO_MULTICAST,
           "topo": _sh(["nvidia-smi", "topo", "-m"]),
           "smi": _sh(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw",
                       "--format=csv"]),
           "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    t = time.perf_counter()
    mp.spawn(_worker, args=(world, str(out), args.port, args.samples), nprocs=world, join=True)
    env["wall_s"] = round(time.perf_counter() - t, 1)
    (out / "comm_environment.json").write_text(json.dumps(env, indent=1))
    return 0
