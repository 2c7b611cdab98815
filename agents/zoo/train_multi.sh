#!/usr/bin/env bash
# The multi-agent cluster's trained team (issue 21): the router role trained in the cluster by DAgger from
# Routing-v0's privileged teacher (agents/train_multi.py) for 3 seeds in parallel, then the multi-agent
# leaderboard (main and transfer tracks) with the 3 seeds' teams and their table against the best heuristic team.
#
#   OUT=DIR bash agents/zoo/train_multi.sh [full|small]
#
# full: the zoo recipe (agents/zoo/__init__.py RECIPES["servegym/MultiCluster-v0"]) for seeds 0, 1, 2;
# small: the same stages scaled down (STEPS=768 DAgger decisions, 1 cluster per workload, leaderboard
# --seeds 1 on the transfer track's code family at load 0.3) to time a box.
# The teacher replays every replica per decision inside each seed's process, so a seed uses one core. Writes
# to $OUT: s0.zip s1.zip s2.zip (the router checkpoints), stages.txt (seconds at the end of each stage),
# seeds.md / seeds.json (the 3 seeds' teams against the best heuristic team per scenario, TTFT p99 beside),
# logs21.tgz (logs, run records) and lb21.tgz (the leaderboard's output). Environment: NCPU (default nproc),
# W (work directory, default /tmp/w21multi), STEPS (DAgger decisions per seed).
set -o pipefail
MODE=${1:-full}
: "${OUT:?set OUT to the output directory}"
case $MODE in
  full) STEPS=${STEPS:-}; CLUSTERS=(); LBQ=();;
  small) STEPS=${STEPS:-768}; CLUSTERS=(--clusters 1); LBQ=(--seeds 1 --scenarios 'multi_cluster/transfer/azure_code_bursty-v1/*load0.3/*');;
  *) echo "usage: OUT=DIR bash $0 [full|small]" >&2; exit 2;;
esac
W=${W:-/tmp/w21multi}
NCPU=${NCPU:-$(nproc)}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
T0=$(date +%s)
stage() { echo "$(( $(date +%s) - T0 )) s: $*" | tee -a "$OUT/stages.txt"; }
pack() { tar czf "$OUT/logs21.tgz" -C "$W" $(cd "$W" && ls -d *.log s*/run.json seeds.* 2>/dev/null); }

# The recipe's arguments (repository-relative trace paths resolved), seed and steps replaced; the team's seats.
mapfile -t ARGS < <(python3 - "$STEPS" "$MODE" <<'PY'
import sys
from agents.zoo import RECIPES
from agents.zoo.__main__ import recipe_args
args = recipe_args("servegym/MultiCluster-v0", RECIPES["servegym/MultiCluster-v0"])
if sys.argv[1]:
    args[args.index("--steps") + 1] = sys.argv[1]
i = args.index("--seed")
del args[i:i + 2]
if sys.argv[2] == "small":
    i = args.index("--clusters")
    del args[i:i + 2]
print("\n".join(args))
PY
) || { echo "could not read the recipe" >&2; exit 1; }
SEATS=$(python3 -c "from agents.zoo import MULTI_TEAM; print(','.join(f'{r}={p}' for r, p in MULTI_TEAM.items()))") \
  || { echo "could not read agents.zoo.MULTI_TEAM" >&2; exit 1; }
stage "start ($MODE, $NCPU cores): python -m agents.train_multi ${ARGS[*]} ${CLUSTERS[*]}; seats $SEATS"

# 1. Compile the numba kernels (the cluster's and the teacher's) once, before 3 processes would at once.
python3 - > "$W/warm.log" 2>&1 <<'PY' || { stage "warm-up failed"; cat "$W/warm.log"; exit 1; }
from agents.train_multi import build_vec
vec = build_vec(["azure_conv-v1"], 1, (0.9,), 0, "sarathi")
vec.reset()
for _ in range(40):
    vec.step(vec.teacher_actions())
PY
stage "numba warm-up"

# 2. DAgger, 3 seeds in parallel (one core each).
for s in 0 1 2; do
  python3 -m agents.train_multi "${ARGS[@]}" "${CLUSTERS[@]}" --seed $s --out "$W/s$s" > "$W/train_s$s.log" 2>&1 &
done
wait
for s in 0 1 2; do tail -2 "$W/train_s$s.log"; cp "$W/s$s/final.zip" "$OUT/s$s.zip" || { stage "seed $s failed"; pack; exit 1; }; done
stage "DAgger"; pack

# 3. The multi-agent leaderboard (main and transfer tracks): the default teams and each seed's team.
TEAMS=(); AGENTS=()
for s in 0 1 2; do TEAMS+=(--team "router=$OUT/s$s.zip,$SEATS"); AGENTS+=("router=$OUT/s$s.zip,$SEATS"); done
python3 -m agents.leaderboard --envs multi "${LBQ[@]}" "${TEAMS[@]}" --ray --num-cpus "$NCPU" --no-progress \
  --out "$W/lb" > "$W/lb.log" 2>&1
rc=$?
tail -5 "$W/lb.log"; stage "leaderboard (rc $rc)"
python3 -m agents.leaderboard_seeds "$W/lb/leaderboard.json" --agent "${AGENTS[@]}" --seeds 0 1 2 \
  --beside ttft_p99_s --json "$W/seeds.json" > "$W/seeds.md" 2>> "$W/lb.log"; cat "$W/seeds.md"
cp "$W/seeds.json" "$W/seeds.md" "$OUT/" 2>/dev/null; pack
tar czf "$OUT/lb21.tgz" -C "$W" --exclude='*.png' lb seeds.md
exit $rc
