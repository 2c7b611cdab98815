#!/usr/bin/env bash
# The fuzz of one environment as PROCS processes side by side, one per core (issue 16: 10^6 random masked
# env-steps per environment with zero invariant violations; one process takes too long for a 10-minute call).
#
#   OUT=DIR [ENV=servegym/Disaggregation-v0] [PROCS=16] [STEPS=31250] [SEED0=5000] [SCENARIO_STEPS=5000] \
#       [LIMIT_S=540] [WARM_STEPS=50] bash envs/fuzz_parallel.sh
#
# Process i runs `python -m envs.fuzz --env ENV --steps STEPS --seed SEED0+i --scenario-steps SCENARIO_STEPS`
# on core i under `timeout LIMIT_S`; its log is OUT/fuzz_SEED.log. At the end, OUT/summary.txt holds per
# process the env-steps reached (the final line, or the last progress line of a process the timeout
# stopped), its violations, and the totals. Exit status 1 if any process reported a violation or failed
# other than by the timeout. Run twice with different SEED0 (e.g. 5000 and 6000) for 16 x 31,250 x 2 = 10^6.
# ENV is any id `python -m envs.fuzz` knows (envs.fuzz.FUZZ_ENVS: the single-agent environments and
# servegym/MultiCluster-v0). First, unless WARM_STEPS=0, one process plays WARM_STEPS (default 50)
# env-steps with seed SEED0-1 (log OUT/fuzz_warm.log) so that numba compiles the kernels once into its
# cache instead of in every process at once (on the loaded 2-core box, two processes compiling the
# multi-agent kernels at once spent 328 s before their first progress line); a violation or failure there stops the script with exit status 1, and its
# env-steps are not in the totals.
set -euo pipefail
[ -n "${OUT:-}" ] || { echo "fuzz_parallel.sh: set OUT to the output directory" >&2; exit 2; }
ENV="${ENV:-servegym/Disaggregation-v0}"
PROCS="${PROCS:-16}"
STEPS="${STEPS:-31250}"
SEED0="${SEED0:-5000}"
SCENARIO_STEPS="${SCENARIO_STEPS:-5000}"
LIMIT_S="${LIMIT_S:-540}"
WARM_STEPS="${WARM_STEPS:-50}"
for v in PROCS STEPS SEED0 SCENARIO_STEPS LIMIT_S WARM_STEPS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "fuzz_parallel.sh: $v=${!v}: expected a non-negative integer" >&2; exit 2; }
done
(( PROCS >= 1 && STEPS >= 1 && SCENARIO_STEPS >= 1 && LIMIT_S >= 1 )) \
  || { echo "fuzz_parallel.sh: PROCS, STEPS, SCENARIO_STEPS and LIMIT_S must be >= 1" >&2; exit 2; }
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
ncores=$(nproc)
if (( WARM_STEPS > 0 )); then
  if ! timeout "$LIMIT_S" python3 -m envs.fuzz --env "$ENV" --steps "$WARM_STEPS" --seed $((SEED0 > 0 ? SEED0 - 1 : 0)) \
      --scenario-steps "$WARM_STEPS" >"$OUT/fuzz_warm.log" 2>&1; then
    echo "fuzz_parallel.sh: the warm-up run failed or found a violation: $OUT/fuzz_warm.log" >&2
    tail -n 20 "$OUT/fuzz_warm.log" >&2
    exit 1
  fi
fi
pids=()
for ((i = 0; i < PROCS; i++)); do
  seed=$((SEED0 + i))
  taskset -c $((i % ncores)) timeout "$LIMIT_S" python3 -m envs.fuzz --env "$ENV" --steps "$STEPS" --seed "$seed" \
    --scenario-steps "$SCENARIO_STEPS" >"$OUT/fuzz_$seed.log" 2>&1 &
  pids+=($!)
done
rcs=()
for p in "${pids[@]}"; do
  if wait "$p"; then rcs+=(0); else rcs+=($?); fi
done
python3 - "$OUT" "$ENV" "$SEED0" "${rcs[@]}" <<'EOF'
import re
import sys
from pathlib import Path

out, env, seed0, rcs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), [int(r) for r in sys.argv[4:]]
lines, total, bad, failed = [], 0, 0, 0
for i, rc in enumerate(rcs):
    text = (out / f"fuzz_{seed0 + i}.log").read_text()
    steps = [int(m.replace(",", "")) for m in re.findall(r": ([\d,]+) env-steps", text)]
    n = max(steps, default=0)
    v = text.count("VIOLATION ")
    state = "done" if rc == 0 else "stopped by the timeout" if rc == 124 else f"exit {rc}"
    failed += rc not in (0, 124) and v == 0
    total, bad = total + n, bad + v
    lines.append(f"seed {seed0 + i}: {n:,} env-steps, {v} violations, {state}")
lines.append(f"{env}: {total:,} env-steps in all, {bad} violations")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
sys.exit(1 if bad or failed else 0)
EOF
