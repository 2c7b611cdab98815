#!/usr/bin/env bash
# Disaggregation-v0's zoo agent (issue 17): the teacher's replays on every core, DAgger for 3 seeds in
# parallel (5 cores each), then the leaderboard of the 3 checkpoints on every core.
#
#   OUT=DIR bash agents/zoo/train_disaggregation.sh [full|small]
#
# full: the zoo recipe (agents/zoo/__init__.py RECIPES["servegym/Disaggregation-v0"]), about 5.5 minutes (estimate)
# on the 16-core GPU host; small: the same stages scaled down (1 window per family, 768 DAgger steps,
# leaderboard --quick) to time a box. Writes to $OUT: s0.zip s1.zip s2.zip (the checkpoints),
# stages.txt (seconds at the end of each stage), logs17.tgz (every log, the run records, the
# teacher's data) and lb17.tgz (the leaderboard's output). Environment: NCPU (default nproc),
# W (work directory, default /tmp/w17), STEPS and N_ENVS (DAgger decisions and envs per seed).
set -o pipefail
MODE=${1:-full}
: "${OUT:?set OUT to the output directory}"
W=${W:-/tmp/w17}
NCPU=${NCPU:-$(nproc)}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
ENV=servegym/Disaggregation-v0
G='disaggregation/*'
case $MODE in
  full) EK=(); STEPS=${STEPS:-9216}; N_ENVS=${N_ENVS:-8}; LBQ=();;
  small) EK=(--env-kwargs episodes_per_load=1); STEPS=${STEPS:-768}; N_ENVS=${N_ENVS:-4}; LBQ=(--quick);;
  *) echo "usage: OUT=DIR bash $0 [full|small]" >&2; exit 2;;
esac
T0=$(date +%s)
stage() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/stages.txt"; }
pack() { tar czf "$OUT/logs17.tgz" -C "$W" $(cd "$W" && ls -d *.log teacher.pkl s*/run.json seeds.* 2>/dev/null); }
stage "start ($MODE, $NCPU cores, $STEPS DAgger decisions x $N_ENVS envs per seed)"

# 1. Compile the numba kernels once, before many processes would compile them at the same time.
python3 - > "$W/warm.log" 2>&1 <<'PY' || { stage "warm-up failed"; cat "$W/warm.log"; exit 1; }
import numpy as np
from agents.family_vec import family_specs, make_family_vec
from agents.heuristics import disaggregation as H
specs = family_specs("servegym/Disaggregation-v0", ["disaggregation/*"], {"phases": 1, "phase_s": 20.0})
vec = make_family_vec("servegym/Disaggregation-v0", len(specs), 0, specs, "train")
vec.reset()
for roles in (H.roles_pd(8, 4, 4), H.roles_pd(8, 4)):
    vec.step(np.tile(np.append(roles, 1), (vec.num_envs, 1)))
PY
stage "numba warm-up"

# 2. The teacher: every training episode's candidate replays and plan, once for the 3 seeds.
python3 -m agents.disaggregation_teacher --scenarios "$G" "${EK[@]}" --procs "$NCPU" --out "$W/teacher.pkl" \
  > "$W/teacher.log" 2>&1 || { stage "teacher failed"; tail -20 "$W/teacher.log"; pack; exit 1; }
cat "$W/teacher.log"; stage "teacher"; pack

# 3. DAgger, 3 seeds in parallel: with 15 cores or more each seed on 5 of them (its process and one
#    worker process per family: --vec-procs 4); else all on the cores there are, in one process each.
for s in 0 1 2; do
  if [ "$NCPU" -ge 15 ]; then PIN=(taskset -c $(( 5 * s ))-$(( 5 * s + 4 ))); VP=4; else PIN=(); VP=1; fi
  "${PIN[@]}" python3 -m agents.train --env $ENV --scenarios "$G" "${EK[@]}" --imitate "$STEPS" --timesteps 0 \
    --n-envs "$N_ENVS" --vec-procs $VP --imitate-kwargs epochs=20 batch_size=256 --teacher-data "$W/teacher.pkl" \
    --no-eval --no-progress --seed $s --out "$W/s$s" > "$W/train_s$s.log" 2>&1 &
done
wait
for s in 0 1 2; do tail -2 "$W/train_s$s.log"; cp "$W/s$s/final.zip" "$OUT/s$s.zip" || { stage "seed $s failed"; pack; exit 1; }; done
stage "DAgger"; pack

# 4. The leaderboard of Disaggregation-v0 with the 3 checkpoints.
python3 -m agents.leaderboard --envs disaggregation "${LBQ[@]}" --policy "$OUT/s0.zip" --policy "$OUT/s1.zip" \
  --policy "$OUT/s2.zip" --ray --num-cpus "$NCPU" --no-progress --out "$W/lb" > "$W/lb.log" 2>&1
rc=$?
tail -5 "$W/lb.log"; stage "leaderboard (rc $rc)"
# The 3 seeds against the best baseline per scenario: mean and 95% t interval over seeds.
python3 -m agents.leaderboard_seeds "$W/lb/leaderboard.json" --agent "$OUT/s0.zip" "$OUT/s1.zip" "$OUT/s2.zip" \
  --seeds 0 1 2 --beside role_changes --json "$W/seeds.json" > "$W/seeds.md" 2>> "$W/lb.log"; cat "$W/seeds.md"
cp "$W/seeds.json" "$W/lb/" 2>/dev/null; pack
tar czf "$OUT/lb17.tgz" -C "$W" --exclude='*.png' lb seeds.md
sed -n '/^## Headline/,$p' "$W/lb/leaderboard.md" | grep -v "^servegym/\|^$" | head -70
exit $rc
