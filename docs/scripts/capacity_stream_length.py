"""A scenario's capacity (the load unit) measured on longer request streams than the default 2,048.

    python docs/scripts/capacity_stream_length.py [TRACE] [--lengths 2048 8192 32768]

KVAdmission-v0's scenario for TRACE (default ``burstgpt_like-v1`` as its transfer track plays it, 4 hours) measures
``envs.core.capacity.measure_capacity_rps`` on the first 2,048 requests of its training part; this prints the same
measurement on streams of other lengths (a stream longer than the training part cycles its served requests and
doubles until a request still waits at the 80th percentile completion). A capacity that falls with the stream's
length was measured before the replica reached steady state.
"""
from __future__ import annotations

import argparse

from envs.core.capacity import measure_capacity_rps
from envs.core.workload import build_workload
from envs.kv_admission import env as K

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("trace", nargs="?", default="burstgpt_like-v1")
ap.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768])
args = ap.parse_args()
params = (("duration_s", 14400.0),) if args.trace == "burstgpt_like-v1" else ()
cfg = K.KVAdmissionConfig(trace=args.trace, trace_params=params)
scenario = K._build_scenario(cfg)
history, _ = K.load_split(cfg, "KVAdmission")
cap_wl, _ = build_workload(history, cfg.window_requests, cfg.predictor_accuracy, cfg.trace_seed)
print(f"{args.trace}: scenario capacity {scenario.capacity_rps:.1f} requests/s; training part {cap_wl.arrival_s.size} slots")
for n in args.lengths:
    print(f"  stream of {n:>6}: {measure_capacity_rps(scenario.engine, cap_wl, max_requests=n):.1f} requests/s")
