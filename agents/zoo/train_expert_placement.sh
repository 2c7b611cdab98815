#!/usr/bin/env bash
# ExpertPlacement-v0's transfer agent (issue 21): DAgger from the privileged teacher for 3 seeds in parallel,
# then the leaderboard of the 3 checkpoints (main and transfer tracks) and their table against the best
# heuristic by normalized score (it counts migration time; the main metric, MoE layer time, does not).
#
#   OUT=DIR bash agents/zoo/train_expert_placement.sh [full|small]
#
# full: the recipe agents/zoo/__init__.py EXPERT_PLACEMENT_DAGGER for seeds 0, 1, 2;
# small: the same stages scaled down (STEPS=1536 DAgger decisions, 2 episodes per leaderboard scenario) to time a box.
# The teacher (envs/expert_placement/teacher.py) reads the env's future load, so it runs in each seed's
# training process (one core per seed); the 3 run at once. Writes to $OUT: s0.zip s1.zip s2.zip (the
# checkpoints), stages.txt (seconds at the end of each stage), seeds.md / seeds.json (the 3 seeds against
# the best heuristic per scenario, normalized score, migration bytes and MoE layer time beside),
# logs21.tgz (logs, run records) and lb21.tgz (the leaderboard's output). Environment: NCPU (default
# nproc), W (work directory, default /tmp/w21ep), STEPS (DAgger decisions per seed).
set -o pipefail
MODE=${1:-full}
: "${OUT:?set OUT to the output directory}"
W=${W:-/tmp/w21ep}
NCPU=${NCPU:-$(nproc)}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
ENV=servegym/ExpertPlacement-v0
case $MODE in
  full) STEPS=${STEPS:-}; LBQ=();;
  small) STEPS=${STEPS:-1536}; LBQ=(--seeds 2);;
  *) echo "usage: OUT=DIR bash $0 [full|small]" >&2; exit 2;;
esac
T0=$(date +%s)
stage() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/stages.txt"; }
pack() { tar czf "$OUT/logs21.tgz" -C "$W" $(cd "$W" && ls -d *.log s*/run.json seeds.* 2>/dev/null); }

# The recipe's train.py arguments, seed and steps replaced.
mapfile -t ARGS < <(python3 - "$STEPS" <<'PY'
import sys
from agents.zoo import EXPERT_PLACEMENT_DAGGER
from agents.zoo.__main__ import recipe_args
args = recipe_args("servegym/ExpertPlacement-v0", EXPERT_PLACEMENT_DAGGER)
steps = sys.argv[1]
if steps:
    args[args.index("--imitate") + 1] = steps
i = args.index("--seed")
del args[i:i + 2]
print("\n".join(args))
PY
) || { echo "could not read the recipe" >&2; exit 1; }
stage "start ($MODE, $NCPU cores): train.py ${ARGS[*]}"

# 1. Compile the numba kernels (the env's, the teacher's, the generator's) once, before 3 processes would at once.
python3 - > "$W/warm.log" 2>&1 <<'PY' || { stage "warm-up failed"; cat "$W/warm.log"; exit 1; }
import envs
vec = envs.make_vec("servegym/ExpertPlacement-v0", 2, seed=0, intervals=2)
vec.reset()
for _ in range(12):
    vec.step(vec.teacher_actions())
PY
stage "numba warm-up"

# 2. DAgger, 3 seeds in parallel (one core each: the teacher runs in the training process).
for s in 0 1 2; do
  python3 -m agents.train "${ARGS[@]}" --seed $s --no-eval --no-progress --out "$W/s$s" > "$W/train_s$s.log" 2>&1 &
done
wait
for s in 0 1 2; do tail -2 "$W/train_s$s.log"; cp "$W/s$s/final.zip" "$OUT/s$s.zip" || { stage "seed $s failed"; pack; exit 1; }; done
stage "DAgger"; pack

# 3. The leaderboard of ExpertPlacement-v0 (main and transfer tracks) with the 3 checkpoints.
python3 -m agents.leaderboard --envs expert_placement "${LBQ[@]}" --policy "$OUT/s0.zip" --policy "$OUT/s1.zip" \
  --policy "$OUT/s2.zip" --ray --num-cpus "$NCPU" --no-progress --out "$W/lb" > "$W/lb.log" 2>&1
rc=$?
tail -5 "$W/lb.log"; stage "leaderboard (rc $rc)"
# The 3 seeds against the best heuristic per scenario by normalized score: mean and 95% t interval over seeds.
python3 -m agents.leaderboard_seeds "$W/lb/leaderboard.json" --agent "$OUT/s0.zip" "$OUT/s1.zip" "$OUT/s2.zip" \
  --seeds 0 1 2 --metric normalized_score --beside migration_bytes moe_layer_time_s --json "$W/seeds.json" \
  > "$W/seeds.md" 2>> "$W/lb.log"; cat "$W/seeds.md"
cp "$W/seeds.json" "$W/seeds.md" "$OUT/" 2>/dev/null; pack
tar czf "$OUT/lb21.tgz" -C "$W" --exclude='*.png' lb seeds.md
exit $rc
