#!/usr/bin/env bash
# PrefixEviction-v0's transfer agent (issue 21): DAgger regression on Belady's next-use distance for 3
# seeds in parallel, then the PrefixEviction leaderboard (main and transfer tracks) of the 3 checkpoints
# and their table against the best heuristic.
#
#   OUT=DIR bash agents/zoo/train_prefix_eviction.sh [full|small]
#
# full: the pending recipe (agents/zoo/__init__.py PENDING["servegym/PrefixEviction-v0"]; the zoo's, RECIPES,
# when none is pending) for seeds 0, 1, 2;
# small: the same stages scaled down (STEPS=4096 DAgger decisions, leaderboard --quick) to time a box.
# The teacher (env.teacher_values: each candidate's next use, read from the trace) runs inside each
# seed's process, so a seed uses one core; the 3 run at once. Writes to $OUT: s0.zip s1.zip s2.zip (the
# checkpoints), stages.txt (seconds at the end of each stage), seeds.md / seeds.json (the 3 seeds against
# the best heuristic per scenario), logs21.tgz (logs, run records) and lb21.tgz (the leaderboard's
# output). Environment: NCPU (default nproc), W (work directory, default /tmp/w21pe), STEPS (DAgger
# decisions per seed).
# Measured on the loaded 2-core dev box (NCPU=2, 2026-12-01), the pending 128-env recipe: small mode 615 s,
# rc 0 (numba 25 s, DAgger 75 s for the 3 seeds at once, leaderboard --quick 511 s). Full mode not run
# there; one seed of the full recipe took 80 s alone on that box (190-200 s with 4 jobs at once), and the
# zoo recipe's 3 seeds (133 s for one seed here) took 72 s on the 16-core host, so expect ~100 s of DAgger
# plus the ~70 s PrefixEviction leaderboard there: run it with a 600 s limit.
set -o pipefail
MODE=${1:-full}
: "${OUT:?set OUT to the output directory}"
W=${W:-/tmp/w21pe}
NCPU=${NCPU:-$(nproc)}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
ENV=servegym/PrefixEviction-v0
case $MODE in
  full) STEPS=${STEPS:-}; LBQ=();;
  small) STEPS=${STEPS:-4096}; LBQ=(--quick);;
  *) echo "usage: OUT=DIR bash $0 [full|small]" >&2; exit 2;;
esac
T0=$(date +%s)
stage() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/stages.txt"; }
pack() { tar czf "$OUT/logs21.tgz" -C "$W" $(cd "$W" && ls -d *.log s*/run.json seeds.* 2>/dev/null); }

# The recipe's train.py arguments (repository-relative trace paths resolved), seed and steps replaced.
mapfile -t ARGS < <(python3 - "$STEPS" <<'PY'
import sys
from agents.zoo import PENDING, RECIPES
from agents.zoo.__main__ import recipe_args
env = "servegym/PrefixEviction-v0"
args = recipe_args(env, PENDING.get(env) or RECIPES[env])
steps = sys.argv[1]
if steps:
    args[args.index("--imitate") + 1] = steps
i = args.index("--seed")
del args[i:i + 2]
print("\n".join(args))
PY
) || { echo "could not read the recipe" >&2; exit 1; }
stage "start ($MODE, $NCPU cores): train.py ${ARGS[*]}"

# 1. Compile the numba kernels once, before 3 processes would at once.
python3 - > "$W/warm.log" 2>&1 <<'PY' || { stage "warm-up failed"; cat "$W/warm.log"; exit 1; }
import numpy as np
import envs
vec = envs.make_vec("servegym/PrefixEviction-v0", 2, seed=0, trace="mooncake_conv-v1", window_requests=64,
                    warmup_requests=64, capacity_frac=0.01)
vec.reset()
for _ in range(50):
    vec.teacher_values()
    vec.step(vec.teacher_actions())
PY
stage "numba warm-up"

# 2. DAgger, 3 seeds in parallel.
for s in 0 1 2; do
  python3 -m agents.train "${ARGS[@]}" --seed $s --no-eval --no-progress --out "$W/s$s" > "$W/train_s$s.log" 2>&1 &
done
wait
for s in 0 1 2; do tail -2 "$W/train_s$s.log"; cp "$W/s$s/final.zip" "$OUT/s$s.zip" || { stage "seed $s failed"; pack; exit 1; }; done
stage "DAgger"; pack

# 3. The leaderboard of PrefixEviction-v0 (main and transfer tracks) with the 3 checkpoints.
python3 -m agents.leaderboard --envs prefix_eviction "${LBQ[@]}" --policy "$OUT/s0.zip" --policy "$OUT/s1.zip" \
  --policy "$OUT/s2.zip" --ray --num-cpus "$NCPU" --no-progress --out "$W/lb" > "$W/lb.log" 2>&1
rc=$?
tail -5 "$W/lb.log"; stage "leaderboard (rc $rc)"
# The 3 seeds against the best heuristic per scenario: mean and 95% t interval over seeds.
python3 -m agents.leaderboard_seeds "$W/lb/leaderboard.json" --agent "$OUT/s0.zip" "$OUT/s1.zip" "$OUT/s2.zip" \
  --seeds 0 1 2 --json "$W/seeds.json" > "$W/seeds.md" 2>> "$W/lb.log"; cat "$W/seeds.md"
cp "$W/seeds.json" "$W/seeds.md" "$OUT/" 2>/dev/null; pack
tar czf "$OUT/lb21.tgz" -C "$W" --exclude='*.png' lb seeds.md
exit $rc
